"""Client side of staff identity: log in, and send the token with every call (CLI, demo, tests)."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from typing import Any

import grpc

from tongban.v1 import auth_pb2, auth_pb2_grpc

_Fields = namedtuple("_Fields", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"))


class _CallDetails(_Fields, grpc.ClientCallDetails):  # type: ignore[misc]
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer <token>`` to every call on the channel."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [*(details.metadata or ()), self.header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return continuation(self._details(details), request)


def signed_channel(channel: grpc.Channel, token: str) -> grpc.Channel:
    """``channel`` with the token on every call (closing the original closes this one)."""
    return grpc.intercept_channel(channel, BearerToken(token))


def login(channel: grpc.Channel, staff_id: str, password: str, timeout: float = 10.0) -> auth_pb2.LoginResponse:
    response: auth_pb2.LoginResponse = auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(staff_id=staff_id, password=password), timeout=timeout)
    return response
