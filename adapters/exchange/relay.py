"""The relay: one thread per partner that follows our event log and delivers on the partner's channel.

It wakes when the hub saves events (and polls as a fallback), sends what the partner has not
receipted yet, and stores receipts with its new position atomically (Exchange.record_receipts).

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
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from adapters.following import follow
from hub.application.exchange import CaseReceipt, Exchange, OutboundBatch
from hub.domain.shared import SharedEvent
from ops.metrics import SiteMetrics

log = structlog.get_logger("tongban.relay")


class Pending(Protocol):
    """A delivery under way (a concurrent.futures or gRPC future)."""

    def result(self, timeout: float | None = None) -> list[CaseReceipt]: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


class Mapped:
    """A future of a channel's raw answer, seen as a future of receipts (``convert`` turns one into the other)."""

    def __init__(self, future: Any, convert: Callable[[Any], list[CaseReceipt]]) -> None:
        self._future, self._convert = future, convert

    def result(self, timeout: float | None = None) -> list[CaseReceipt]:
        return self._convert(self._future.result(timeout=timeout))

    def cancel(self) -> bool:
        return bool(self._future.cancel())

    def done(self) -> bool:
        return bool(self._future.done())


class Channel(Protocol):
    """How events reach one partner. ``deliver`` returns the receipts it got back (maybe none yet).

    A channel may also offer ``deliver_async(events) -> Pending`` to let the relay pipeline batches.
    """

    channel_name: str
    partner: str

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]: ...

    def close(self) -> None: ...


@dataclass
class _InFlight:
    batch: OutboundBatch
    pending: Pending | None  # None: nothing to send, only the position moves
    sent_at: float


def _answered(flight: _InFlight) -> bool:
    return flight.pending is None or flight.pending.done()


class Relay:
    def __init__(
        self, exchange: Exchange, channel: Channel, batch: int = 200, idle: float = 0.5,
        metrics: SiteMetrics | None = None, window: int = 2000, settle_timeout: float = 60.0,
        max_batches: int = 64,
    ) -> None:
        self.exchange = exchange
        self.channel = channel
        self.metrics = metrics
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
        self.channel.close()

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
            self._sent_through = self.exchange.position(partner, name)
        while self.unacknowledged < self.window and len(self._in_flight) < self.max_batches:
            batch = self.exchange.outbound(partner, self._sent_through, self.batch)
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
        deliver_async = getattr(self.channel, "deliver_async", None)
        if deliver_async is not None:
            pending: Pending = deliver_async(events)
            return pending
        done: Future[list[CaseReceipt]] = Future()
        try:
            done.set_result(self.channel.deliver(events))
        except Exception as error:
            done.set_exception(error)
        return done

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
                if self.metrics is not None:
                    self.metrics.delivery_failures.labels(partner, name).inc()
                    self.metrics.partner_up.labels(partner, name).set(0)
                raise
        batch = OutboundBatch([e for f in flights for e in f.batch.events], flights[-1].batch.through,
                              {key: head for f in flights for key, head in f.batch.heads.items()})
        if self.metrics is not None and batch.events:
            self.metrics.delivery_seconds.labels(partner, name).observe(time.perf_counter() - flights[0].sent_at)
            self.metrics.events_relayed.labels(partner, name).inc(len(batch.events))
            self.metrics.partner_up.labels(partner, name).set(1)
        sent = getattr(self.exchange, "sent", None)
        if sent is not None and batch.events:
            sent(partner, len(batch.events))
        # A gap (pipelined batches stored out of order, or a loss) is filled before the position moves
        # past it: should filling fail, the position stays and the next pass sends the batch again.
        for receipt in [r for r in receipts if r.status == "gap"]:
            receipts += self.channel.deliver(self.exchange.resend(receipt.case_id, receipt.origin,
                                                                  receipt.missing_from))
        self.exchange.record_receipts(partner, name, receipts, batch.through, batch)
        for receipt in receipts:
            if receipt.status == "fork":
                log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                          origin=receipt.origin, stored_through=receipt.stored_through)
        if batch.events:
            log.info("relayed", partner=partner, channel=name, events=len(batch.events), position=batch.through)
        return len(batch.events) or 1

    def _drop_in_flight(self) -> None:
        """Forget every delivery under way: the next pump starts again from the stored position."""
        for flight in self._in_flight:
            if flight.pending is not None:
                flight.pending.cancel()
        self._in_flight.clear()
        self._sent_through = None

    def _observe_lag(self, position: int, pending: Sequence[SharedEvent]) -> None:
        if self.metrics is None:
            return
        partner, name = self.channel.partner, self.channel.channel_name
        head = int(self.exchange.hub.recorder.max_notification_id() or 0)
        self.metrics.relay_lag_events.labels(partner, name).set(max(head - position, 0))
        oldest = min((e.occurred_at for e in pending), default=None)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        self.metrics.relay_lag_seconds.labels(partner, name).set(max(age, 0.0))

    def _run(self) -> None:
        follow(lambda: bool(self.pump()), self.wake, self._stopping, idle=self.idle, failed=self._failed,
               first_pause=0.1, most_pause=5.0)

    def _failed(self, error: Exception, pause: float) -> None:
        """The partner or the store is down: the position is kept, and the pump retried after ``pause``."""
        log.warning("relay_failed", partner=self.channel.partner, error=f"{type(error).__name__}: {error}",
                    retry_in=pause)
