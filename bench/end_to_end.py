"""End to end across two real site processes on PostgreSQL: cases received at site A over gRPC, durable
at A, relayed, durable at B, B's receipt stored back at A.

A case's latency runs from the bench sending ReceiveCase to A until A's relay position (stored in the
same transaction as B's receipt) passes the case's event: we poll A's tracking table for that.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any
from uuid import UUID

import grpc
from psycopg import sql

from adapters.launcher import SiteProcess, SiteSpec, link, make_certs
from adapters.settings import PostgresSettings
from bench.common import CpuMeter, Figure, connect, fresh_schema, percentile, rss_mb, schema_settings
from bench.workload import CLERK, HANDLING, RECEIVING, receive_request
from hub.domain.receipts import ledger_id
from tongban.v1 import case_service_pb2_grpc

CHANNEL = "grpc"


@dataclass
class TwoSites:
    a: SiteProcess
    b: SiteProcess
    a_schema: str
    b_schema: str
    token: str  # A's window clerk, signed in at A: every staff call carries it

    def pids(self) -> list[int]:
        return [p for p in (self.a.pid, self.b.pid) if p is not None]


@contextmanager
def two_sites(root: Path, channel: str = CHANNEL, nats_url: str = "", group_commit_max: int = 256,
              window_ms: float = 5.0, workers: int = 64,
              before_start: Callable[[PostgresSettings, PostgresSettings], None] | None = None,
              schemas: tuple[str, str] | None = None) -> Iterator[TwoSites]:
    """Sites A (410400, receives) and B (320500, handles) as real processes, each in a fresh schema
    (``before_start`` may fill the schemas first), or in the existing ``schemas``, kept afterwards."""
    certs = make_certs(root / "certs", RECEIVING, HANDLING)
    with ExitStack() as stack:
        used = ([stack.enter_context(fresh_schema(f"e2e_{s}")) for s in (RECEIVING, HANDLING)] if schemas is None
                else [schema_settings(name) for name in schemas])
        specs = [
            SiteSpec(site=site, name=site, data_dir=root / site, certs_dir=certs, nats_url=nats_url,
                     postgres=_pg(pg), store_options={"group_commit_max": group_commit_max,
                                                      "group_commit_window_ms": window_ms},
                     staff_workers=workers, log_level="warning", health_interval=2.0)
            for site, pg in zip((RECEIVING, HANDLING), used, strict=True)
        ]
        a_spec, b_spec = specs
        link(a_spec, b_spec, channel, channel)
        if before_start is not None:
            before_start(used[0], used[1])
        a, b = SiteProcess(a_spec, root / "run"), SiteProcess(b_spec, root / "run")
        stack.callback(b.stop)
        stack.callback(a.stop)
        b.start(timeout=60)
        a.start(timeout=60)
        a.add_staff(CLERK.staff_id, CLERK.name, CLERK.role, BENCH_PASSWORD)
        yield TwoSites(a, b, used[0].schema, used[1].schema, a.sign_in(CLERK.staff_id, BENCH_PASSWORD))


def _pg(pg: PostgresSettings) -> dict[str, str | int]:
    return {"host": pg.host, "port": pg.port, "dbname": pg.dbname, "user": pg.user, "schema": pg.schema}


BENCH_PASSWORD = "bench-password-1"
_LOG_HEAD = "SELECT max(notification_id) FROM {}.tongban_events"  # the newest position in a log

class ReceiptWatch:
    """Polls a position at A and remembers when it moved.

    Over gRPC: A's relay position for B, moved only when B's receipts are stored (in that transaction).
    Over NATS the relay moves on JetStream's acknowledgement and B's receipts come back through A's
    inbox, so the watch follows A's log instead, and a case counts as receipted when its delivery
    ledger's first event (B's first receipt for it) is in the log.
    """

    def __init__(self, schema: str, channel: str = CHANNEL, interval: float = 0.01) -> None:
        self.samples: list[tuple[float, int]] = []
        self.rss: dict[int, float] = {}
        self.pids: list[int] = []
        self.channel = channel
        if channel == "grpc":
            self._query = sql.SQL(
                "SELECT max(notification_id) FROM {}.tongban_tracking WHERE application_name = %s"
            ).format(sql.Identifier(schema))
            self._params: tuple[str, ...] = (f"relay:{HANDLING}:{channel}",)
        else:
            self._query = sql.SQL(_LOG_HEAD).format(sql.Identifier(schema))
            self._params = ()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receipt-watch", daemon=True)

    def __enter__(self) -> ReceiptWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def position(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def _run(self) -> None:
        with connect() as conn:
            last_rss = 0.0
            while not self._stop.wait(self._interval):
                row = conn.execute(self._query, self._params).fetchone()
                self.samples.append((time.perf_counter(), int(row[0] or 0) if row else 0))
                if time.perf_counter() - last_rss > 1.0:
                    last_rss = time.perf_counter()
                    for pid in self.pids:
                        self.rss[pid] = max(self.rss.get(pid, 0.0), rss_mb(pid))

    def receipted_at(self, notification_id: int) -> float | None:
        """When the position first reached ``notification_id``."""
        first = bisect.bisect_left(self.samples, notification_id, key=itemgetter(1))
        return self.samples[first][0] if first < len(self.samples) else None


@dataclass
class Load:
    """What one load phase sent: the time each case was sent, by case id, and the calls that failed."""

    sent: dict[str, float] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0


async def _send(stub: Any, load: Load, token: str) -> None:
    t = time.perf_counter()
    try:
        response = await stub.ReceiveCase(receive_request(), timeout=30,
                                          metadata=(("authorization", f"Bearer {token}"),))
    except grpc.RpcError:
        load.errors += 1
        return
    load.sent[response.case.case_id] = t
    load.accepted[response.case.case_id] = time.perf_counter() - t


async def closed_loop(address: str, token: str, callers: int, seconds: float) -> Load:
    """``callers`` concurrent clients, each sending its next case as soon as the last is accepted."""
    load = Load()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = case_service_pb2_grpc.CaseServiceStub(channel)
        load.started = time.perf_counter()
        until = load.started + seconds

        async def client() -> None:
            while time.perf_counter() < until:
                await _send(stub, load, token)

        await asyncio.gather(*(client() for _ in range(callers)))
        load.ended = time.perf_counter()
    return load


async def open_loop(address: str, token: str, rate: float, seconds: float, max_outstanding: int = 2000) -> Load:
    """Cases sent at a fixed ``rate`` whatever the answers (so a slow hub shows as latency, not fewer calls)."""
    load = Load()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = case_service_pb2_grpc.CaseServiceStub(channel)
        gate = asyncio.Semaphore(max_outstanding)
        tasks: set[asyncio.Task[None]] = set()

        async def one() -> None:
            try:
                await _send(stub, load, token)
            finally:
                gate.release()

        load.started = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < load.started + seconds:
            due = load.started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            await gate.acquire()
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
        load.ended = time.perf_counter()
    return load


def log_head(schema: str) -> int:
    """The newest position in a site's log."""
    query = sql.SQL(_LOG_HEAD).format(sql.Identifier(schema))
    with connect() as conn:
        row = conn.execute(query).fetchone()
    return int(row[0] or 0) if row else 0


