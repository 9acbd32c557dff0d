"""The client side of ExchangeService: deliver our events to one partner, with deadlines and retries.

Retries are data (``adapters.retry.GrpcRetry``, from the site's settings) and only for transient
codes; a refusal (PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION) is final and is never retried.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from uuid import UUID

import grpc
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from adapters.exchange.channel import Mapped
from adapters.exchange.observer import ExchangeObserver, Unobserved
from adapters.exchange.wire import event_from, event_message, receipt_from
from adapters.retry import GrpcRetry
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tongban.v1 import exchange_pb2, exchange_pb2_grpc


class GrpcPartner:
    """One partner reached over gRPC. ``deliver`` returns the partner's receipts."""

    channel_name = "grpc"

    def __init__(
        self, site: str, partner: str, address: str, credentials: grpc.ChannelCredentials | None,
        timeout: float | None = None, retry: GrpcRetry | None = None, observer: ExchangeObserver | None = None,
    ) -> None:
        policy = retry or GrpcRetry()
        self.site, self.partner = site, partner
        self.timeout = timeout if timeout is not None else policy.timeout
        seen: ExchangeObserver = observer or Unobserved()
        options = [("grpc.ssl_target_name_override", "localhost")] if credentials else []
        self.channel = (
            grpc.secure_channel(address, credentials, options=options) if credentials
            else grpc.insecure_channel(address)
        )
        self.stub = exchange_pb2_grpc.ExchangeServiceStub(self.channel)
        self.most_in_flight = 0  # the most batches an ingest stream had unanswered (for operators and tests)
        backoff = policy.backoff
        self.retrying = Retrying(
            retry=retry_if_exception(policy.is_transient),
            wait=wait_exponential(multiplier=backoff.first, max=backoff.most)
            + wait_random(0, backoff.first * backoff.jitter),
            stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.give_up_after),
            before_sleep=lambda _state: seen.retried(partner, self.channel_name),
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

    def resend(self, events: Sequence[SharedEvent], receipt: CaseReceipt) -> list[CaseReceipt]:
        """Fill a gap: a plain delivery (the partner's (case, origin, seq) check drops what it holds)."""
        return self.deliver(events)

    def ingest_stream(
        self, batches: Iterable[Sequence[SharedEvent]], in_flight: int = 4, timeout: float = 600.0
    ) -> Iterator[tuple[int, list[CaseReceipt]]]:
        """Stream batches over IngestEvents, at most ``in_flight`` unanswered; yields (batch number from 1,
        receipts) in order. A batch whose answer never came may be sent again: storing is idempotent.

        Back-pressure: the next batch is not even built until an answer frees a slot, so a bulk load
        of any size holds at most ``in_flight`` batches in memory.
        """
        slots = threading.Semaphore(in_flight)
        self.most_in_flight = 0
        state = {"sent": 0, "answered": 0}

        def requests() -> Iterator[exchange_pb2.IngestEventsRequest]:
            for number, batch in enumerate(batches, 1):
                slots.acquire()
                state["sent"] = number
                self.most_in_flight = max(self.most_in_flight, number - state["answered"])
                yield exchange_pb2.IngestEventsRequest(
                    sender_site=self.site, batch_id=number, events=[event_message(e) for e in batch]
                )

        for response in self.stub.IngestEvents(requests(), timeout=timeout):
            state["answered"] = int(response.batch_id)
            slots.release()
            yield int(response.batch_id), [receipt_from(r) for r in response.receipts]

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
