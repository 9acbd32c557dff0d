"""`make bench-reconcile`: what finding the differing cases costs with RBSR, against shipping every digest.

Two sites share n cases with d scattered differences (a third changed digests, a third only at A,
the rest only at B). A (410400) initiates, B (320500) answers. Each measurement starts B and A as
two fresh processes talking real gRPC on 127.0.0.1: the real ReconcileServicer, Responder and
SqliteDigestIndex at B, Participant and GrpcReconcilePeer at A, so the bytes are the protobuf bytes the
service sends and each side's peak RSS is its own. The naive method (B ships every key and digest
in frames of at most 4 MB, A merges them against its own rows in key order) runs the same way, in
the same run, over a raw-bytes gRPC method. The differences found must equal the injected ones
exactly, or the run fails (exit 1).

The stores' digest indexes are built directly, not by saving cases (1M real cases would take
hours): the protocol reads only the index, and it is written by the store's own rebuild path, so
its rows and the totals kept beside them are exactly what a reconcile run reads at a real site.
Wall time is the find phase only (snapshot, rounds, diff): no process start, channel set-up or
store generation. Bytes are message bytes (protobuf ByteSize, raw frame length for the naive
method), without HTTP/2 framing, the same way for both.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from contextlib import closing
from dataclasses import asdict, dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import grpc
from eventsourcing.sqlite import SQLiteDatastore

from adapters.exchange.grpc_client import GrpcPartner
from adapters.reconcile.grpc_client import GrpcReconcilePeer
from adapters.reconcile.grpc_service import ReconcileServicer
from adapters.store.digest_index import SqliteDigestIndex, SqliteDigestRecorder
from hub.application.case_hub import CaseHub
from hub.domain.digests import DAY_MS, DigestChange
from reconciliation.messages import Message, Params
from reconciliation.rbsr import Differences, DigestSet, Participant, check_params
from reconciliation.responder import Responder
from tongban.v1.reconcile_pb2_grpc import add_ReconcileServiceServicer_to_server

A, B = "410400", "320500"  # initiator, responder; A's index holds its rows for partner B, B's for A
T0 = 1_719_792_000_000  # 2024-07-01 UTC in ms; keys spread over the two years after it
SPAN_MS = 730 * DAY_MS
FULL = ((100_000, 1_000_000), (0, 100, 1_000, 10_000))
QUICK = ((10_000,), (0, 100))
NAIVE_SERVICE, NAIVE_PAGE = "tongban.bench.NaiveDigests", "Page"
ROW = 32  # naive: 16-byte key + 16-byte digest
PAGE_ROWS = 125_000  # 4,000,000-byte frames, under gRPC's default 4 MiB receive bound
Item = tuple[bytes, bytes]


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------- the two stores


@dataclass(frozen=True)
class Truth:
    only_a: frozenset[bytes]
    only_b: frozenset[bytes]
    changed: frozenset[bytes]


def _key(rng: random.Random) -> bytes:
    """UUIDv7-shaped: 48-bit Unix ms, version 7, variant 10, random bits (what the buckets and splits see)."""
    r = rng.randbytes(10)
    ms = T0 + rng.randrange(SPAN_MS)
    return ms.to_bytes(6, "big") + bytes((0x70 | r[0] & 0x0F, r[1], 0x80 | r[2] & 0x3F)) + r[3:]


def base_items(n: int, seed: int) -> list[Item]:
    """A's rows, sorted by key; fixed by the seed."""
    rng = random.Random(f"{seed}:{n}")
    items: dict[bytes, bytes] = {}
    while len(items) < n:
        items[_key(rng)] = rng.randbytes(16)
    return sorted(items.items())


