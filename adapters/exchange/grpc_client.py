"""The client side of ExchangeService: deliver our events to one partner, with deadlines and retries.

Retries are data (RETRYABLE) and only for transient codes; a refusal (PERMISSION_DENIED,
INVALID_ARGUMENT, FAILED_PRECONDITION) is final and is never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

import grpc
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from adapters.exchange.relay import Mapped
from adapters.exchange.wire import event_from, event_message, receipt_from
from hub.application.exchange import CaseReceipt
from hub.domain.shared import SharedEvent
from tongban.v1 import exchange_pb2, exchange_pb2_grpc

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
     grpc.StatusCode.ABORTED}
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, grpc.RpcError) and error.code() in RETRYABLE


class GrpcPartner:
    """One partner reached over gRPC. ``deliver`` returns the partner's receipts."""

    channel_name = "grpc"

    def __init__(
        self, site: str, partner: str, address: str, credentials: grpc.ChannelCredentials | None,
        timeout: float = 5.0, attempts: int = 5, max_wait: float = 2.0, give_up_after: float = 30.0,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.site, self.partner, self.timeout = site, partner, timeout
        options = [("grpc.ssl_target_name_override", "localhost")] if credentials else []
        self.channel = (
            grpc.secure_channel(address, credentials, options=options) if credentials
            else grpc.insecure_channel(address)
        )
        self.stub = exchange_pb2_grpc.ExchangeServiceStub(self.channel)
        self.retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.05, max=max_wait),
            stop=stop_after_attempt(attempts) | stop_after_delay(give_up_after),
            before_sleep=(lambda _state: on_retry()) if on_retry else None,
            reraise=True,
        )

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        request = exchange_pb2.DeliverEventsRequest(
            sender_site=self.site, events=[event_message(e) for e in events]
        )
        response = self.retrying(self.stub.DeliverEvents, request, timeout=self.timeout)
        return [receipt_from(r) for r in response.receipts]

    def deliver_async(self, events: Sequence[SharedEvent]) -> Mapped:
        """Start a delivery and return at once: the relay keeps several in flight on the one channel
        (HTTP/2 streams). A failure is not retried here: the relay sends everything in flight again
        from its stored position after a pause."""
        request = exchange_pb2.DeliverEventsRequest(
            sender_site=self.site, events=[event_message(e) for e in events]
        )
        call = self.stub.DeliverEvents.future(request, timeout=self.timeout)
        return Mapped(call, lambda response: [receipt_from(r) for r in response.receipts])

    def fetch(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        request = exchange_pb2.FetchEventsRequest(case_id=str(case_id), origin_site=origin, from_seq=from_seq)
        response = self.retrying(self.stub.FetchEvents, request, timeout=self.timeout)
        return [event_from(m) for m in response.events]

    def countersign(self, signed_checkpoint_json: str) -> str:
        """Ask the partner to countersign our checkpoint; returns its countersignature as JSON."""
        request = exchange_pb2.CountersignCheckpointRequest(signed_checkpoint_json=signed_checkpoint_json)
        response = self.retrying(self.stub.CountersignCheckpoint, request, timeout=self.timeout)
        return str(response.countersignature_json)

    def close(self) -> None:
        self.channel.close()