def notification_ids(schema: str, case_ids: set[str]) -> dict[str, int]:
    """Each case's CaseReceived position in A's log."""
    query = sql.SQL(
        "SELECT originator_id::text, notification_id FROM {}.tongban_events "
        "WHERE originator_id = ANY(%s) AND originator_version = 1"
    ).format(sql.Identifier(schema))
    with connect() as conn:
        return {str(i): int(n) for i, n in conn.execute(query, ([UUID(i) for i in case_ids],)).fetchall()}


def ledger_positions(schema: str, case_ids: set[str]) -> dict[str, int]:
    """Where each case's delivery ledger for B (B's first receipt, stored at A) entered A's log."""
    by_ledger = {ledger_id(UUID(case_id), HANDLING): case_id for case_id in case_ids}
    query = sql.SQL(
        "SELECT originator_id, min(notification_id) FROM {}.tongban_events "
        "WHERE originator_id = ANY(%s) GROUP BY originator_id"
    ).format(sql.Identifier(schema))
    with connect() as conn:
        rows = conn.execute(query, (list(by_ledger),)).fetchall()
    return {by_ledger[UUID(str(ledger))]: int(n) for ledger, n in rows}


def table_rows(sites: TwoSites) -> dict[str, dict[str, int]]:
    """Rows in each table of each site's schema, to tell what one case costs PostgreSQL in writes."""
    found: dict[str, dict[str, int]] = {}
    with connect() as conn:
        for site, schema in (("A", sites.a_schema), ("B", sites.b_schema)):
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (schema,))]
            count = sql.SQL("SELECT count(*) FROM {}.{}")
            found[site] = {t: conn.execute(count.format(sql.Identifier(schema), sql.Identifier(t))).fetchone()[0]
                           for t in tables}
    return found


