"""The staff port's gate: every call but health, reflection and Login carries a verified credential.

For each call the interceptor asks the Authenticator who is calling, refuses with the hub's error
table (UNAUTHENTICATED / PERMISSION_DENIED with a reason code; nothing reaches the servicer, so
nothing is stored), keeps an auditor to reads (READ_ONLY), and runs the servicer inside
``acting_as(caller)``, where the servicer takes the actor of every command from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from adapters.auth.authenticator import Authenticator
from adapters.auth.caller import acting_as
from adapters.auth.errors import Refused
from adapters.grpc.errors import to_status
from adapters.tls import service_account
from hub.domain.errors import HubError

log = structlog.get_logger("tongban.auth")
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
LOGIN = "/tongban.v1.AuthService/Login"
READS = frozenset({"/tongban.v1.CaseService/GetCase", "/tongban.v1.CaseService/GetCaseHistory",
                   "/tongban.v1.CaseService/ListCases", "/tongban.v1.AuthService/WhoAmI"})


def is_open(method: str) -> bool:
    return method == LOGIN or method.startswith(OPEN_SERVICES)


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        method = details.method
        if handler is None or is_open(method):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        inner = handler.unary_unary
        if inner is None:  # the staff API is unary; a stream here would bypass the gate
            return None

        def gated(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                caller = self.authenticator.authenticate(metadata, service_account(context.auth_context()))
                if caller.read_only and method not in READS:
                    raise Refused("READ_ONLY", "审计人员只能查询，不能办理", {"role": caller.role.value})
            except HubError as error:
                log.warning("auth_refused", method=method, reason=error.reason, peer=context.peer())
                context.abort_with_status(rpc_status.to_status(to_status(error)))
            with acting_as(caller):
                return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            gated, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
