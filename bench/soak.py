"""`make soak DURATION=seconds`: two real sites holding many stored cases, under steady load, watched for RSS.

Each site's schema is first filled with ``--preload`` cases (default 1,000,000 each, stored in batches
through the hub's own ingest path), then both sites start and the bench sends cases to A at ``--rate``
per second (default: half of what a short calibration run sustained) for ``--seconds``, reporting per
``--window``: cases accepted and receipted per second, p50/p99 end-to-end latency and each site's RSS.
Before the load, the bench waits for A's relay to read through the preloaded log once. Preloading two
million cases takes about 17 minutes: ``--keep`` keeps the schemas (and prints them) and ``--schemas
A,B`` starts from them again. Writes bench-results/soak.json. A measurement, never a test: nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.settings import PostgresSettings, ReconcileSettings
from bench import end_to_end, store_path
from bench.common import Figure, create_schema, rss_mb, run_bench, table, write_results
from bench.workload import HANDLING, RECEIVING, receipts_of
from hub.application.case_sharing import CaseSharing

THIRD_SITE = "330100"  # the preloaded cases at A come from a third partner, so A's own relay skips them
RSS_BAR_MB = 300.0
FLAT_TOLERANCE = 0.10  # RSS "flat": the last window within 10% (or 20 MB) of the first after warm-up


def preload(pg: PostgresSettings, site: str, sender: str, cases: int, batch: int = 500) -> float:
    """Store ``cases`` partner cases at ``site``; returns the rate it managed."""
    hub = store_path.hub_on(pg, site)
    exchange = CaseSharing(hub)
    started = time.perf_counter()
    events = receipts_of(cases, sender, site)
    done = 0
    try:
        while chunk := list(itertools.islice(events, batch)):
            exchange.ingest(sender, chunk)
            done += len(chunk)
            if done % 100_000 < batch:
                print(f"  {site}: {done} of {cases} stored "
                      f"({done / max(time.perf_counter() - started, 1e-9):.0f} cases/s)", flush=True)
    finally:
        hub.close()
    return cases / max(time.perf_counter() - started, 1e-9)


def catch_up(watch: end_to_end.ReceiptWatch, head: int, timeout: float = 3600.0) -> None:
    """Wait for A's relay to pass the log as it stood at start (a preloaded log is read once, all of
    it, before new cases flow); progress every 30 s."""
    started = last = time.perf_counter()
    while watch.position() < head and time.perf_counter() - started < timeout:
        time.sleep(1.0)
        if time.perf_counter() - last >= 30:
            last = time.perf_counter()
            print(f"A's relay at position {watch.position()} of {head} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"A's relay caught up with {head} log entries in {time.perf_counter() - started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=0.0, help="cases/s sent to A (0: half a calibrated maximum)")
    parser.add_argument("--callers", type=int, default=256)
    parser.add_argument("--warm-up", type=float, default=30.0, help="seconds of load before calibrating")
    parser.add_argument("--keep", action="store_true", help="keep the preloaded schemas (names printed)")
    parser.add_argument("--schemas", default="", help="A,B: schemas a --keep run preloaded; no preload")
    args = parser.parse_args(argv)

    def fill(a: PostgresSettings, b: PostgresSettings) -> None:
        print(f"preloading {args.preload} cases into each site ...", flush=True)
        rates = [preload(a, RECEIVING, THIRD_SITE, args.preload), preload(b, HANDLING, RECEIVING, args.preload)]
        print("preloaded at " + ", ".join(f"{r:.0f} cases/s" for r in rates), flush=True)

    schemas: tuple[str, str] | None = None
    if args.schemas:
        a_name, b_name = args.schemas.split(",")
        schemas = (a_name.strip(), b_name.strip())
    elif args.keep:
        kept = create_schema("soak_a"), create_schema("soak_b")
        fill(*kept)
        schemas = (kept[0].schema, kept[1].schema)
        print(f"kept: --schemas {schemas[0]},{schemas[1]}", flush=True)
    windows: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tongban-soak-") as tmp, \
            end_to_end.two_sites(Path(tmp), before_start=None if schemas else fill, schemas=schemas) as sites, \
            end_to_end.ReceiptWatch(sites.a_schema) as watch:
        watch.pids = sites.pids()
        catch_up(watch, end_to_end.log_head(sites.a_schema))
        rate = args.rate
        if rate <= 0:  # after a warm-up: a site that just started is still chaining its preloaded events
            asyncio.run(end_to_end.closed_loop(sites.a.staff_address, sites.token, args.callers, args.warm_up))
            load = asyncio.run(end_to_end.closed_loop(sites.a.staff_address, sites.token, args.callers, 15.0))
            calibrated = end_to_end.measure(sites, watch, load, "calibration", "closed loop 15 s", 30.0)
            rate = max(calibrated.rate / 2, 1.0)
            print(f"calibration: {calibrated.rate:.0f} cases/s receipted end to end; soaking at {rate:.0f}/s",
                  flush=True)
        started = time.perf_counter()
        n = 0
        while time.perf_counter() - started < args.seconds:
            n += 1
            span = min(args.window, args.seconds - (time.perf_counter() - started))
            load = asyncio.run(end_to_end.open_loop(sites.a.staff_address, sites.token, rate, span))
            figure = end_to_end.measure(sites, watch, load, f"window {n}", f"open loop {rate:.0f}/s", 5.0)
            figure.extra["site_rss_now_mb"] = {"A": rss_mb(sites.a.pid), "B": rss_mb(sites.b.pid)}
            figure.rss_mb = max(figure.extra["site_rss_now_mb"].values())
            windows.append(figure)
            print(f"window {n}: {figure.rate:.0f} receipted/s, accepted {figure.extra['accepted_per_s']}/s, "
                  f"p50 {figure.p50_ms} ms, p99 {figure.p99_ms} ms, RSS {figure.extra['site_rss_now_mb']}", flush=True)
    verdicts = _verdicts(windows, args.preload, args.window)
    print()
    print(table(windows))
    for bar, verdict in verdicts.items():
        print(f"{'MET    ' if verdict['met'] else 'NOT MET'}  {bar}: {verdict['measured']}")
    path = write_results("soak.json", windows, verdicts, {**vars(args), "rate": rate})
    print(f"\nwrote {path}")
    return 0


def _verdicts(windows: list[Figure], preload: int, window_seconds: float) -> dict[str, Any]:
    """RSS against the bar, and flat two ways: the last window against the first after warm-up, and the
    last reconcile cycle's peak against the second's. The first scheduled run raises the high-water mark
    once (it can straddle the first two cycles); a leak raises it every cycle."""
    if not windows:
        return {}
    per_site = [w.rss_mb for w in windows]  # each window's larger site, set when it was measured
    settled = per_site[1:] or per_site
    growth = settled[-1] - settled[0]
    per_cycle = max(int(ReconcileSettings().interval // window_seconds), 1)
    peaks = [max(per_site[i:i + per_cycle]) for i in range(0, len(per_site), per_cycle)]
    tolerance = max(FLAT_TOLERANCE * settled[0], 20.0)
    return {
        f"RSS <= {RSS_BAR_MB:g} MB per site with {preload} cases stored": {
            "met": max(per_site) <= RSS_BAR_MB, "measured": f"max {max(per_site)} MB"},
        "RSS flat over the soak": {
            "met": growth <= tolerance,
            "measured": f"{settled[0]} MB -> {settled[-1]} MB over {len(windows)} windows"},
        "RSS flat across reconcile cycles (peak per cycle, from the second)": {
            "met": len(peaks) > 2 and peaks[-1] - peaks[1] <= tolerance,
            "measured": " -> ".join(f"{p:g}" for p in peaks) + f" MB ({per_cycle} windows per cycle)"},
    }


if __name__ == "__main__":
    run_bench(main)
