"""Server interceptor: one structured log line and the RPC metrics per call, with a request id bound."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from ops.metrics import SiteMetrics

log = structlog.get_logger("tongban.grpc")


class LoggingInterceptor(grpc.ServerInterceptor):
    def __init__(self, site: str, metrics: SiteMetrics | None = None) -> None:
        self.site = site
        self.metrics = metrics

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = str(metadata.get("x-request-id") or uuid.uuid4())
        inner = handler.unary_unary

        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            with structlog.contextvars.bound_contextvars(site=self.site, request_id=request_id, rpc=method):
                case_id = _case_id(request)
                try:
                    response = inner(request, context)
                except BaseException:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    log.info("rpc", code=code.name, case_id=case_id, ms=_ms(started))
                    self._count(method, code.name, started)
                    raise
                log.info("rpc", code="OK", case_id=case_id or _case_id(_field(response, "case")), ms=_ms(started))
                self._count(method, "OK", started)
                return response

        return grpc.unary_unary_rpc_method_handler(
            logged, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


    def _count(self, method: str, code: str, started: float) -> None:
        if self.metrics is not None:
            name = method.rsplit("/", 1)[-1]
            self.metrics.rpc_handled.labels(name, code).inc()
            self.metrics.rpc_seconds.labels(name).observe(time.perf_counter() - started)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _field(message: Any, name: str) -> Any:
    """A message's field by name, if it is set (a protobuf message lists its set fields itself)."""
    if isinstance(message, Message):
        return next((value for field, value in message.ListFields() if field.name == name), None)
    return None


def _case_id(message: Any) -> str:
    """The case a request or a case message is about, for the log line ("" for none)."""
    value = _field(message, "case_id")
    return value if isinstance(value, str) else ""
