"""Scheduled reconciliation: each gRPC partner every ``interval`` seconds, on one background thread.

A run's outcome goes to the metrics (runs by result, differences by class, repairs, open
discrepancies, the breaker) and to one structured log line; a failed run is logged and retried at
the next tick, never fatal to the site.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import structlog

from ops.metrics import SiteMetrics
from reconciliation.ports import ReconcilePeer
from reconciliation.reconciler import Reconciler, Summary

log = structlog.get_logger("tongban.reconcile")


def record(metrics: SiteMetrics, reconciler: Reconciler, summary: Summary) -> None:
    partner = summary.partner
    metrics.reconcile_runs.labels(partner, "tripped" if summary.tripped else "ok").inc()
    for kind, n in summary.by_kind.items():
        metrics.reconcile_differences.labels(partner, kind).inc(n)
    metrics.reconcile_repairs.labels(partner).inc(summary.repaired)
    metrics.reconcile_seconds.labels(partner).observe(summary.seconds)
    metrics.reconcile_tripped.labels(partner).set(1 if summary.tripped else 0)
    metrics.discrepancies_open.labels(partner).set(len(reconciler.discrepancies(partner)))


class ReconcileSchedule:
    def __init__(
        self, reconciler: Reconciler, peers: Sequence[ReconcilePeer], metrics: SiteMetrics, interval: float
    ) -> None:
        self.reconciler, self.peers, self.metrics, self.interval = reconciler, list(peers), metrics, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)

    def start(self) -> None:
        if self.interval > 0 and self.peers:
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def run_once(self, peer: ReconcilePeer) -> Summary | None:
        started = time.monotonic()
        try:
            summary = self.reconciler.run(peer)
        except Exception as error:  # the next tick tries again
            self.metrics.reconcile_runs.labels(peer.partner, "error").inc()
            log.warning("reconcile_failed", partner=peer.partner, error=f"{type(error).__name__}: {error}",
                        seconds=round(time.monotonic() - started, 3))
            return None
        record(self.metrics, self.reconciler, summary)
        log.info("reconcile_finished", **{k: v for k, v in summary.as_dict().items() if k != "partner"},
                 partner=summary.partner)
        return summary

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            for peer in self.peers:
                if self._stopping.is_set():
                    return
                self.run_once(peer)
