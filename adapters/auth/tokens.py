"""Staff tokens the site signs itself (embedded mode): short-lived EdDSA JWTs.

Claims: ``iss`` = ``tongban:<site>``, ``aud`` = ``tongban-staff``, ``sub`` = staff id, ``site``,
``role``, ``name``, ``iat``, ``exp`` (8 hours by default, ``[auth] token_ttl``). The Ed25519 key is
a file the site creates on first start beside the audit key (mode 0600): only this site can mint
a token this site accepts, and a token from another site (other key, other ``iss``) never verifies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.auth.caller import Caller
from adapters.auth.errors import Unauthenticated
from hub.domain.values import Role

ALGORITHM = "EdDSA"
AUDIENCE = "tongban-staff"
LEEWAY = timedelta(seconds=30)


def issuer(site: str) -> str:
    return f"tongban:{site}"


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The site's token key (PEM, PKCS8), created with mode 0600 if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process (the CLI, a second start) created it first
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: datetime
    caller: Caller


class TokenSigner:
    """Mints and verifies this site's staff tokens."""

    def __init__(self, site: str, key: Ed25519PrivateKey, ttl: timedelta) -> None:
        self.site, self.ttl = site, ttl
        self._key = key
        self._public: Ed25519PublicKey = key.public_key()

    def issue(self, caller: Caller, now: datetime | None = None) -> Issued:
        at = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = at + self.ttl
        claims = {"iss": issuer(self.site), "aud": AUDIENCE, "sub": caller.staff_id, "site": caller.site,
                  "role": caller.role.value, "name": caller.name, "iat": at, "exp": expires}
        return Issued(jwt.encode(claims, self._key, algorithm=ALGORITHM), expires, caller)

    def verify(self, token: str) -> Caller:
        """The caller a token names; Unauthenticated TOKEN_EXPIRED / TOKEN_INVALID otherwise."""
        claims = decode(token, self._public, [ALGORITHM], issuer(self.site), AUDIENCE)
        try:
            role = Role(claims["role"])
            site, staff_id, name = str(claims["site"]), str(claims["sub"]), str(claims.get("name", ""))
        except (KeyError, ValueError):
            raise invalid("令牌缺少必需的声明") from None
        if site != self.site:
            raise invalid(f"令牌属于站点 {site}，不是本站点 {self.site}")
        return Caller(staff_id, name, role, site, "password")


def decode(token: str, key: Any, algorithms: list[str], iss: str, aud: str) -> dict[str, Any]:
    """PyJWT's checks (signature, algorithm allow-list, exp, iss, aud) mapped to our refusals."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=algorithms, issuer=iss, audience=aud, leeway=LEEWAY,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("TOKEN_EXPIRED", "登录已过期，请重新登录") from None
    except jwt.PyJWTError as error:
        raise invalid(f"令牌无效（{type(error).__name__}）") from None
    return claims


def invalid(message: str) -> Unauthenticated:
    return Unauthenticated("TOKEN_INVALID", message)
