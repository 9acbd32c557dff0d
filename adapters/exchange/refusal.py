"""Which delivery failures are a partner's final refusal, to park, and which are worth trying again.

A refusal is final when the partner answered PERMISSION_DENIED, INVALID_ARGUMENT or
FAILED_PRECONDITION: its rules or its checks turned the events down, and sending them again
unchanged gets the same answer. Everything else (unreachable, overloaded, INTERNAL, a channel's own
errors) is retried by the relay from its stored position, as before: parking on INTERNAL would park
every case while the partner is broken. A channel that hands events to the partner in-process (a
test's fake) raises the partner's hub error itself: the same table maps it to the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from adapters.exchange.channel import Channel
from adapters.grpc.errors import error_info, to_status
from hub.domain.errors import HubError
from hub.domain.parked import DeliveryRefused, Refusal
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent

PARKING_CODES = frozenset(
    {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}
)
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def refusal_of(error: BaseException) -> Refusal | None:
    """The partner's final refusal carried by ``error`` (code, ErrorInfo reason, message), or None."""
    if isinstance(error, DeliveryRefused):
        return error.refusal
    if isinstance(error, grpc.RpcError):
        code = error.code()
        if code not in PARKING_CODES:
            return None
        info = error_info(error)
        return Refusal(code.name, info.reason if info is not None else "", error.details() or "")
    if isinstance(error, HubError):
        status = to_status(error)
        mapped = _CODES.get(status.code)
        if mapped is None or mapped not in PARKING_CODES:
            return None
        return Refusal(mapped.name, error.reason, error.message)
    return None


def deliver_or_refuse(channel: Channel, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
    """``channel.deliver``, with a final refusal raised as DeliveryRefused (what the application knows)."""
    try:
        return channel.deliver(events)
    except Exception as error:
        refusal = refusal_of(error)
        if refusal is None:
            raise
        raise DeliveryRefused(refusal) from error