def rows_per_case(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]],
                  cases: int) -> dict[str, dict[str, float]]:
    """Rows each site's tables gained per case between two ``table_rows`` counts (tables gaining a
    negligible few, such as per-day totals, left out)."""
    gained = {site: {t: round((n - before[site].get(t, 0)) / max(cases, 1), 2) for t, n in tables.items()}
              for site, tables in after.items()}
    return {site: {t: n for t, n in tables.items() if n >= 0.01} for site, tables in gained.items()}


def cpu_meter(sites: TwoSites) -> CpuMeter:
    return CpuMeter({"site A": sites.a.pid, "site B": sites.b.pid})


def measure(sites: TwoSites, watch: ReceiptWatch, load: Load, name: str, what: str, drain: float,
            cpu: CpuMeter | None = None) -> Figure:
    """Turn one phase's sends and the receipt positions into a figure (waiting up to ``drain`` for
    stragglers); with ``cpu`` (started with the phase), where each case's CPU went."""
    positions = (notification_ids(sites.a_schema, set(load.sent)) if watch.channel == "grpc"
                 else ledger_positions(sites.a_schema, set(load.sent)))
    if watch.channel != "grpc":  # ledgers appear as receipts arrive: wait for them first
        deadline = time.perf_counter() + drain
        while len(positions) < len(load.sent) and time.perf_counter() < deadline:
            time.sleep(0.1)
            positions = ledger_positions(sites.a_schema, set(load.sent))
    last = max(positions.values(), default=0)
    deadline = time.perf_counter() + drain
    while watch.position() < last and time.perf_counter() < deadline:
        time.sleep(0.05)
    cpu_ms = cpu.per(len(load.sent)) if cpu is not None else {}
    latencies, receipted_in_phase, finished = [], 0, load.started
    for case_id, sent in load.sent.items():
        at = watch.receipted_at(positions.get(case_id, 1 << 62))
        if at is None:
            continue
        latencies.append(at - sent)
        finished = max(finished, at)
        receipted_in_phase += at <= load.ended
    duration = load.ended - load.started
    return Figure(
        name, what, receipted_in_phase, duration, percentile(latencies, 50), percentile(latencies, 99),
        max((watch.rss.get(p, 0.0) for p in sites.pids()), default=0.0),
        extra={
            "sent": len(load.sent), "errors": load.errors, "receipted_total": len(latencies),
            "accepted_per_s": round(len(load.sent) / duration, 1) if duration else 0.0,
            "accept_p50_ms": percentile(list(load.accepted.values()), 50),
            "accept_p99_ms": percentile(list(load.accepted.values()), 99),
            "drain_s": round(max(finished - load.ended, 0.0), 2),
            "site_rss_mb": {"A": watch.rss.get(sites.a.pid or 0, 0.0), "B": watch.rss.get(sites.b.pid or 0, 0.0)},
            "latency_is": "ReceiveCase sent at A -> B's receipt stored at A", "channel": watch.channel,
            "cpu_ms_per_case": cpu_ms,
        },
    )
