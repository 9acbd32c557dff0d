"""Where the adapters feed ops/metrics.py: the exchange boundary, the store, the read model.

The domain and application layers never count; these wrappers observe them from outside.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from hub.application.exchange import CaseReceipt, Exchange, OutboundBatch
from hub.application.service import CaseHub
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.shared import SharedEvent
from ops.metrics import CaseCounts, SiteMetrics


class MeteredExchange:
    """An Exchange seen through one channel: counts what is received and what is still unreceipted."""

    def __init__(self, exchange: Exchange, metrics: SiteMetrics, channel: str) -> None:
        self._exchange = exchange
        self.metrics = metrics
        self.channel = channel
        self.site = exchange.site
        self._lock = threading.Lock()  # the relay and the NATS inbox both settle the gauge

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exchange, name)

    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        receipts = self._exchange.ingest(sender, events)
        self.metrics.events_received.labels(sender, self.channel).inc(len(events))
        return receipts

    def sent(self, partner: str, count: int) -> None:
        with self._lock:
            self.metrics.receipts_outstanding.labels(partner).inc(count)

    def record_receipts(
        self, partner: str, channel: str, receipts: Sequence[CaseReceipt], through: int | None,
        sent: OutboundBatch | None = None,
    ) -> int:
        covered = self._exchange.record_receipts(partner, channel, receipts, through, sent)
        gauge = self.metrics.receipts_outstanding.labels(partner)
        with self._lock:
            gauge.set(max(gauge._value.get() - covered, 0))
        return covered


def meter_store(hub: CaseHub, metrics: SiteMetrics) -> None:
    """Time every transaction the hub writes, and count its events (append latency, batch size)."""
    recorder = hub.recorder
    insert = recorder.insert_events

    def timed(stored_events: Sequence[Any], **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = insert(stored_events, **kwargs)
        metrics.append_seconds.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(stored_events))
        return result

    recorder.insert_events = timed  # type: ignore[method-assign]


def case_counts(hub: CaseHub) -> Callable[[], CaseCounts]:
    """The business collector's source: the case read model as it stands (IndexFollower keeps it up;
    a scrape never folds, so it answers at once whatever the backlog), and how far behind it is."""

    def read() -> CaseCounts:
        summary = hub.index.summary(hub.site, datetime.now(LOCAL_TZ).date())
        closed = summary.reviews.get("on_time", 0) + summary.reviews.get("late", 0)
        return CaseCounts(
            by_state_and_partner=summary.by_state_and_partner,
            warning=summary.warning,
            breached=summary.breached,
            bad_reviews_awaiting=summary.reviews.get("open", 0),
            rectified_on_time=summary.reviews.get("on_time", 0),
            rectified_total=closed,
            index_lag=hub.index_lag(),
        )

    return read
