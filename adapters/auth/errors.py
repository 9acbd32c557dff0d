"""Refusals of the staff port's gate: no usable credential, or too many failed logins."""

from __future__ import annotations

from collections.abc import Mapping

from hub.domain.errors import HubError, NotPermitted


class Unauthenticated(HubError):
    """No credential, or one that does not verify (maps to UNAUTHENTICATED).

    ``reason``: UNAUTHENTICATED (none sent), TOKEN_EXPIRED, TOKEN_INVALID, LOGIN_FAILED.
    """

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})


class LoginThrottled(HubError):
    """Too many failed logins for this staff id or from this address (maps to RESOURCE_EXHAUSTED)."""

    reason = "LOGIN_THROTTLED"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"登录失败次数过多，请 {max(1, round(retry_after))} 秒后再试")
        self.metadata = {"retry_after_seconds": str(max(1, round(retry_after)))}


class Refused(NotPermitted):
    """A caller who is who they say, asking for what their credential does not allow."""

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})
