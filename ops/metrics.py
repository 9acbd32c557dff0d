"""Every metric the hub exports, defined once, on one registry per site.

Names follow Prometheus conventions (snake_case, base units, `_total` for counters, `_seconds` for
durations). Labels are bounded: site codes, channels, states, gRPC methods and codes. Never a case
id, staff id or anything from a request body.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass(frozen=True)
class CaseCounts:
    """What the business collector reads at scrape time (from the case read model)."""

    by_state_and_partner: dict[tuple[str, str], int]
    warning: int
    breached: int
    bad_reviews_awaiting: int
    rectified_on_time: int
    rectified_total: int
    index_lag: int = 0  # log entries the read model has not folded yet


class SiteMetrics:
    """The metrics of one site. Adapters call these; the domain never does."""

    def __init__(self, site: str, registry: CollectorRegistry | None = None) -> None:
        self.site = site
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # exchange
        self.events_relayed = Counter(
            "tongban_exchange_events_relayed_total", "Shared events delivered to a partner site.",
            ["partner", "channel"], registry=r)
        self.events_received = Counter(
            "tongban_exchange_events_received_total", "Shared events received from a partner site and stored.",
            ["partner", "channel"], registry=r)
        self.events_refused = Counter(
            "tongban_exchange_events_refused_total",
            "Partner batches refused before anything was stored, by reason code (a bounded set).",
            ["partner", "reason"], registry=r)
        self.relay_lag_events = Gauge(
            "tongban_exchange_relay_lag_events", "Events in the log after the relay's receipted position.",
            ["partner", "channel"], registry=r)
        self.relay_lag_seconds = Gauge(
            "tongban_exchange_relay_lag_seconds", "Age of the oldest event not yet receipted by the partner.",
            ["partner", "channel"], registry=r)
        self.delivery_seconds = Histogram(
            "tongban_exchange_delivery_seconds", "Time to deliver one batch and get its receipt.",
            ["partner", "channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.delivery_failures = Counter(
            "tongban_exchange_delivery_failures_total", "Deliveries that failed and will be retried.",
            ["partner", "channel"], registry=r)
        self.retries = Counter(
            "tongban_exchange_retries_total", "Transient-error retries inside one delivery.",
            ["partner", "channel"], registry=r)
        self.parked = Gauge(
            "tongban_exchange_parked_messages", "Messages parked for an operator (NATS).", registry=r)
        self.parked_deliveries_gauge = Gauge(
            "tongban_exchange_parked_deliveries",
            "Cases of ours a partner refused for good, parked at this (sending) site for an operator.",
            ["partner", "channel"], registry=r)
        self.receipts_outstanding = Gauge(
            "tongban_exchange_receipts_outstanding",
            "Cases whose latest events the partner has not receipted yet.", ["partner"], registry=r)
        self.partner_up = Gauge(
            "tongban_exchange_partner_up", "1 when the last delivery to the partner succeeded.",
            ["partner", "channel"], registry=r)
        # reconciliation
        self.reconcile_runs = Counter(
            "tongban_reconcile_runs_total", "Reconciliation runs.", ["partner", "result"], registry=r)
        self.reconcile_differences = Counter(
            "tongban_reconcile_differences_total", "Differences found, by class.", ["partner", "class"], registry=r)
        self.reconcile_repairs = Counter(
            "tongban_reconcile_repairs_total", "Differences repaired automatically.", ["partner"], registry=r)
        self.discrepancies_open = Gauge(
            "tongban_reconcile_discrepancies_open", "Discrepancy cases open for people.", ["partner"], registry=r)
        self.reconcile_tripped = Gauge(
            "tongban_reconcile_breaker_tripped",
            "1 when the last run found too many differences to repair automatically.", ["partner"], registry=r)
        self.reconcile_seconds = Histogram(
            "tongban_reconcile_duration_seconds", "Duration of one reconciliation run.", ["partner"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        # gRPC server
        self.rpc_handled = Counter(
            "tongban_grpc_server_handled_total", "RPCs completed, by method and status code.",
            ["method", "code"], registry=r)
        self.rpc_seconds = Histogram(
            "tongban_grpc_server_handling_seconds", "RPC handling time.", ["method"], buckets=LATENCY_BUCKETS,
            registry=r)
        # store
        self.append_seconds = Histogram(
            "tongban_store_append_seconds", "Time to store one transaction of events.", buckets=LATENCY_BUCKETS,
            registry=r)
        self.batch_size = Histogram(
            "tongban_store_batch_size", "Events stored per transaction.", buckets=BATCH_BUCKETS, registry=r)
        # business counters kept as events happen
        self.supplement_requests = Counter(
            "tongban_supplement_requests_total", "One-time supplement notices issued (一次性告知).", registry=r)

        self._outstanding: dict[str, int] = {}  # receipts_outstanding as counted (the relay and the inbox settle it)
        self._outstanding_lock = threading.Lock()

    # ------------------------------------------------------------------ the observers' methods
    # SiteMetrics is the typed observer the composition root hands the exchange and the store
    # (adapters.exchange.observer.ExchangeObserver, hub.application.ports.StoreObserver).
    def stored(self, events: int, seconds: float) -> None:
        """One transaction written: its latency and size."""
        self.append_seconds.observe(seconds)
        self.batch_size.observe(events)

    def received(self, sender: str, channel: str, events: int) -> None:
        self.events_received.labels(sender, channel).inc(events)

    def refused(self, sender: str, reason: str) -> None:
        self.events_refused.labels(sender, reason).inc()

    def delivered(self, partner: str, channel: str, events: int, seconds: float) -> None:
        self.delivery_seconds.labels(partner, channel).observe(seconds)
        self.events_relayed.labels(partner, channel).inc(events)
        self.partner_up.labels(partner, channel).set(1)

    def delivery_failed(self, partner: str, channel: str) -> None:
        self.delivery_failures.labels(partner, channel).inc()
        self.partner_up.labels(partner, channel).set(0)

    def retried(self, partner: str, channel: str) -> None:
        self.retries.labels(partner, channel).inc()

    def relay_lag(self, partner: str, channel: str, events: int, seconds: float) -> None:
        self.relay_lag_events.labels(partner, channel).set(events)
        self.relay_lag_seconds.labels(partner, channel).set(seconds)

    def awaiting_receipts(self, partner: str, sent: int = 0, confirmed: int = 0) -> None:
        """``sent`` more of our events went to the partner; it confirmed ``confirmed`` for the first time."""
        with self._outstanding_lock:
            now = max(self._outstanding.get(partner, 0) + sent - confirmed, 0)
            self._outstanding[partner] = now
            self.receipts_outstanding.labels(partner).set(now)

    def parked_deliveries(self, partner: str, channel: str, cases: int) -> None:
        self.parked_deliveries_gauge.labels(partner, channel).set(cases)

    def watch_cases(self, read: Callable[[], CaseCounts]) -> None:
        """Register the business collector: it reads the case read model at each scrape."""
        self.registry.register(_CaseCollector(read))


class _CaseCollector(Collector):
    def __init__(self, read: Callable[[], CaseCounts]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        counts = self.read()
        cases = GaugeMetricFamily("tongban_cases", "Cases by state and partner site.", labels=["state", "partner"])
        for (state, partner), n in sorted(counts.by_state_and_partner.items()):
            cases.add_metric([state, partner], n)
        yield cases
        due = GaugeMetricFamily("tongban_cases_due", "Open cases with a clock in warning or breached.",
                                labels=["status"])
        due.add_metric(["warning"], counts.warning)
        due.add_metric(["breached"], counts.breached)
        yield due
        yield GaugeMetricFamily("tongban_bad_reviews_awaiting_rectification",
                                "Bad reviews not yet rectified, explained or upheld on appeal.",
                                value=counts.bad_reviews_awaiting)
        yield GaugeMetricFamily("tongban_case_index_lag_entries",
                                "Event log entries the case read model (lists, these gauges) has not caught up with.",
                                value=counts.index_lag)
        ratio = counts.rectified_on_time / counts.rectified_total if counts.rectified_total else 1.0
        yield GaugeMetricFamily("tongban_rectification_on_time_ratio",
                                "Share of closed bad reviews handled within the rectification deadline.", value=ratio)
