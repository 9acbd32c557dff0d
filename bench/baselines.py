"""Raw baselines, measured in the same run as the hub: PostgreSQL, JetStream and gRPC with no hub in between."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig
from psycopg import sql

from adapters.free_port import free_port
from adapters.settings import PostgresSettings
from bench.common import Figure, connect, percentile, rss_mb
from bench.echo import METHOD

# The event store's table, column for column (eventsourcing's PostgreSQL recorder), without the hub.
_TABLE = (
    "CREATE TABLE {}.{} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, "
    "state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
)
_INDEX = "CREATE UNIQUE INDEX ON {}.{} (notification_id ASC)"
_INSERT = (
    "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
    "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) RETURNING notification_id"
)


def _raw_table(pg: PostgresSettings, name: str) -> Any:
    where = (sql.Identifier(pg.schema), sql.Identifier(name))
    with connect() as conn:
        conn.execute(sql.SQL(_TABLE).format(*where))
        conn.execute(sql.SQL(_INDEX).format(*where))
    return sql.SQL(_INSERT).format(*where)


def raw_batched_inserts(pg: PostgresSettings, topic: str, state: bytes, rows: int, batch: int) -> Figure:
    """Rows shaped like stored events (same topic, same state bytes), ``batch`` per transaction."""
    insert = _raw_table(pg, "raw_batched")
    latencies: list[float] = []
    with connect(autocommit=False) as conn:
        started = time.perf_counter()
        for done in range(0, rows, batch):
            n = min(batch, rows - done)
            t = time.perf_counter()
            with conn.transaction():
                conn.execute(insert, ([uuid.uuid4() for _ in range(n)], [1] * n, [topic] * n, [state] * n)).fetchall()
            latencies.append(time.perf_counter() - t)
        seconds = time.perf_counter() - started
    return Figure("raw psycopg batched insert", f"{batch} rows per transaction, {len(state)} B state", rows,
                  seconds, percentile(latencies, 50), percentile(latencies, 99), rss_mb(),
                  extra={"batch": batch, "latency_is": "per transaction"})


def raw_single_inserts(pg: PostgresSettings, topic: str, state: bytes, seconds: float) -> Figure:
    """One row per transaction: what a commit (an fsync) costs on this machine."""
    insert = _raw_table(pg, "raw_single")
    latencies: list[float] = []
    with connect(autocommit=False) as conn:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            with conn.transaction():
                conn.execute(insert, ([uuid.uuid4()], [1], [topic], [state])).fetchall()
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
    return Figure("raw psycopg one row per commit", "fsync-bound", len(latencies), elapsed,
                  percentile(latencies, 50), percentile(latencies, 99), rss_mb())


def raw_jetstream(nats_url: str, payload: bytes, messages: int, window: int) -> Figure:
    """publish_async into a file-backed stream with at most ``window`` unacknowledged messages."""
    return asyncio.run(_jetstream(nats_url, payload, messages, window))


async def _jetstream(nats_url: str, payload: bytes, messages: int, window: int) -> Figure:
    nc = NatsClient()
    await nc.connect(nats_url, connect_timeout=5, allow_reconnect=False)
    js = nc.jetstream(publish_async_max_pending=window)
    await js.add_stream(StreamConfig(name="BENCH_RAW", subjects=["bench.raw"], storage=StorageType.FILE))
    latencies: list[float] = []

    def timed(sent: float) -> Any:
        return lambda _future: latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    for n in range(messages):
        future = await js.publish_async("bench.raw", payload, headers={"Nats-Msg-Id": f"raw-{n}"})
        future.add_done_callback(timed(time.perf_counter()))
    await js.publish_async_completed()
    seconds = time.perf_counter() - started
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return Figure("raw JetStream publish_async", f"window {window}, {len(payload)} B messages", messages, seconds,
                  percentile(latencies, 50), percentile(latencies, 99), rss_mb(),
                  extra={"window": window, "latency_is": "publish to ack"})


def raw_grpc_unary(payload: bytes, callers: int, seconds: float) -> Figure:
    """grpc.aio unary calls carrying ``payload`` to an echo server in another process, ``callers`` at once."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.echo", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return asyncio.run(_unary(f"127.0.0.1:{port}", payload, callers, seconds))
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(10)


async def _unary(address: str, payload: bytes, callers: int, seconds: float) -> Figure:
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        call = channel.unary_unary(METHOD)
        until = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < until:
                t = time.perf_counter()
                await call(payload, timeout=30)
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(callers)))
        elapsed = time.perf_counter() - started
    return Figure("raw grpc.aio unary", f"{callers} callers, {len(payload)} B echo, one process pair",
                  len(latencies), elapsed, percentile(latencies, 50), percentile(latencies, 99), rss_mb(),
                  extra={"latency_is": "per call"})