def partner_items(base: list[Item], d: int, seed: int) -> tuple[Iterator[Item], Truth]:
    """B's rows (sorted, lazily): A's with d scattered differences injected."""
    rng = random.Random(f"{seed}:{len(base)}:{d}")
    third = d // 3
    picked = rng.sample(range(len(base)), 2 * third)
    changed = {base[i][0]: rng.randbytes(16) for i in picked[:third]}
    only_a = {base[i][0] for i in picked[third:]}
    only_b: dict[bytes, bytes] = {}
    while len(only_b) < d - 2 * third:
        key = _key(rng)
        i = bisect_left(base, key, key=itemgetter(0))
        if i == len(base) or base[i][0] != key:
            only_b[key] = rng.randbytes(16)
    kept = ((k, changed.get(k, v)) for k, v in base if k not in only_a)
    rows = heapq.merge(kept, sorted(only_b.items()))
    return rows, Truth(frozenset(only_a), frozenset(only_b), frozenset(changed))


def write_index(path: Path, partner: str, rows: Iterable[Item], total: int, label: str) -> None:
    """One site's digest index, written by the store's own rebuild path (``replace_digests``, what
    ``tongban reconcile rebuild-digests`` runs): the real tables, and every total the store keeps
    beside the rows summed by its own code, whatever they are."""
    datastore = SQLiteDatastore(str(path))
    try:
        recorder = SqliteDigestRecorder(datastore)
        recorder.create_table()
        recorder.replace_digests(_changes(partner, rows, total, label))
    finally:
        datastore.close()
    with closing(sqlite3.connect(path)) as db:  # as a site's store is between checkpoints: all in the file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _changes(partner: str, rows: Iterable[Item], total: int, label: str) -> Iterator[DigestChange]:
    step = max(total // 5, 1)
    for i, (key, digest) in enumerate(rows, 1):
        yield DigestChange(partner, UUID(bytes=key), None, digest)
        if i % step == 0 or i == total:
            say(f"    {label}: {i:,}/{total:,} rows")


# ---------------------------------------------------------------------- B: the responder process


@dataclass(frozen=True)
class _SiteOnly:
    """Stands in for B's CaseHub: Responder's find phase reads only ``hub.site``; describe (which reads
    cases) is never called here."""

    site: str


def serve(method: str, db: Path, emit: Callable[[dict[str, Any]], None]) -> None:
    """B's gRPC server on a free loopback port; reports its usage and stops when the orchestrator says so."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    if method == "rbsr":
        responder = Responder(cast(CaseHub, _SiteOnly(B)), SqliteDigestIndex(db), Params())
        add_ReconcileServiceServicer_to_server(ReconcileServicer(responder, lambda _context: A, frozenset({A})), server)
    else:
        server.add_generic_rpc_handlers((_naive_handler(db),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        emit({"port": port, **_usage()})
        sys.stdin.readline()  # "stop", or EOF if the orchestrator is gone
        emit(_usage())
    finally:
        server.stop(grace=None)


def _naive_handler(db: Path) -> grpc.GenericRpcHandler:
    """The naive method, B's side: every (key, digest) after the cursor key, PAGE_ROWS a frame, raw bytes."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, check_same_thread=False)
    lock = threading.Lock()

    def page(cursor: bytes, _context: grpc.ServicerContext) -> bytes:
        with lock:
            rows = conn.execute("SELECT case_key, digest FROM recon_digest WHERE partner = ? AND case_key > ? "
                                "ORDER BY case_key LIMIT ?", (A, cursor, PAGE_ROWS)).fetchall()
        return b"".join(k + v for k, v in rows)

    # No (de)serializers: requests and responses are the raw bytes themselves.
    return grpc.method_handlers_generic_handler(NAIVE_SERVICE, {NAIVE_PAGE: grpc.unary_unary_rpc_method_handler(page)})


# ---------------------------------------------------------------------- A: the initiator process


def find_rbsr(db: Path, address: str) -> dict[str, Any]:
    """The find phase of Reconciler._find (same loop, same handshake), with each round's frames recorded."""
    exchange = GrpcPartner(A, B, address, None, timeout=60.0)
    try:
        grpc.channel_ready_future(exchange.channel).result(timeout=30)
        peer = GrpcReconcilePeer(exchange, timeout=120.0)
        ours, frames, session = Params(), [], ""
        started = time.perf_counter()
        with SqliteDigestIndex(db).snapshot(B) as snapshot:
            side = Participant(DigestSet(snapshot), ours, initiator=True)
            side.start()
            while (message := side.next_message()) is not None:
                sent, received = peer.bytes_sent, peer.bytes_received
                session, agreed, reply = peer.reconcile(session, None if frames else ours, message)
                if not frames:
                    side.params = check_params(ours, agreed)
                frames.append({"sent": peer.bytes_sent - sent, "received": peer.bytes_received - received,
                               "ranges_sent": _modes(message), "ranges_received": _modes(reply)})
                side.receive_reply(message, reply)
        seconds = time.perf_counter() - started
    finally:
        exchange.close()
    return {"rounds": len(frames), "sent": peer.bytes_sent, "received": peer.bytes_received,
            "seconds": seconds, "frames": frames, "found": _found(side.differences)}


def _modes(message: Message) -> dict[str, int]:
    return dict(Counter(r.mode.name.lower() for r in message.ranges))


def find_naive(db: Path, address: str) -> dict[str, Any]:
    """The naive method, A's side: page through all of B's rows and merge them with ours in key order."""
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=30)
        page = channel.unary_unary(f"/{NAIVE_SERVICE}/{NAIVE_PAGE}")
        wire = {"rounds": 0, "sent": 0, "received": 0}

        def theirs() -> Iterator[Item]:
            cursor = b""
            while True:
                frame = page(cursor, timeout=120)
                wire["rounds"], wire["sent"], wire["received"] = (
                    wire["rounds"] + 1, wire["sent"] + len(cursor), wire["received"] + len(frame))
                yield from ((frame[i:i + 16], frame[i + 16:i + ROW]) for i in range(0, len(frame), ROW))
                if len(frame) < PAGE_ROWS * ROW:
                    return
                cursor = frame[-ROW:-16]

        started = time.perf_counter()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT case_key, digest FROM recon_digest WHERE partner = ? ORDER BY case_key", (B,))
            found = merge_diff(iter(rows), theirs())  # sqlite3 gives BLOBs as bytes already
        finally:
            conn.close()
        seconds = time.perf_counter() - started
    finally:
        channel.close()
    return {**wire, "seconds": seconds, "found": _found(found)}


