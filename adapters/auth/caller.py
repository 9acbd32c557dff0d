"""The authenticated caller of one staff-port call, handed from the gate to the servicer.

The interceptor (adapters/auth/interceptor.py) verifies the credential and runs the servicer
method inside ``acting_as(caller)``; the servicer reads ``current_caller()`` and records every
command under ``caller.actor()``. Nothing the request says about who is acting is trusted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from hub.domain.values import Role

Via = Literal["password", "oidc", "service"]


@dataclass(frozen=True)
class Caller:
    """Who is calling: staff id (or service account name), display name, role, site, and how we know."""

    staff_id: str
    name: str
    role: Role
    site: str
    via: Via

    def actor(self) -> dict[str, str]:
        """The actor as the command models take it (adapters/grpc/translate.request_data's shape)."""
        return {"staff_id": self.staff_id, "role": self.role.value, "site": self.site, "name": self.name}

    @property
    def read_only(self) -> bool:
        return self.role is Role.AUDITOR


_current: ContextVar[Caller | None] = ContextVar("tongban_caller", default=None)


def current_caller() -> Caller | None:
    """The caller of the call being served (None outside an authenticated call)."""
    return _current.get()


@contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    token = _current.set(caller)
    try:
        yield caller
    finally:
        _current.reset(token)
