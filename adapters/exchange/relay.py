"""The relay: one thread per partner that follows our event log and delivers on the partner's channel.

It wakes when the site saves events (and polls as a fallback), sends what the partner has not
receipted yet, and stores receipts with its new position atomically (CaseSharing.record_receipts).

Deliveries are pipelined: while the oldest batch waits for its acknowledgement, the next batches
go out, up to ``window`` events sent and not yet receipted. Receipts are stored strictly in batch
order, so the stored position only ever advances contiguously, and never past a gap the partner
reported before it is filled. A failed delivery changes nothing stored: everything in flight is
dropped and sent again from the stored position after a bounded, growing pause (the receiver's
(case, origin, seq) check makes the repeats harmless).

A final refusal (adapters/exchange/refusal.py) is not retried: the partner refuses a whole batch, so
the relay sends the batch's cases again in halves, down to one case, to find the refused case(s) and
deliver the rest; the refused case's events are parked (hub/domain/parked.py) with the partner's
reason, in the transaction that stores the other cases' receipts and moves the position past them.
The relay goes on with other cases; that case waits: its later events are held back (recorded on its
entry, with the position that passes them) and go out, in order, when an operator replays it. A
decision to hold back is made on the ledger as the relay last read it; if an operator replayed the
case meanwhile (from another process), the save fails on the ledger's version and the relay starts
again from its stored position with the ledger read anew.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import structlog

from adapters.exchange.channel import Channel, Pending
from adapters.exchange.observer import ExchangeObserver, Unobserved
from adapters.exchange.refusal import refusal_of
from adapters.following import follow
from adapters.retry import Backoff
from hub.application.case_sharing import CaseSharing, OutboundBatch
from hub.application.dead_letters import DeadLetters
from hub.domain.parked import ParkedDeliveries, ParkedStatus, Refusal
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from hub.domain.shared import SharedEvent

log = structlog.get_logger("tongban.relay")


@dataclass
class _InFlight:
    batch: OutboundBatch
    pending: Pending | None  # None: nothing to send, only the position moves
    sent_at: float
    held: list[SharedEvent] = field(default_factory=list)  # events of parked cases: held back, not sent


def _answered(flight: _InFlight) -> bool:
    return flight.pending is None or flight.pending.done()


class Relay:
    def __init__(
        self, sharing: CaseSharing, channel: Channel, batch: int = 200, idle: float = 0.5,
        observer: ExchangeObserver | None = None, window: int = 2000, settle_timeout: float = 60.0,
        max_batches: int = 64, backoff: Backoff | None = None, parked_refresh: float = 30.0,
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
        self.dead_letters = DeadLetters(sharing)
        self.parked_refresh = parked_refresh
        self._parked: ParkedDeliveries | None = None  # as last read (None: read it before deciding)
        self._parked_read_at = 0.0
        self._blocked: frozenset[UUID] = frozenset()  # cases whose events do not go out now
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
            sending, held = self._hold_back(batch)
            self._in_flight.append(_InFlight(sending, self._send(sending.events) if sending.events else None,
                                             time.perf_counter(), held))
            self._sent_through = batch.through

    def _ledger(self, force: bool = False) -> ParkedDeliveries:
        """The parked deliveries the relay decides on: read at start and after a failure, and again (every
        ``parked_refresh`` seconds, or when ``force``) while nothing is in flight, so an operator's replay
        from another process shows here; a decision on an older read fails at its save instead."""
        now = time.monotonic()
        stale = force or now - self._parked_read_at >= self.parked_refresh
        if self._parked is None or (stale and not self._in_flight):
            self._parked = self.dead_letters.ledger(self.channel.partner, self.channel.channel_name)
            self._parked_read_at = now
            self._blocked = self._parked.blocked()
            self.observer.parked_deliveries(self.channel.partner, self.channel.channel_name,
                                            self._parked.parked_count)
        return self._parked

    def _hold_back(self, batch: OutboundBatch) -> tuple[OutboundBatch, list[SharedEvent]]:
        """The batch without the events of blocked cases, and those of them to hold back (a discarded
        case's events are not sent, nor held: it stays undelivered to this partner)."""
        ledger = self._ledger()
        if not any(e.case_id in self._blocked for e in batch.events):
            return batch, []
        ledger = self._ledger(force=True)  # replayed meanwhile? (read only while nothing is in flight)
        blocked = self._blocked
        sending = OutboundBatch([e for e in batch.events if e.case_id not in blocked], batch.through,
                                {key: head for key, head in batch.heads.items() if key[0] not in blocked})
        held = [e for e in batch.events if e.case_id in blocked and ledger.status(e.case_id) is ParkedStatus.PARKED]
        for event in batch.events:
            if event.case_id in blocked and ledger.status(event.case_id) is ParkedStatus.DISCARDED:
                log.info("not_relayed_discarded", partner=self.channel.partner, case_id=str(event.case_id),
                         seq=event.seq)
        return sending, held

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
        last of them in one transaction. A delivery the partner refused is bisected, its refused cases
        parked in the same transaction; the deliveries after it are dropped and sent again from there."""
        partner, name = self.channel.partner, self.channel.channel_name
        receipts: list[CaseReceipt] = []
        refused: dict[UUID, tuple[list[SharedEvent], Refusal]] = {}
        for index, flight in enumerate(flights):
            if flight.pending is None:
                continue
            try:
                receipts += flight.pending.result(timeout=self.settle_timeout)
            except Exception as error:
                refusal = refusal_of(error)
                if refusal is None:
                    self.observer.delivery_failed(partner, name)
                    raise
                log.warning("partner_refused_batch", partner=partner, channel=name, code=refusal.code,
                            reason=refusal.reason, events=len(flight.batch.events))
                receipts += self._bisect(flight.batch.events, refusal, refused)
                del flights[index + 1:]  # answered on a view that changes now: sent again after it
                break
        batch = OutboundBatch([e for f in flights for e in f.batch.events], flights[-1].batch.through,
                              {key: head for f in flights for key, head in f.batch.heads.items()})
        taken = len(batch.events) - sum(len(events) for events, _refusal in refused.values())
        if taken:
            self.observer.delivered(partner, name, taken, time.perf_counter() - flights[0].sent_at)
            self.observer.awaiting_receipts(partner, sent=taken)
        # A gap (pipelined batches stored out of order, or a loss) is filled before the position moves
        # past it: should filling fail, the position stays and the next pass sends the batch again.
        for receipt in [r for r in receipts if r.status is ReceiptStatus.GAP and r.case_id not in refused]:
            missing = self.sharing.resend(receipt.case_id, receipt.origin, receipt.missing_from)
            try:
                receipts += self.channel.deliver(missing)
            except Exception as error:
                refusal = refusal_of(error)
                if refusal is None:
                    raise
                refused[receipt.case_id] = (missing, refusal)
        held = [e for f in flights for e in f.held]
        if refused or held:
            self._park(receipts, batch.through, refused, held)
        else:
            self._record(receipts, batch.through, batch)
        for receipt in receipts:
            if receipt.status is ReceiptStatus.FORK:
                log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                          origin=receipt.origin, stored_through=receipt.stored_through)
        if batch.events:
            log.info("relayed", partner=partner, channel=name, events=len(batch.events), position=batch.through)
        if refused:
            self._drop_in_flight()
        return len(batch.events) or len(held) or 1

    def _bisect(
        self, events: Sequence[SharedEvent], refusal: Refusal, refused: dict[UUID, tuple[list[SharedEvent], Refusal]]
    ) -> list[CaseReceipt]:
        """Deliver a refused batch's cases again in halves, down to one case: the receipts of those the
        partner takes; each case it still refuses alone goes into ``refused`` with its own refusal."""
        by_case: dict[UUID, list[SharedEvent]] = {}
        for event in events:
            by_case.setdefault(event.case_id, []).append(event)
        receipts: list[CaseReceipt] = []

        def probe(cases: list[UUID], known: Refusal | None) -> None:
            group = [e for case_id in cases for e in by_case[case_id]]
            if known is None:
                try:
                    receipts.extend(self.channel.deliver(group))
                    return
                except Exception as error:
                    known = refusal_of(error)
                    if known is None:
                        raise
            if len(cases) == 1:
                refused[cases[0]] = (group, known)
                return
            half = len(cases) // 2
            probe(cases[:half], None)
            probe(cases[half:], None)

        probe(list(by_case), refusal)
        return receipts

    def _park(
        self, receipts: list[CaseReceipt], through: int, refused: dict[UUID, tuple[list[SharedEvent], Refusal]],
        held: list[SharedEvent],
    ) -> None:
        """Store the receipts, the refused cases parked, the held-back events and the position, together."""
        partner, name = self.channel.partner, self.channel.channel_name
        ledger = self._ledger()
        for case_id, (events, refusal) in refused.items():
            ledger.park(case_id, self.sharing.site, [e.seq for e in events], [e.type for e in events], refusal)
        by_case: dict[UUID, list[int]] = {}
        for event in held:
            by_case.setdefault(event.case_id, []).append(event.seq)
        for case_id, seqs in by_case.items():
            ledger.hold(case_id, seqs)
        self._record(receipts, through, None, also=[ledger])
        self._blocked = ledger.blocked()
        self.observer.parked_deliveries(partner, name, ledger.parked_count)
        for case_id, (events, refusal) in refused.items():
            log.warning("delivery_parked", partner=partner, channel=name, case_id=str(case_id),
                        seqs=[e.seq for e in events], code=refusal.code, reason=refusal.reason,
                        message=refusal.message)
        for case_id, seqs in by_case.items():
            log.info("delivery_held_back", partner=partner, channel=name, case_id=str(case_id), seqs=seqs)

    def _record(
        self, receipts: list[CaseReceipt], through: int | None, batch: OutboundBatch | None,
        also: Sequence[ParkedDeliveries] = (),
    ) -> None:
        partner, name = self.channel.partner, self.channel.channel_name
        confirmed = self.sharing.record_receipts(partner, name, receipts, through, batch, also=also)
        self.observer.awaiting_receipts(partner, confirmed=confirmed)

    def _drop_in_flight(self) -> None:
        """Forget every delivery under way: the next pump starts again from the stored position."""
        for flight in self._in_flight:
            if flight.pending is not None:
                flight.pending.cancel()
        self._in_flight.clear()
        self._sent_through = None
        self._parked = None  # its unsaved changes (if a save failed) are gone: read it again

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