def merge_diff(ours: Iterator[Item], theirs: Iterator[Item]) -> Differences:
    """Two key-ordered streams compared in one pass, in memory bounded by a frame."""
    out = Differences()
    a, b = next(ours, None), next(theirs, None)
    while a is not None or b is not None:
        if a is not None and b is not None and a[0] == b[0]:
            if a[1] != b[1]:
                out.differ.add(a[0])
            a, b = next(ours, None), next(theirs, None)
        elif a is not None and (b is None or a[0] < b[0]):
            out.only_ours.add(a[0])
            a = next(ours, None)
        elif b is not None:
            out.only_theirs.add(b[0])
            b = next(theirs, None)
    return out


def _found(d: Differences) -> dict[str, list[str]]:
    return {name: sorted(k.hex() for k in keys)
            for name, keys in (("only_a", d.only_ours), ("only_b", d.only_theirs), ("changed", d.differ))}


def _usage() -> dict[str, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return {"rss_mb": _peak_rss_kib(u.ru_maxrss) / 1024, "cpu_s": u.ru_utime + u.ru_stime}


def _peak_rss_kib(ru_maxrss: int) -> int:
    """This process image's peak RSS. Linux carries ru_maxrss across fork and exec, so a child would
    report the orchestrator's peak (it holds the generated rows); VmHWM starts afresh at exec."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return ru_maxrss  # not Linux: ru_maxrss (KiB on most systems, bytes on macOS)
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), ru_maxrss)


# ---------------------------------------------------------------------- the orchestrator


def measure(method: str, n: int, d: int, a_db: Path, b_db: Path, truth: Truth) -> dict[str, Any]:
    """One find in two fresh processes, so each side's peak RSS is its own. The load average goes with
    the row: wall times on a busy machine say little."""
    load = os.getloadavg()[0]
    responder = _spawn("--role", "responder", "--method", method, "--db", str(b_db))
    initiator = None
    try:
        ready = _read(responder)
        initiator = _spawn("--role", "initiator", "--method", method, "--db", str(a_db),
                           "--address", f"127.0.0.1:{ready['port']}")
        result, initiator_usage = _read(initiator), _read(initiator)
        assert responder.stdin is not None
        responder.stdin.write("stop\n")
        responder.stdin.flush()
        stopped = _read(responder)
    finally:
        for proc in (initiator, responder):
            if proc is not None:
                _stop(proc)
    expected = {name: sorted(k.hex() for k in getattr(truth, name)) for name in ("only_a", "only_b", "changed")}
    correct = result.pop("found") == expected
    if not correct:
        say(f"!!! WRONG: {method} at n={n:,} d={d:,} did not find exactly the injected differences")
    return {"n": n, "d": d, "method": method, **result, "bytes_total": result["sent"] + result["received"],
            "rss_initiator_mb": initiator_usage["rss_mb"], "rss_responder_mb": stopped["rss_mb"],
            "rss_responder_idle_mb": ready["rss_mb"], "cpu_responder_s": stopped["cpu_s"] - ready["cpu_s"],
            "load_1m": load, "correct": correct}


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.reconcile", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _read(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench process {proc.pid} ended early (exit {proc.wait()}); see its stderr above")
    return cast(dict[str, Any], json.loads(line))


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def run(sizes: Iterable[int], diffs: Iterable[int], seed: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="tongban-bench-"))
    say(_header())
    try:
        for n in sizes:
            folder = work / f"n{n}"
            folder.mkdir()
            say(f"  n={n:,}: generating A's digest index")
            base = base_items(n, seed)
            a_db = folder / "a.sqlite"
            write_index(a_db, B, base, n, f"A n={n:,}")
            for d in diffs:
                b_rows, truth = partner_items(base, d, seed)
                b_db = folder / f"b{d}.sqlite"
                write_index(b_db, A, b_rows, n - len(truth.only_a) + len(truth.only_b), f"B n={n:,} d={d:,}")
                for method in ("rbsr", "naive"):
                    rows.append(measure(method, n, d, a_db, b_db, truth))
                    say(_line(rows[-1]))
                for leftover in folder.glob(f"b{d}.sqlite*"):
                    leftover.unlink()
            del base
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _header() -> str:
    return (f"{'n':>9} {'d':>7} {'method':<6} {'rounds':>6} {'bytes →':>12} {'bytes ←':>12} {'wall s':>8} "
            f"{'RSS A MB':>9} {'RSS B MB':>9}  found==truth")


def _line(r: dict[str, Any]) -> str:
    return (f"{r['n']:>9,} {r['d']:>7,} {r['method']:<6} {r['rounds']:>6} {r['sent']:>12,} {r['received']:>12,} "
            f"{r['seconds']:>8.3f} {r['rss_initiator_mb']:>9.1f} {r['rss_responder_mb']:>9.1f}  "
            f"{'yes' if r['correct'] else 'NO'}")


def bars(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's bars, on the RBSR rows measured (KB = 1000 bytes, both directions together)."""
    out = []
    for r in (r for r in rows if r["method"] == "rbsr"):
        at = f"n={r['n']:,} d={r['d']:,}"
        if r["n"] == 1_000_000 and r["d"] == 100:
            out += [{"bar": f"{at}: ≤ 4 round trips", "value": r["rounds"], "met": r["rounds"] <= 4},
                    {"bar": f"{at}: ≤ 200 KB", "value": r["bytes_total"], "met": r["bytes_total"] <= 200_000},
                    {"bar": f"{at}: ≤ 5 s", "value": round(r["seconds"], 3), "met": r["seconds"] <= 5.0}]
        if r["d"] == 0:
            out.append({"bar": f"{at}: 1 round trip and < 1 KB", "value": [r["rounds"], r["bytes_total"]],
                        "met": r["rounds"] == 1 and r["bytes_total"] < 1000})
    return out


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    naive = {(r["n"], r["d"]): r for r in rows if r["method"] == "naive"}
    return [{"n": r["n"], "d": r["d"], "bytes": r["bytes_total"] / naive[r["n"], r["d"]]["bytes_total"],
             "seconds": r["seconds"] / naive[r["n"], r["d"]]["seconds"]}
            for r in rows if r["method"] == "rbsr" and (r["n"], r["d"]) in naive]


def report(rows: list[dict[str, Any]], seed: int, out: Path) -> None:
    verdicts = bars(rows)
    say("\nResults (bytes are message bytes each way; wall time is the find phase only)")
    say(_header())
    for r in rows:
        say(_line(r))
    say("\nRBSR ÷ naive:")
    for q in ratios(rows):
        say(f"  n={q['n']:>9,} d={q['d']:>6,}: bytes {q['bytes']:.2e}   time {q['seconds']:.3f}")
    say("\nBars:")
    for v in verdicts or [{"bar": "(none of the bars' cases measured in this run)", "value": "", "met": True}]:
        say(f"  {'met ' if v['met'] else 'MISS'}  {v['bar']}  ({v['value']})")
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
               "sqlite": sqlite3.sqlite_version, "grpc": grpc.__version__}
    out.write_text(json.dumps({
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine, "code": _code(), "seed": seed,
        "params": asdict(Params()), "naive_frame_bytes": PAGE_ROWS * ROW, "note": __doc__,
        "rows": rows, "ratios": ratios(rows), "bars": verdicts,
    }, indent=2, ensure_ascii=False) + "\n")
    say(f"\nwritten: {out}")


