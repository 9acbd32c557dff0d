"""Tokens from the province's unified identity service (``[auth] mode = "oidc"``), verified offline.

The keys come from a file the operator loads (a JWKS, or one PEM public key): the staff port never
fetches anything at call time. A token is accepted when its signature verifies with an allowed
algorithm, ``iss`` and ``aud`` are the configured ones, it has not expired, its site claim is this
site, and exactly one of its roles maps to one of ours (``[auth.oidc.roles]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from adapters.auth.caller import Caller
from adapters.auth.directory import STAFF_ID
from adapters.auth.errors import Refused
from adapters.auth.tokens import decode, invalid
from hub.domain.values import Role


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    jwks_file: Path | None = None
    public_key_file: Path | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    roles_claim: str = "roles"
    site_claim: str = "site"
    staff_id_claim: str = "sub"
    name_claim: str = "name"
    roles: dict[str, Role] = field(default_factory=dict)  # the identity service's role -> ours


class OidcVerifier:
    def __init__(self, site: str, settings: OidcSettings) -> None:
        self.site, self.settings = site, settings
        self._keys: dict[str | None, Any] = {}
        if settings.jwks_file is not None:
            keys = jwt.PyJWKSet.from_json(settings.jwks_file.read_text(encoding="utf-8")).keys
            self._keys = {k.key_id: k.key for k in keys}
            if len(keys) == 1:
                self._keys[None] = keys[0].key
        elif settings.public_key_file is not None:
            self._keys = {None: serialization.load_pem_public_key(settings.public_key_file.read_bytes())}
        if not self._keys:
            raise ValueError("[auth.oidc] needs jwks_file or public_key_file with at least one key")

    def verify(self, token: str) -> Caller:
        s = self.settings
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise invalid("令牌格式无效") from None
        key = self._keys.get(kid if isinstance(kid, str) else None)
        if key is None:
            raise invalid("令牌的签名密钥不在本站点信任的密钥集中")
        claims = decode(token, key, list(s.algorithms), s.issuer, s.audience)
        if str(claims.get(s.site_claim, "")) != self.site:
            raise invalid(f"令牌不属于本站点 {self.site}")
        granted = claims.get(s.roles_claim, [])
        names = [granted] if isinstance(granted, str) else granted if isinstance(granted, list) else []
        ours = {s.roles[n] for n in names if isinstance(n, str) and n in s.roles}
        if len(ours) != 1:
            raise Refused("NO_ROLE", "令牌中的角色未对应到本站点的唯一角色" if ours else "令牌中没有本站点认可的角色",
                          {"roles": json.dumps(sorted(str(n) for n in names), ensure_ascii=False)[:200]})
        staff_id = str(claims.get(s.staff_id_claim, ""))
        if not STAFF_ID.fullmatch(staff_id):  # what the event store records as a staff id
            raise invalid("令牌的工号声明缺失或格式无效")
        return Caller(staff_id, str(claims.get(s.name_claim, ""))[:32], ours.pop(), self.site, "oidc")
