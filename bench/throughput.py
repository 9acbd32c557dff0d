"""`make bench`: the hub's throughput against raw baselines measured in the same run.

(a) raw psycopg batched inserts of rows shaped like stored events, and one row per commit;
(b) raw JetStream publish_async, and raw grpc.aio unary calls between two processes;
(c) the site store path (one event per save, batched ingest, group-committed receipts);
(d) end to end over two real site processes: received at A over gRPC -> durable at A -> relayed ->
    durable at B -> receipt stored at A; at full load (closed loop), then open loop at half the bar's
    rate (the latency bar) and at half of the rate measured at full load; then full load again with
    the sites relaying over NATS JetStream. Each end-to-end line also says where a case's CPU went.

Prints a table, writes bench-results/bench.json and refreshes the generated block of docs/benchmarks.md
(bench.report). Everything it starts (nats-server, sites) it stops by PID; every schema it creates it
drops. Sizes come from the environment (BENCH_*), see SETTINGS.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from pathlib import Path
from typing import Any

from adapters.exchange.wire import event_message
from adapters.nats.server import NatsServer
from bench import baselines, end_to_end, report, store_path
from bench.common import Figure, fresh_schema, run_bench, table, write_results
from bench.workload import HANDLING, RECEIVING, partner_receipts, receive_request

E2E_BAR = 5000.0  # events/s sustained end to end
LATENCY_BAR_MS = 250.0  # p99 at half the bar's load


def _env(name: str, default: float) -> float:
    return float(os.environ.get(f"BENCH_{name}", default))


SETTINGS: dict[str, Any] = {
    "raw_rows": int(_env("RAW_ROWS", 50_000)),
    "batch": int(_env("BATCH", 500)),
    "jetstream_messages": int(_env("JS_MESSAGES", 50_000)),
    "jetstream_window": int(_env("JS_WINDOW", 4000)),
    "one_per_save_events": int(_env("ONE_PER_SAVE", 1000)),
    "store_events": int(_env("STORE_EVENTS", 20_000)),
    "group_callers": int(_env("GROUP_CALLERS", 64)),
    "group_seconds": _env("GROUP_SECONDS", 10),
    "group_commit_max": int(_env("GROUP_MAX", 256)),
    "group_commit_window_ms": _env("GROUP_WINDOW_MS", 5),
    "e2e_callers": int(_env("E2E_CALLERS", 256)),
    "grpc_seconds": _env("GRPC_SECONDS", 10),
    "e2e_seconds": _env("E2E_SECONDS", 60),
    "half_load_seconds": _env("HALF_SECONDS", 30),
    "nats_seconds": _env("NATS_SECONDS", 30),
    "drain_seconds": _env("DRAIN_SECONDS", 60),
}


def main() -> int:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tongban-bench-") as tmp:
        root = Path(tmp)
        events = partner_receipts(SETTINGS["one_per_save_events"] + SETTINGS["store_events"])
        # The workload is the bench's input, not the hub's memory: without this every full collection walks
        # the 21k pre-built events (about a million objects), which a site never holds.
        gc.freeze()
        nats = NatsServer(root / "nats")
        nats.start()
        try:
            figures += _store_and_raw(events)
            payload = event_message(events[0]).SerializeToString()
            print("(b) raw JetStream publish_async ...", flush=True)
            figures.append(baselines.raw_jetstream(nats.url, payload, SETTINGS["jetstream_messages"],
                                                   SETTINGS["jetstream_window"]))
            print("(b) raw grpc.aio unary ...", flush=True)
            figures.append(baselines.raw_grpc_unary(receive_request().SerializeToString(), SETTINGS["e2e_callers"],
                                                    SETTINGS["grpc_seconds"]))
            figures += _end_to_end(root)
            figures.append(_end_to_end_over_nats(root, nats.url))
        finally:
            nats.stop()
    by_name = {f.name: f for f in figures}
    raw = by_name["raw psycopg batched insert"]
    for name in ("hub store: one event per save", "hub store: batched ingest", "hub store: group-committed receive"):
        by_name[name].against(raw)
    full, half = by_name["end to end: full load"], by_name["end to end: half of the bar"]
    for figure in (full, half, by_name["end to end: half of measured"], by_name["end to end over NATS: full"]):
        figure.against(by_name["raw grpc.aio unary"])  # A takes cases in by unary calls: the first ceiling
    rows, ceiling = _write_ceiling(by_name)
    verdicts = _verdicts(by_name, ceiling)
    print()
    print(table(figures))
    for figure in (full, by_name["end to end: half of measured"], by_name["end to end over NATS: full"]):
        cpu = figure.extra.get("cpu_ms_per_case") or {}
        if cpu:
            spent = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
            print(f"CPU ms per case, {figure.name}: {spent}; total {sum(cpu.values()):.2f} "
                  f"(2 cores: at most {2000 / max(sum(cpu.values()), 1e-9):.0f} cases/s)")
    if ceiling:
        print(f"PostgreSQL rows written per case: {rows}; raw batched insert {raw.rate:.0f} rows/s: "
              f"at most {ceiling:.0f} cases/s on this machine even if the hubs' own work cost nothing")
    print()
    for bar, verdict in verdicts.items():
        print(f"{'MET    ' if verdict['met'] else 'NOT MET'}  {bar}: {verdict['measured']}")
    path = write_results("bench.json", figures, verdicts, SETTINGS)
    print(f"\nwrote {path}")
    return report.main([str(path)])  # docs/benchmarks.md's generated block, from the file just written


def _store_and_raw(events: list[Any]) -> list[Figure]:
    one, rest = events[: SETTINGS["one_per_save_events"]], events[SETTINGS["one_per_save_events"]:]
    with fresh_schema("store") as pg, fresh_schema("receive") as pg_receive, fresh_schema("raw") as pg_raw:
        hub = store_path.hub_on(pg, HANDLING)
        try:
            shape = store_path.stored_shape(hub, events[0])
            print("(a) raw psycopg batched inserts ...", flush=True)
            raw = baselines.raw_batched_inserts(pg_raw, shape.topic, shape.state, SETTINGS["raw_rows"],
                                                SETTINGS["batch"])
            single = baselines.raw_single_inserts(pg_raw, shape.topic, shape.state, 3.0)
            print("(c) hub store path ...", flush=True)
            per_save = store_path.ingest_one_per_save(hub, one)
            batched = store_path.ingest_batched(hub, rest, SETTINGS["batch"])
        finally:
            hub.close()
        receiving = store_path.hub_on(pg_receive, RECEIVING)
        try:
            grouped = store_path.group_committed_receipts(
                receiving, SETTINGS["group_callers"], SETTINGS["group_seconds"], SETTINGS["group_commit_max"],
                SETTINGS["group_commit_window_ms"] / 1000)
        finally:
            receiving.close()
    return [raw, single, per_save, batched, grouped]


def _end_to_end(root: Path) -> list[Figure]:
    print("(d) end to end: starting two sites ...", flush=True)
    with end_to_end.two_sites(root / "e2e", group_commit_max=SETTINGS["group_commit_max"],
                              window_ms=SETTINGS["group_commit_window_ms"]) as sites, \
            end_to_end.ReceiptWatch(sites.a_schema) as watch:
        watch.pids = sites.pids()
        seconds = SETTINGS["e2e_seconds"]
        print(f"(d) full load: {SETTINGS['e2e_callers']} concurrent callers for {seconds:g} s ...", flush=True)
        cpu, rows = end_to_end.cpu_meter(sites), end_to_end.table_rows(sites)
        load = asyncio.run(end_to_end.closed_loop(sites.a.staff_address, sites.token, SETTINGS["e2e_callers"], seconds))
        full = end_to_end.measure(sites, watch, load, "end to end: full load",
                                  f"{SETTINGS['e2e_callers']} callers, {seconds:g} s", SETTINGS["drain_seconds"], cpu)
        full.extra["rows_per_case"] = end_to_end.rows_per_case(rows, end_to_end.table_rows(sites), len(load.sent))
        rate = max(round(full.rate / 2), 1)  # the latency this hub gives at half of what it sustained
        print(f"(d) half of the measured rate: {rate:g} cases/s for {SETTINGS['half_load_seconds']:g} s ...",
              flush=True)
        cpu = end_to_end.cpu_meter(sites)
        load = asyncio.run(end_to_end.open_loop(sites.a.staff_address, sites.token, rate,
                                                SETTINGS["half_load_seconds"]))
        measured_half = end_to_end.measure(sites, watch, load, "end to end: half of measured",
                                           f"open loop {rate:g}/s, {SETTINGS['half_load_seconds']:g} s",
                                           SETTINGS["drain_seconds"], cpu)
        rate = E2E_BAR / 2  # last: if the hub cannot take it, the backlog spoils no later phase
        print(f"(d) half of the bar: {rate:g} cases/s for {SETTINGS['half_load_seconds']:g} s ...", flush=True)
        load = asyncio.run(end_to_end.open_loop(sites.a.staff_address, sites.token, rate,
                                                SETTINGS["half_load_seconds"]))
        half = end_to_end.measure(sites, watch, load, "end to end: half of the bar",
                                  f"open loop {rate:g}/s, {SETTINGS['half_load_seconds']:g} s",
                                  SETTINGS["drain_seconds"])
    return [full, measured_half, half]


def _end_to_end_over_nats(root: Path, nats_url: str) -> Figure:
    """The same full load with both sites relaying over JetStream (publish_async) instead of gRPC."""
    print("(d) end to end over NATS: starting two sites ...", flush=True)
    with end_to_end.two_sites(root / "e2e-nats", channel="nats", nats_url=nats_url,
                              group_commit_max=SETTINGS["group_commit_max"],
                              window_ms=SETTINGS["group_commit_window_ms"]) as sites, \
            end_to_end.ReceiptWatch(sites.a_schema, channel="nats") as watch:
        watch.pids = sites.pids()
        seconds = SETTINGS["nats_seconds"]
        print(f"(d) over NATS: {SETTINGS['e2e_callers']} concurrent callers for {seconds:g} s ...", flush=True)
        cpu = end_to_end.cpu_meter(sites)
        load = asyncio.run(end_to_end.closed_loop(sites.a.staff_address, sites.token, SETTINGS["e2e_callers"], seconds))
        return end_to_end.measure(sites, watch, load, "end to end over NATS: full",
                                  f"{SETTINGS['e2e_callers']} callers, {seconds:g} s", SETTINGS["drain_seconds"], cpu)


def _write_ceiling(by: dict[str, Figure]) -> tuple[str, float]:
    """Rows PostgreSQL stores per case end to end (each site's log, audit chain links, digests, ledgers),
    and the most cases/s the raw batched-insert rate of this machine allows for that many rows."""
    rows = by["end to end: full load"].extra.get("rows_per_case") or {}
    total = sum(sum(tables.values()) for tables in rows.values())
    if not total:
        return "", 0.0
    detail = "; ".join(f"{site} " + ", ".join(f"{t} {n:g}" for t, n in tables.items()) for site, tables in rows.items())
    return f"{total:g} ({detail})", by["raw psycopg batched insert"].rate / total


def _verdicts(by: dict[str, Figure], write_ceiling: float) -> dict[str, Any]:
    raw, per_save = by["raw psycopg batched insert"], by["hub store: one event per save"]
    store = max((by["hub store: batched ingest"], by["hub store: group-committed receive"]), key=lambda f: f.rate)
    full, half = by["end to end: full load"], by["end to end: half of the bar"]
    return {
        "store path >= 50% of raw batched insert": {
            "met": store.rate >= 0.5 * raw.rate,
            "measured": f"{store.name} {store.rate:.0f}/s = {store.rate / raw.rate:.2f} of raw {raw.rate:.0f}/s"},
        "store path >= 10x one save per event": {
            "met": store.rate >= 10 * per_save.rate,
            "measured": f"{store.rate:.0f}/s = {store.rate / per_save.rate:.1f}x of {per_save.rate:.0f}/s"},
        f"end to end >= {E2E_BAR:g} events/s sustained": {
            "met": full.rate >= E2E_BAR and full.seconds >= 60,
            "measured": f"{full.rate:.0f}/s over {full.seconds:.0f} s "
                        f"(accepted at A {full.extra['accepted_per_s']}/s; PostgreSQL writes alone allow at most "
                        f"{write_ceiling:.0f} cases/s here)"},
        f"p99 <= {LATENCY_BAR_MS:g} ms at half load": {
            "met": half.p99_ms <= LATENCY_BAR_MS and half.extra["accepted_per_s"] >= 0.95 * E2E_BAR / 2,
            "measured": f"p99 {half.p99_ms} ms at {half.extra['accepted_per_s']}/s offered {E2E_BAR / 2:g}/s"},
        "RSS <= 300 MB per site": {
            "met": full.rss_mb <= 300 and half.rss_mb <= 300,
            "measured": f"max {max(full.rss_mb, half.rss_mb)} MB during the run (1M cases: see make soak)"},
    }


if __name__ == "__main__":
    run_bench(main)