def _code() -> dict[str, Any]:
    """The commit measured, and the tracked files changed on top of it (results are of the working tree)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD").strip(),
            "changed": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]}


# ---------------------------------------------------------------------- entry point


def _as_child(work: Callable[[Callable[[dict[str, Any]], None]], None]) -> None:
    """Run a role with fd 1 kept for results alone: anything else printed (logs, warnings) goes to stderr."""
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def emit(obj: dict[str, Any]) -> None:
        results.write(json.dumps(obj) + "\n")
        results.flush()

    work(emit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 10k, d = 0 and 100 only (a smoke run)")
    parser.add_argument("--n", type=int, action="append", help="case counts (repeatable; default the full matrix)")
    parser.add_argument("--d", type=int, action="append", help="differences (repeatable)")
    parser.add_argument("--seed", type=int, default=20240701)
    parser.add_argument("--out", type=Path, help="default bench-results/reconcile.json (reconcile-quick.json)")
    for internal in ("--role", "--method", "--db", "--address"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "responder":
        _as_child(lambda emit: serve(args.method, Path(args.db), emit))
        return 0
    if args.role == "initiator":
        find = find_rbsr if args.method == "rbsr" else find_naive

        def initiate(emit: Callable[[dict[str, Any]], None]) -> None:
            emit(find(Path(args.db), args.address))
            emit(_usage())  # after the find: the peak RSS includes it

        _as_child(initiate)
        return 0
    sizes, diffs = QUICK if args.quick else FULL
    rows = run(args.n or sizes, args.d or diffs, args.seed)
    out = args.out or Path("bench-results", "reconcile-quick.json" if args.quick else "reconcile.json")
    report(rows, args.seed, out)
    if not all(r["correct"] for r in rows):
        say("FAILED: some runs did not find exactly the injected differences (rows marked NO)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
