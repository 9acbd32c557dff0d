"""ExchangeService: where partner sites deliver their events to us (served over mutual TLS)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import grpc
import structlog

from adapters.exchange.observer import ExchangeObserver, Unobserved
from adapters.exchange.wire import event_from, event_message, receipt_message
from adapters.grpc.errors import parse_uuid, translate_errors, translate_stream_errors
from hub.application.case_sharing import CaseSharing, NotRouted
from hub.application.partner_intake import EventInvalid, refusal_reason
from hub.domain.errors import CaseNotFound, ConcurrentUpdate, HubError, NotPermitted
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from tongban.v1 import exchange_pb2, exchange_pb2_grpc

log = structlog.get_logger("tongban.exchange")
MAX_BATCH = 1000


class _Impersonation(NotPermitted):
    reason = "IMPERSONATION"


class ExchangeServicer(exchange_pb2_grpc.ExchangeServiceServicer):
    def __init__(
        self, sharing: CaseSharing, identify: Callable[[grpc.ServicerContext], str | None],
        countersign: Callable[[str, str], str] | None = None, observer: ExchangeObserver | None = None,
    ) -> None:
        self.sharing = sharing
        self.observer: ExchangeObserver = observer or Unobserved()
        self.identify = identify
        self.countersign = countersign

    def _caller(self, context: grpc.ServicerContext) -> str:
        caller = self.identify(context)
        if caller is None:
            log.warning("partner_unidentified")
            raise NotPermitted("no verified site certificate")
        return caller

    @translate_errors
    def DeliverEvents(
        self, request: exchange_pb2.DeliverEventsRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.DeliverEventsResponse:
        receipts = self._ingest(self._caller(context), request.sender_site, request.events)
        return exchange_pb2.DeliverEventsResponse(
            receiver_site=self.sharing.site, receipts=[receipt_message(r) for r in receipts]
        )

    @translate_stream_errors
    def IngestEvents(
        self, requests: Iterator[exchange_pb2.IngestEventsRequest], context: grpc.ServicerContext
    ) -> Iterator[exchange_pb2.IngestEventsResponse]:
        """One batch at a time: the next is read only once this one is stored and answered, so a fast
        sender is held back by the stream's flow control rather than queued here."""
        caller = self._caller(context)
        for request in requests:
            receipts = self._ingest(caller, request.sender_site, request.events)
            yield exchange_pb2.IngestEventsResponse(
                batch_id=request.batch_id, receiver_site=self.sharing.site,
                receipts=[receipt_message(r) for r in receipts],
            )

    def _ingest(
        self, caller: str, claimed: str, messages: Sequence[exchange_pb2.SharedEvent]
    ) -> list[CaseReceipt]:
        """Check who sends, decode, check and store one batch in one transaction. A refusal (a hub error
        other than a lost race) is logged and counted per partner and reason, then answered."""
        try:
            if claimed != caller:
                log.warning("partner_impersonation", caller=caller, claimed=claimed[:16])
                raise _Impersonation(f"certificate is for site {caller}, request claims {claimed[:16]}")
            if len(messages) > MAX_BATCH:
                raise EventInvalid.at("BATCH_TOO_LARGE", "", "events", f"一次最多 {MAX_BATCH} 个事件")
            events = [event_from(m) for m in messages]
            receipts = self.sharing.ingest(caller, events)
        except HubError as refused:
            if not isinstance(refused, ConcurrentUpdate | CaseNotFound):
                self._refused(caller, refused)
            raise
        self.observer.received(caller, "grpc", len(events))
        log.info("partner_events_received", partner=caller, events=len(events),
                 gaps=sum(r.status is ReceiptStatus.GAP for r in receipts),
                 forks=sum(r.status is ReceiptStatus.FORK for r in receipts))
        return receipts

    def _refused(self, caller: str, refused: HubError) -> None:
        reason = refusal_reason(refused)
        log.warning("partner_refused", partner=caller, reason=reason, event_id=refused.metadata.get("event_id", ""))
        self.observer.refused(caller, reason)

    @translate_errors
    def CountersignCheckpoint(
        self, request: exchange_pb2.CountersignCheckpointRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.CountersignCheckpointResponse:
        caller = self._caller(context)
        if self.countersign is None:
            raise NotPermitted("this site does not countersign checkpoints")
        signature = self.countersign(caller, request.signed_checkpoint_json)
        log.info("checkpoint_countersigned", partner=caller)
        return exchange_pb2.CountersignCheckpointResponse(countersignature_json=signature)

    @translate_errors
    def FetchEvents(
        self, request: exchange_pb2.FetchEventsRequest, context: grpc.ServicerContext
    ) -> exchange_pb2.FetchEventsResponse:
        caller = self._caller(context)
        case_id = parse_uuid(request.case_id, "case_id")
        try:
            events = self.sharing.events_for(caller, case_id, request.origin_site, request.from_seq)
        except NotRouted as refused:
            log.warning("partner_refused", partner=caller, reason=refused.reason)
            raise
        return exchange_pb2.FetchEventsResponse(events=[event_message(e) for e in events])
