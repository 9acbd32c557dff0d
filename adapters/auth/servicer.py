"""AuthService on the staff port: Login (embedded staff directory) and WhoAmI.

A failed login says only "wrong staff id or password" (a disabled account too: nothing tells an
attacker which ids exist), is throttled per staff id and per peer address, and is logged with the
staff id and address, never the password.
"""

from __future__ import annotations

import grpc
import structlog

from adapters.auth.caller import Caller, current_caller
from adapters.auth.directory import StaffDirectory
from adapters.auth.errors import LoginThrottled, Unauthenticated
from adapters.auth.passwords import verify_password
from adapters.auth.throttle import LoginThrottle
from adapters.auth.tokens import TokenSigner
from adapters.grpc.errors import translate_errors
from adapters.grpc.translate import actor_message, timestamp
from hub.domain.errors import RuleViolation
from tongban.v1 import auth_pb2, auth_pb2_grpc

log = structlog.get_logger("tongban.auth")


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, signer: TokenSigner | None, directory: StaffDirectory | None,
                 by_staff: LoginThrottle, by_peer: LoginThrottle) -> None:
        self.signer, self.directory = signer, directory
        self.by_staff, self.by_peer = by_staff, by_peer

    @translate_errors
    def Login(self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext) -> auth_pb2.LoginResponse:
        if self.signer is None or self.directory is None:
            raise RuleViolation("EMBEDDED_LOGIN_OFF", "本站点使用统一身份认证登录，不接受工号密码登录")
        staff_id, peer = request.staff_id.strip()[:64], _address(context.peer())
        try:
            self.by_staff.check([staff_id])
            self.by_peer.check([peer])
        except LoginThrottled:
            log.warning("login_throttled", staff_id=staff_id, peer=peer)
            raise
        account = self.directory.get(staff_id) if staff_id else None
        matches = verify_password(account.password_hash if account else None, request.password)
        if account is None or not matches or not account.active:
            self.by_staff.failed([staff_id])
            self.by_peer.failed([peer])
            why = "unknown_staff" if account is None else "wrong_password" if not matches else "disabled"
            log.warning("login_failed", staff_id=staff_id, peer=peer, why=why)
            raise Unauthenticated("LOGIN_FAILED", "工号或密码错误，或账号已停用")
        self.by_staff.succeeded(staff_id)
        issued = self.signer.issue(Caller(account.staff_id, account.name, account.role, account.site, "password"))
        log.info("login", staff_id=staff_id, peer=peer, role=account.role.value)
        return auth_pb2.LoginResponse(token=issued.token, expires_at=timestamp(issued.expires_at),
                                      actor=actor_message(issued.caller.actor()))

    @translate_errors
    def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: grpc.ServicerContext) -> auth_pb2.WhoAmIResponse:
        caller = current_caller()
        if caller is None:
            raise Unauthenticated("UNAUTHENTICATED", "未登录")
        return auth_pb2.WhoAmIResponse(actor=actor_message(caller.actor()), via=caller.via)


def _address(peer: str) -> str:
    """'ipv4:127.0.0.1:5123' -> 'ipv4:127.0.0.1' (the port changes with every connection)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
