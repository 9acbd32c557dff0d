"""One table from hub errors to gRPC status codes, with the standard rich error details.

Bad input is INVALID_ARGUMENT with google.rpc.BadRequest field violations; a rule is
FAILED_PRECONDITION with google.rpc.ErrorInfo (reason + metadata); an unknown case NOT_FOUND; a
lost race ABORTED (re-read and retry); no usable credential UNAUTHENTICATED, a caller outside its
role or site PERMISSION_DENIED, both with ErrorInfo reasons. Anything unexpected is INTERNAL with no internals leaked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from adapters.auth.errors import LoginThrottled, Unauthenticated
from hub.application.group_commit import CommitterClosed
from hub.domain.errors import CaseNotFound, ConcurrentUpdate, HubError, InvalidInput, NotPermitted, RuleViolation

ERROR_DOMAIN = "tongban.hub"
log = structlog.get_logger("tongban.grpc")

STATUS_OF: tuple[tuple[type[HubError], int], ...] = (
    (InvalidInput, code_pb2.INVALID_ARGUMENT),
    (Unauthenticated, code_pb2.UNAUTHENTICATED),
    (LoginThrottled, code_pb2.RESOURCE_EXHAUSTED),
    (CommitterClosed, code_pb2.UNAVAILABLE),
    (CaseNotFound, code_pb2.NOT_FOUND),
    (ConcurrentUpdate, code_pb2.ABORTED),
    (NotPermitted, code_pb2.PERMISSION_DENIED),
    (RuleViolation, code_pb2.FAILED_PRECONDITION),
    (HubError, code_pb2.FAILED_PRECONDITION),
)


def parse_uuid(value: str, field: str) -> UUID:
    """A case id from a request, or InvalidInput naming ``field`` (bad input is never a stack trace)."""
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput.one(field, "不是有效的办件编号(UUID)") from None


def to_status(error: HubError) -> status_pb2.Status:
    """Bad input carries its field violations (and, when it has a reason code of its own, such as a
    partner's refused event, an ErrorInfo too); everything else an ErrorInfo."""
    code = next(code for kind, code in STATUS_OF if isinstance(error, kind))
    details = []
    if isinstance(error, InvalidInput):
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
        details.append(bad)
    if not isinstance(error, InvalidInput) or error.reason != InvalidInput.reason:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)))
        details.append(info)
    return status_pb2.Status(code=code, message=error.message, details=details)


F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(method: F) -> F:
    """Turn hub errors raised by a servicer method into their status; hide everything else."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as error:
            _abort(context, error, method.__name__)

    return wrapper  # type: ignore[return-value]


def translate_stream_errors(method: F) -> F:
    """The same for a method that answers with a stream (a generator): errors surface while iterating."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from method(self, request, context)
        except Exception as error:
            if not context.is_active():  # the client went away mid-stream: nothing to answer, not our fault
                log.info("rpc_cancelled", method=method.__name__, error=type(error).__name__)
                return
            _abort(context, error, method.__name__)

    return wrapper  # type: ignore[return-value]


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> None:
    if isinstance(error, HubError):
        context.abort_with_status(rpc_status.to_status(to_status(error)))
    log.exception("rpc_failed", method=method)
    context.abort(grpc.StatusCode.INTERNAL, "internal error: the hub logged the details")


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """Client side: the field violations carried by an INVALID_ARGUMENT error, by field path."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    out: dict[str, str] = {}
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """Client side: the ErrorInfo (reason, metadata) of a rule violation, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None
