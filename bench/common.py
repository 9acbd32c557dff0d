"""What every benchmark needs: fresh PostgreSQL schemas, latency percentiles, RSS, a table, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from adapters.settings import PostgresSettings

PG = PostgresSettings(
    host=os.environ.get("BENCH_PG_HOST", "127.0.0.1"), port=int(os.environ.get("BENCH_PG_PORT", "5432")),
    dbname=os.environ.get("BENCH_PG_DB", "postgres"), user=os.environ.get("BENCH_PG_USER", "postgres"),
)
RESULTS_DIR = Path("bench-results")


def run_bench(main: Any) -> None:
    """Run a bench's ``main`` as a command. SIGTERM (and SIGINT, which a shell ignores in background jobs)
    unwinds like Ctrl-C: the sites it started are stopped by their PIDs and its schemas dropped, instead
    of left running; it exits 130 without a trace."""
    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sys.exit(main())
    except KeyboardInterrupt as stopped:
        print(f"\nstopped ({stopped or 'interrupted'}): sites stopped, schemas dropped unless kept", file=sys.stderr)
        sys.exit(130)


def connect(autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(host=PG.host, port=PG.port, dbname=PG.dbname, user=PG.user, autocommit=autocommit)


def schema_settings(name: str) -> PostgresSettings:
    return PostgresSettings(host=PG.host, port=PG.port, dbname=PG.dbname, user=PG.user, schema=name)


def create_schema(label: str) -> PostgresSettings:
    """A new, empty schema, named after ``label``; the caller drops it (or keeps it on purpose)."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return schema_settings(name)


@contextmanager
def fresh_schema(label: str) -> Iterator[PostgresSettings]:
    """A new, empty schema for one measurement; dropped afterwards whatever happens."""
    settings = create_schema(label)
    name = settings.schema
    try:
        yield settings
    finally:
        with connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of latencies in seconds, returned in milliseconds."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (ourselves by default), from /proc."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU a process has used so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU used so far by every process named postgres on this machine (the server and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


class CpuMeter:
    """Where a phase's CPU went: named processes, PostgreSQL and this process, in ms per unit of work.

    On a 2-core machine shared by the sites, the database and the load, this is what says which one
    runs out first, whatever the wall-clock figures show."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        used = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return {**used, "postgres": postgres_cpu_seconds(), "bench client": cpu_seconds()}

    def per(self, units: int) -> dict[str, float]:
        now = self._read()
        return {name: round((now[name] - self._start[name]) * 1000 / max(units, 1), 3) for name in now}


@dataclass
class Figure:
    """One measured line: what ran, how fast, how long each unit took, and against which baseline."""

    name: str
    what: str
    events: int
    seconds: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_mb: float = 0.0
    baseline: str = ""
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return round(self.events / self.seconds, 1) if self.seconds > 0 else 0.0

    def against(self, baseline: Figure) -> Figure:
        self.baseline = baseline.name
        self.ratio = round(self.rate / baseline.rate, 3) if baseline.rate else None
        return self


def table(figures: Sequence[Figure]) -> str:
    head = f"{'measurement':<34} {'events/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'RSS MB':>8}  ratio to baseline"
    lines = [head, "-" * len(head)]
    for f in figures:
        ratio = f"{f.ratio:.2f}x {f.baseline}" if f.ratio is not None else ""
        lines.append(f"{f.name:<34} {f.rate:>10.1f} {f.p50_ms:>9.2f} {f.p99_ms:>9.2f} {f.rss_mb:>8.1f}  {ratio}")
    return "\n".join(lines)


def write_results(filename: str, figures: Sequence[Figure], verdicts: dict[str, Any], settings: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / filename
    payload = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": settings,
        "figures": [{**asdict(f), "events_per_s": f.rate} for f in figures],
        "bar": verdicts,
    }
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
