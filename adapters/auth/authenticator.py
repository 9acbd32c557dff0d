"""One credential -> one Caller: the only place the staff port decides who is calling.

A call is authenticated by exactly one of:
- ``authorization: Bearer <token>``: in embedded mode a token this site signed (and the account is
  still active in the directory, re-read at most every ``active_ttl`` seconds); in OIDC mode a token
  of the province's identity service;
- a client certificate our CA issued to a service account of this site
  (SAN ``urn:tongban:service:<site>:<name>``, the name mapped to a role in ``[auth.services]``).
A bearer token, when sent, is what counts (a window system may relay a signed-in clerk's token).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from adapters.auth.caller import Caller
from adapters.auth.directory import StaffDirectory
from adapters.auth.errors import Unauthenticated
from adapters.auth.oidc import OidcVerifier
from adapters.auth.tokens import TokenSigner
from hub.domain.values import Role

BEARER = "bearer "


class Authenticator:
    def __init__(
        self, site: str, *, signer: TokenSigner | None = None, directory: StaffDirectory | None = None,
        oidc: OidcVerifier | None = None, services: Mapping[str, Role] | None = None, active_ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (signer is None) == (oidc is None):
            raise ValueError("exactly one of an embedded signer or an OIDC verifier")
        if signer is not None and directory is None:
            raise ValueError("embedded tokens are checked against the staff directory")
        self.site, self.signer, self.directory, self.oidc = site, signer, directory, oidc
        self.services = dict(services or {})
        self.active_ttl, self._clock = active_ttl, clock
        self._active: dict[str, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def authenticate(self, metadata: Mapping[str, str], service: tuple[str, str] | None) -> Caller:
        """``metadata``: the call's invocation metadata; ``service``: (site, name) from a verified client
        certificate naming a service account, if any."""
        header = metadata.get("authorization", "")
        if header:
            if not header.lower().startswith(BEARER) or not header[len(BEARER):].strip():
                raise Unauthenticated("TOKEN_INVALID", "authorization 须为 Bearer 令牌")
            return self._token(header[len(BEARER):].strip())
        if service is not None:
            return self._service(*service)
        raise Unauthenticated("UNAUTHENTICATED", "未登录：请先登录（tongban login）")

    def forget(self, staff_id: str) -> None:
        """Drop the cached active flag (after a change made in this process)."""
        with self._lock:
            self._active.pop(staff_id, None)

    def _token(self, token: str) -> Caller:
        if self.oidc is not None:
            return self.oidc.verify(token)
        assert self.signer is not None
        caller = self.signer.verify(token)
        if not self._is_active(caller):
            raise Unauthenticated("ACCOUNT_DISABLED", f"账号 {caller.staff_id} 已停用", {"staff_id": caller.staff_id})
        return caller

    def _is_active(self, caller: Caller) -> bool:
        now = self._clock()
        with self._lock:
            cached = self._active.get(caller.staff_id)
        if cached is not None and now - cached[0] < self.active_ttl:
            return cached[1]
        assert self.directory is not None
        account = self.directory.get(caller.staff_id)
        active = account is not None and account.active and account.role is caller.role
        with self._lock:
            self._active[caller.staff_id] = (now, active)
        return active

    def _service(self, site: str, name: str) -> Caller:
        role = self.services.get(name)
        if site != self.site or role is None:
            raise Unauthenticated("UNKNOWN_SERVICE", f"服务账号 {site}:{name} 未在本站点配置",
                                  {"service": f"{site}:{name}"})
        return Caller(name, name, role, site, "service")
