"""The relay: one thread per partner that follows our event log and delivers on the partner's channel.

It wakes when the site saves events (and polls as a fallback), sends what the partner has not
receipted yet, and stores receipts with its new position atomically (CaseSharing.record_receipts).

Deliveries are pipelined: while the oldest batch waits for its acknowledgement, the next batches
go out, up to ``window`` events sent and not yet receipted. Receipts are stored strictly in batch
order, so the stored position only ever advances contiguously, and never past a gap the partner
reported before it is filled. A failed delivery changes nothing stored: everything in flight is
dropped and sent again from the stored position after a bounded, growing pause (the receiver's
(case, origin, seq) check makes the repeats harmless).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from adapters.exchange.channel import Channel, Pending
from adapters.exchange.observer import ExchangeObserver, Unobserved
from adapters.following import follow
from adapters.retry import Backoff
from hub.application.case_sharing import CaseSharing, OutboundBatch
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from hub.domain.shared import SharedEvent

log = structlog.get_logger("tongban.relay")


@dataclass
class _InFlight:
    batch: OutboundBatch
    pending: Pending | None  # None: nothing to send, only the position moves
    sent_at: float


def _answered(flight: _InFlight) -> bool:
    return flight.pending is None or flight.pending.done()


class Relay:
    def __init__(
        self, sharing: CaseSharing, channel: Channel, batch: int = 200, idle: float = 0.5,
        observer: ExchangeObserver | None = None, window: int = 2000, settle_timeout: float = 60.0,
        max_batches: int = 64, backoff: Backoff | None = None,
    ) -> None:
        self.sharing = sharing
        self.channel = channel
        self.observer: ExchangeObserver = observer or Unobserved()
        self.backoff = backoff or Backoff(first=0.1, most=5.0)
        self.batch = batch
        self.idle = idle
        self.window = max(window, 1)
        # Batches with nothing for this partner (a log mostly of other partners' cases, or a backlog
        # after a bulk load) hold no window: this bound makes the position advance as they are read.
        self.max_batches = max(max_batches, 1)
        self.settle_timeout = settle_timeout
        self.wake = threading.Event()
        self._in_flight: deque[_InFlight] = deque()
        self._sent_through: int | None = None  # log position after the newest batch in flight
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"relay-{channel.partner}", daemon=True)
        sharing.log.on_saved(self.wake.set)

    @property
    def unacknowledged(self) -> int:
        """Events sent and not yet receipted (never more than ``window`` plus one batch)."""
        return sum(len(f.batch.events) for f in self._in_flight)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake.set()
        if self._thread.is_alive():  # a site that failed to start stops relays that never ran
            self._thread.join(timeout)

    def pump(self) -> int:
        """Send what the window allows, then settle the oldest delivery; returns how many events it
        settled (0: nothing new and nothing in flight)."""
        try:
            self._fill()
            if not self._in_flight:
                return 0
            flights = [self._in_flight.popleft()]
            while self._in_flight and _answered(self._in_flight[0]):  # answered meanwhile: one transaction
                flights.append(self._in_flight.popleft())
            return self._settle(flights)
        except Exception:
            self._drop_in_flight()
            raise

    def _fill(self) -> None:
        partner, name = self.channel.partner, self.channel.channel_name
        if self._sent_through is None:
            self._sent_through = self.sharing.position(partner, name)
        while self.unacknowledged < self.window and len(self._in_flight) < self.max_batches:
            batch = self.sharing.outbound(partner, self._sent_through, self.batch)
            if not self._in_flight:
                self._observe_lag(self._sent_through, batch.events)
            if batch.through == self._sent_through:
                return
            if self._in_flight and batch.through - self._sent_through < self.batch // 2:
                return  # a trickle: let it gather while the deliveries under way are answered
            self._in_flight.append(_InFlight(batch, self._send(batch.events) if batch.events else None,
                                             time.perf_counter()))
            self._sent_through = batch.through

    def _send(self, events: Sequence[SharedEvent]) -> Pending:
        return self.channel.deliver_async(events)

    def fill_gap(self, receipt: CaseReceipt) -> None:
        """A partner reported a gap out of band (a NATS receipt): send our events from the missing seq
        again, and store whatever receipts that brings back."""
        if receipt.origin != self.sharing.site:
            return
        events = self.sharing.resend(receipt.case_id, receipt.origin, receipt.missing_from)
        if events:
            receipts = self.channel.resend(events, receipt)
            if receipts:
                self._record(receipts, None, None)

    def _settle(self, flights: list[_InFlight]) -> int:
        """Wait for the oldest deliveries' answers, then store their receipts and the position after the
        last of them in one transaction."""
        partner, name = self.channel.partner, self.channel.channel_name
        receipts: list[CaseReceipt] = []
        for flight in flights:
            if flight.pending is None:
                continue
            try:
                receipts += flight.pending.result(timeout=self.settle_timeout)
            except Exception:
                self.observer.delivery_failed(partner, name)
                raise
        batch = OutboundBatch([e for f in flights for e in f.batch.events], flights[-1].batch.through,
                              {key: head for f in flights for key, head in f.batch.heads.items()})
        if batch.events:
            self.observer.delivered(partner, name, len(batch.events), time.perf_counter() - flights[0].sent_at)
            self.observer.awaiting_receipts(partner, sent=len(batch.events))
        # A gap (pipelined batches stored out of order, or a loss) is filled before the position moves
        # past it: should filling fail, the position stays and the next pass sends the batch again.
        for receipt in [r for r in receipts if r.status is ReceiptStatus.GAP]:
            receipts += self.channel.deliver(self.sharing.resend(receipt.case_id, receipt.origin,
                                                                 receipt.missing_from))
        self._record(receipts, batch.through, batch)
        for receipt in receipts:
            if receipt.status is ReceiptStatus.FORK:
                log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                          origin=receipt.origin, stored_through=receipt.stored_through)
        if batch.events:
            log.info("relayed", partner=partner, channel=name, events=len(batch.events), position=batch.through)
        return len(batch.events) or 1

    def _record(self, receipts: list[CaseReceipt], through: int | None, batch: OutboundBatch | None) -> None:
        partner, name = self.channel.partner, self.channel.channel_name
        confirmed = self.sharing.record_receipts(partner, name, receipts, through, batch)
        self.observer.awaiting_receipts(partner, confirmed=confirmed)

    def _drop_in_flight(self) -> None:
        """Forget every delivery under way: the next pump starts again from the stored position."""
        for flight in self._in_flight:
            if flight.pending is not None:
                flight.pending.cancel()
        self._in_flight.clear()
        self._sent_through = None

    def _observe_lag(self, position: int, pending: Sequence[SharedEvent]) -> None:
        oldest = min((e.occurred_at for e in pending), default=None)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.observer.relay_lag(self.channel.partner, self.channel.channel_name,
                                max(self.sharing.head() - position, 0), max(age, 0.0))

    def _run(self) -> None:
        follow(lambda: bool(self.pump()), self.wake, self._stopping, idle=self.idle, backoff=self.backoff,
               failed=self._failed)

    def _failed(self, error: Exception, pause: float) -> None:
        """The partner or the store is down: the position is kept, and the pump retried after ``pause``."""
        log.warning("relay_failed", partner=self.channel.partner, error=f"{type(error).__name__}: {error}",
                    retry_in=pause)
