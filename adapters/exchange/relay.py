"""The relay: one thread per partner that follows our event log and delivers on the partner's channel.

It wakes when the hub saves events (and polls as a fallback), sends what the partner has not
receipted yet, and stores receipts with its new position atomically (Exchange.record_receipts).
A failed delivery changes nothing: the same events go again after a bounded, growing pause.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import structlog

from hub.application.exchange import CaseReceipt, Exchange
from hub.domain.shared import SharedEvent
from ops.metrics import SiteMetrics

log = structlog.get_logger("tongban.relay")


class Channel(Protocol):
    """How events reach one partner. ``deliver`` returns the receipts it got back (maybe none yet)."""

    channel_name: str
    partner: str

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]: ...

    def close(self) -> None: ...


class Relay:
    def __init__(
        self, exchange: Exchange, channel: Channel, batch: int = 200, idle: float = 0.5,
        metrics: SiteMetrics | None = None,
    ) -> None:
        self.exchange = exchange
        self.channel = channel
        self.metrics = metrics
        self.batch = batch
        self.idle = idle
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"relay-{channel.partner}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake.set()
        self._thread.join(timeout)
        self.channel.close()

    def pump(self) -> int:
        """Deliver one batch; returns how many events went out (0: nothing new)."""
        partner, name = self.channel.partner, self.channel.channel_name
        position = self.exchange.position(partner, name)
        batch = self.exchange.outbound(partner, position, self.batch)
        self._observe_lag(position, batch.events)
        if batch.through == position:
            return 0
        started = time.perf_counter()
        try:
            receipts = self.channel.deliver(batch.events) if batch.events else []
        except Exception:
            if self.metrics is not None:
                self.metrics.delivery_failures.labels(partner, name).inc()
                self.metrics.partner_up.labels(partner, name).set(0)
            raise
        if self.metrics is not None and batch.events:
            self.metrics.delivery_seconds.labels(partner, name).observe(time.perf_counter() - started)
            self.metrics.events_relayed.labels(partner, name).inc(len(batch.events))
            self.metrics.partner_up.labels(partner, name).set(1)
        sent = getattr(self.exchange, "sent", None)
        if sent is not None and batch.events:
            sent(partner, len(batch.events))
        self.exchange.record_receipts(partner, name, receipts, batch.through)
        for receipt in receipts:
            if receipt.status == "gap":
                missing = self.exchange.resend(receipt.case_id, receipt.origin, receipt.missing_from)
                self.exchange.record_receipts(partner, name, self.channel.deliver(missing), None)
            elif receipt.status == "fork":
                log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                          origin=receipt.origin, stored_through=receipt.stored_through)
        if batch.events:
            log.info("relayed", partner=partner, channel=name, events=len(batch.events), position=batch.through)
        return len(batch.events) or 1

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
        pause = 0.1
        while not self._stopping.is_set():
            try:
                moved = self.pump()
                pause = 0.1
            except Exception as error:  # the partner or the store is down: keep the position, retry later
                log.warning("relay_failed", partner=self.channel.partner, error=f"{type(error).__name__}: {error}",
                            retry_in=pause)
                self._stopping.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            if not moved:
                self.wake.wait(self.idle)
                self.wake.clear()
