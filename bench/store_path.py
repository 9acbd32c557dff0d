"""The site's store path, in process on PostgreSQL: the same partner events stored one per save, in
batches (CaseSharing.ingest, as a partner delivery or a bulk load), and staff receipts group-committed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.bootstrap import build_hub
from adapters.grpc.translate import request_data
from adapters.settings import PostgresSettings, Settings
from bench.common import Figure, percentile, rss_mb
from bench.workload import RECEIVING, receive_request
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.group_commit import GroupCommitter
from hub.domain.case import Case
from hub.domain.shared import SharedEvent


@dataclass(frozen=True)
class StoredShape:
    """What one stored CaseReceived looks like in this store (for the raw baseline's rows)."""

    topic: str
    state: bytes


def hub_on(pg: PostgresSettings, site: str) -> CaseHub:
    return build_hub(Settings(site=site, store="postgres", postgres=pg, data_dir=Path("/nonexistent")))


def stored_shape(hub: CaseHub, event: SharedEvent) -> StoredShape:
    domain_event = Case.from_partner(event).collect_events()[0]
    stored = hub.mapper.to_stored_event(domain_event)
    return StoredShape(stored.topic, stored.state)


def ingest_one_per_save(hub: CaseHub, events: Sequence[SharedEvent]) -> Figure:
    exchange = CaseSharing(hub)
    latencies: list[float] = []
    started = time.perf_counter()
    for event in events:
        t = time.perf_counter()
        exchange.ingest(RECEIVING, [event])
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    return Figure("hub store: one event per save", "CaseSharing.ingest, 1 event per transaction", len(events),
                  seconds, percentile(latencies, 50), percentile(latencies, 99), rss_mb())


def ingest_batched(hub: CaseHub, events: Sequence[SharedEvent], batch: int) -> Figure:
    exchange = CaseSharing(hub)
    latencies: list[float] = []
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        t = time.perf_counter()
        exchange.ingest(RECEIVING, events[i:i + batch])
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    return Figure("hub store: batched ingest", f"CaseSharing.ingest, {batch} events per transaction", len(events),
                  seconds, percentile(latencies, 50), percentile(latencies, 99), rss_mb(),
                  extra={"batch": batch, "latency_is": "per transaction"})


def group_committed_receipts(hub: CaseHub, callers: int, seconds: float, max_batch: int, window: float) -> Figure:
    """``callers`` threads receiving cases as fast as they can through one GroupCommitter.

    Each receipt stores three events (the case and its two uniqueness claims); the figure counts events.
    """
    committer = GroupCommitter(hub, max_batch, window)
    commands = [c.parse(c.ReceiveCase, request_data(receive_request())) for _ in range(callers * 4)]
    latencies: list[list[float]] = [[] for _ in range(callers)]
    stop = threading.Event()

    def caller(i: int) -> None:
        n = 0
        while not stop.is_set():
            command = commands[(i + n * callers) % len(commands)].model_copy(update={"request_id": f"gc-{i}-{n}"})
            t = time.perf_counter()
            committer.receive(command)
            latencies[i].append(time.perf_counter() - t)
            n += 1

    threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(callers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    committer.close()
    flat = [x for per in latencies for x in per]
    return Figure("hub store: group-committed receive", f"{callers} callers, max {max_batch}, {window * 1000:g} ms",
                  3 * len(flat), elapsed, percentile(flat, 50), percentile(flat, 99), rss_mb(),
                  extra={"cases": len(flat), "events_per_case": 3, "latency_is": "per receive call"})

