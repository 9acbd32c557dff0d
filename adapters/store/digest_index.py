"""The reconciliation digest index, written in the event store's own transaction.

Three tables beside the events: ``recon_digest`` (partner, case key, pair digest), and
``recon_day`` and ``recon_hour`` (partner, day or hour, count, XOR of digests as two signed 64-bit
halves). CaseHub hands each save's
digest changes to the recorder (``JoinedDigests`` in the save's kwargs); the recorders below write them
with the events, so the index is never ahead of or behind the log. The totals are updated by XOR
delta, so a save costs O(1) and never reads them back.

Reading: ``snapshot(partner)`` opens one consistent read (SQLite WAL read transaction, PostgreSQL
REPEATABLE READ) that a whole reconcile session uses while live traffic continues.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOFactory, POPOProcessRecorder
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder
from psycopg import sql

from adapters.store.arrays import columns
from hub.application.case_hub import CaseHub
from hub.domain.case import Case
from hub.domain.digests import DigestChange, JoinedDigests, digest_changes, join_xor, split_xor, xor
from reconciliation import paged
from reconciliation.ports import Bounds, Cut, Item, Segment, Total

RECEIVED_TOPIC = Case.CaseReceived.TOPIC
SQLITE_DDL = [
    "CREATE TABLE IF NOT EXISTS recon_digest (partner TEXT NOT NULL, case_key BLOB NOT NULL, "
    "digest BLOB NOT NULL, PRIMARY KEY (partner, case_key)) WITHOUT ROWID",
    *(f"CREATE TABLE IF NOT EXISTS {t} (partner TEXT NOT NULL, {c} INTEGER NOT NULL, n INTEGER NOT NULL, "
      f"fp_hi INTEGER NOT NULL, fp_lo INTEGER NOT NULL, PRIMARY KEY (partner, {c})) WITHOUT ROWID"
      for t, c in (("recon_day", "day"), ("recon_hour", "hour"))),
]
SQLITE_UPSERT_DIGEST = (
    "INSERT INTO recon_digest (partner, case_key, digest) VALUES (?, ?, ?) "
    "ON CONFLICT (partner, case_key) DO UPDATE SET digest = excluded.digest"
)
# SQLite has no XOR operator: a ^ b == (a | b) - (a & b), exact for 64-bit integers.
SQLITE_UPSERT_TOTAL = (
    "INSERT INTO {t} (partner, {c}, n, fp_hi, fp_lo) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (partner, {c}) DO UPDATE SET n = n + excluded.n, "
    "fp_hi = (fp_hi | excluded.fp_hi) - (fp_hi & excluded.fp_hi), "
    "fp_lo = (fp_lo | excluded.fp_lo) - (fp_lo & excluded.fp_lo)"
)
SQLITE_UPSERT_DAY = SQLITE_UPSERT_TOTAL.format(t="recon_day", c="day")
SQLITE_UPSERT_HOUR = SQLITE_UPSERT_TOTAL.format(t="recon_hour", c="hour")


Rows = list[tuple[Any, ...]]


def _rows(changes: Sequence[DigestChange]) -> tuple[Rows, Rows, Rows]:
    """Digest rows, day deltas and hour deltas, in one fixed order so concurrent writers never deadlock."""
    ordered = sorted(changes, key=lambda c: (c.partner, c.key))
    latest = {(c.partner, c.key): c.new for c in ordered}  # a case changed twice in one save: its last digest
    digests = [(partner, key, new) for (partner, key), new in latest.items()]
    return digests, _totals(ordered, lambda c: c.day), _totals(ordered, lambda c: c.hour)


def _totals(changes: Sequence[DigestChange], unit: Callable[[DigestChange], int]) -> Rows:
    """One delta row per (partner, day or hour) for the whole save: a batch of cases received in
    the same hour updates that hour once, not once per case."""
    deltas: dict[tuple[str, int], tuple[int, int]] = {}
    for c in changes:
        n, fp = deltas.get((c.partner, unit(c)), (0, 0))
        deltas[(c.partner, unit(c))] = (n + (0 if c.old else 1), fp ^ int.from_bytes(c.delta, "big"))
    return [(p, u, n, *split_xor(fp.to_bytes(16, "big"))) for (p, u), (n, fp) in sorted(deltas.items())]


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _digests(kwargs: dict[str, Any]) -> Sequence[DigestChange]:
    return JoinedDigests.carried_by(kwargs)


def _batches(changes: Iterable[DigestChange], size: int = 1000) -> Iterator[list[DigestChange]]:
    batch: list[DigestChange] = []
    for change in changes:
        batch.append(change)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class SqliteDigestRecorder(SQLiteProcessRecorder):
    """The SQLite process recorder, plus the digest index in the same transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *SQLITE_DDL]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        self._write(c, _digests(kwargs))
        return ids

    @staticmethod
    def _write(c: SQLiteCursor, changes: Sequence[DigestChange]) -> None:
        digests, days, hours = _rows(changes)
        if digests:
            c.executemany(SQLITE_UPSERT_DIGEST, digests)
            c.executemany(SQLITE_UPSERT_DAY, days)
            c.executemany(SQLITE_UPSERT_HOUR, hours)

    def has_digests(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM recon_digest LIMIT 1")
            return c.fetchone() is not None

    def replace_digests(self, changes: Iterable[DigestChange]) -> None:
        """Rewrite the whole index in one transaction (the changes are first-time: old is None)."""
        with self.datastore.transaction(commit=True) as c:
            for table in ("recon_digest", "recon_day", "recon_hour"):
                c.execute(f"DELETE FROM {table}")
            for batch in _batches(changes):
                self._write(c, batch)


class PostgresDigestRecorder(PostgresProcessRecorder):
    """The PostgreSQL process recorder, plus the digest index in the same transaction."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = sql.Identifier(self.datastore.schema)
        self.sql_create_statements.extend([
            sql.SQL("CREATE TABLE IF NOT EXISTS {}.recon_digest (partner TEXT NOT NULL, case_key BYTEA NOT NULL, "
                    "digest BYTEA NOT NULL, PRIMARY KEY (partner, case_key))").format(schema),
            *(sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (partner TEXT NOT NULL, {} INTEGER NOT NULL, "
                      "n BIGINT NOT NULL, fp_hi BIGINT NOT NULL, fp_lo BIGINT NOT NULL, "
                      "PRIMARY KEY (partner, {}))").format(schema, sql.Identifier(t), sql.Identifier(c),
                                                           sql.Identifier(c))
              for t, c in (("recon_day", "day"), ("recon_hour", "hour"))),
        ])
        self._insert_columns = sql.SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id"
        ).format(schema, sql.Identifier(self.events_table_name))
        self._upsert_digest = sql.SQL(
            "INSERT INTO {}.recon_digest AS t (partner, case_key, digest) "
            "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::bytea[]) "
            "ON CONFLICT (partner, case_key) DO UPDATE SET digest = excluded.digest"
        ).format(schema)
        self._upsert_day, self._upsert_hour = (sql.SQL(
            "INSERT INTO {}.{} AS t (partner, {}, n, fp_hi, fp_lo) "
            "SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[], %b::bigint[], %b::bigint[]) "
            "ON CONFLICT (partner, {}) DO UPDATE SET n = t.n + excluded.n, "
            "fp_hi = t.fp_hi # excluded.fp_hi, fp_lo = t.fp_lo # excluded.fp_lo"
        ).format(schema, sql.Identifier(t), sql.Identifier(c), sql.Identifier(c))
            for t, c in (("recon_day", "day"), ("recon_hour", "hour")))

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """The library's insert (table lock, NOTIFY, ids returned in order), with the rows sent as four
        binary column arrays rather than an array of composites dumped as text: most of a batch's
        client-side cost was that text dump."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self._insert_columns, (
            [_uuid(e.originator_id) for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        ))

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        self._write(curs, _digests(kwargs))

    def _write(self, curs: Any, changes: Sequence[DigestChange]) -> None:
        """Three statements per save whatever its size: each table's rows go as column arrays."""
        digests, days, hours = _rows(changes)
        if digests:
            curs.execute(self._upsert_digest, columns(digests, 3))
            curs.execute(self._upsert_day, columns(days, 5))
            curs.execute(self._upsert_hour, columns(hours, 5))

    def has_digests(self) -> bool:
        schema = sql.Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql.SQL("SELECT 1 FROM {}.recon_digest LIMIT 1").format(schema))
            return curs.fetchone() is not None

    def replace_digests(self, changes: Iterable[DigestChange]) -> None:
        schema = sql.Identifier(self.datastore.schema)
        with self.datastore.transaction(commit=True) as curs:
            for table in ("recon_digest", "recon_day", "recon_hour"):
                curs.execute(sql.SQL("DELETE FROM {}.{}").format(schema, sql.Identifier(table)))
            for batch in _batches(changes):
                self._write(curs, batch)


class MemoryDigestRecorder(POPOProcessRecorder):
    """The in-memory recorder with the same digest index, for unit tests (same contract tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.digests: dict[str, dict[bytes, bytes]] = {}
        self.day_totals: dict[str, dict[int, tuple[int, bytes]]] = {}
        self.hour_totals: dict[str, dict[int, tuple[int, bytes]]] = {}

    def _update_table(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)
        self._apply(_digests(kwargs))
        return ids

    def _apply(self, changes: Iterable[DigestChange]) -> None:
        for change in changes:
            self.digests.setdefault(change.partner, {})[change.key] = change.new
            for totals, unit in ((self.day_totals, change.day), (self.hour_totals, change.hour)):
                per_partner = totals.setdefault(change.partner, {})
                n, fp = per_partner.get(unit, (0, bytes(16)))
                per_partner[unit] = (n + (0 if change.old else 1), xor(fp, change.delta))

    def has_digests(self) -> bool:
        return any(self.digests.values())

    @property
    def database_lock(self) -> Any:
        """The lock the in-memory recorder holds while it writes: a snapshot reads under it."""
        return self._database_lock

    def replace_digests(self, changes: Iterable[DigestChange]) -> None:
        with self._database_lock:
            self.digests, self.day_totals, self.hour_totals = {}, {}, {}
            self._apply(changes)


class MemoryDigestFactory(POPOFactory):
    def process_recorder(self) -> MemoryDigestRecorder:
        return MemoryDigestRecorder()


def all_digests(hub: CaseHub) -> Iterator[DigestChange]:
    """Every case's pair digests, recomputed from its events (one case in memory at a time)."""
    position = 0
    while True:
        notes = hub.recorder.select_notifications(start=position + 1, limit=500, topics=[RECEIVED_TOPIC])
        if not notes:
            return
        for note in notes:
            case = hub.get_case(UUID(str(note.originator_id)))
            counts = {origin: len(chain) for origin, chain in case.chains.items()}
            yield from digest_changes(case.id, hub.site, case.sites, case.chains, counts)
        position = notes[-1].id


def ensure_digests(hub: CaseHub, *, force: bool = False) -> bool:
    """Build the digest index from the event log if it is empty but cases exist (a store that
    predates it, or restored without it), or always with ``force`` (after a restore from backup).
    Run it before the site serves: a case saved while it runs could be missed. True if rebuilt."""
    recorder = hub.recorder
    if not isinstance(recorder, SqliteDigestRecorder | PostgresDigestRecorder | MemoryDigestRecorder):
        return False  # a store that keeps no digest index (the library's plain recorders)
    if not force and (recorder.has_digests() or not recorder.max_notification_id()):
        return False
    recorder.replace_digests(all_digests(hub))
    return True


# ---------------------------------------------------------------------- reading


class _ListSnapshot(paged.Paged):
    """A snapshot: the totals read when it opened, and the items fetched on demand from the same read."""

    def __init__(self, days: list[Total], hours: list[Total], fetch: Any) -> None:
        self._days, self._hours, self._fetch = days, hours, fetch

    def days(self) -> list[Total]:
        return self._days

    def hours(self) -> list[Total]:
        return self._hours

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        return list(self._fetch(lo, hi, limit))


class MemoryDigestIndex:
    def __init__(self, recorder: MemoryDigestRecorder) -> None:
        self.recorder = recorder

    @contextmanager
    def snapshot(self, partner: str) -> Iterator[_ListSnapshot]:
        with self.recorder.database_lock:
            items = sorted(self.recorder.digests.get(partner, {}).items())
            days, hours = (sorted((u, n, fp) for u, (n, fp) in totals.get(partner, {}).items() if n)
                           for totals in (self.recorder.day_totals, self.recorder.hour_totals))
        keys = [k for k, _ in items]

        def fetch(lo: bytes, hi: bytes | None, limit: int | None) -> list[Item]:
            start = bisect.bisect_left(keys, lo)
            end = len(keys) if hi is None else bisect.bisect_left(keys, hi)
            return items[start:end if limit is None else min(end, start + limit)]

        yield _ListSnapshot(days, hours, fetch)


class SqliteDigestIndex:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def snapshot(self, partner: str) -> Iterator[_ListSnapshot]:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        lock = threading.Lock()
        try:
            db.execute("BEGIN")  # the first read below fixes the WAL snapshot for the whole session
            days, hours = ([(u, n, join_xor(hi, lo)) for u, n, hi, lo in db.execute(
                f"SELECT {c}, n, fp_hi, fp_lo FROM {t} WHERE partner = ? AND n > 0 ORDER BY {c}", (partner,))]
                for t, c in (("recon_day", "day"), ("recon_hour", "hour")))

            def fetch(lo: bytes, hi: bytes | None, limit: int | None) -> list[Item]:
                query = "SELECT case_key, digest FROM recon_digest WHERE partner = ? AND case_key >= ?"
                args: tuple[Any, ...] = (partner, lo)
                if hi is not None:
                    query, args = query + " AND case_key < ?", (*args, hi)
                query, args = query + " ORDER BY case_key LIMIT ?", (*args, -1 if limit is None else limit)
                with lock:
                    return db.execute(query, args).fetchall()

            yield _ListSnapshot(days, hours, fetch)
        finally:
            db.close()


class PostgresDigestIndex:
    def __init__(self, conninfo: str, schema: str) -> None:
        self.conninfo, self.schema = conninfo, schema

    @contextmanager
    def snapshot(self, partner: str) -> Iterator[_PostgresSnapshot]:
        with psycopg.connect(self.conninfo) as conn:
            conn.isolation_level, conn.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
            yield _PostgresSnapshot(conn, sql.Identifier(self.schema), partner)
            conn.rollback()


class _PostgresSnapshot:
    """One REPEATABLE READ transaction: the totals read first, then ranges summed and cut by the
    database, so a bulk-loaded hour is never sent to us key by key."""

    def __init__(self, conn: psycopg.Connection[Any], schema: sql.Identifier, partner: str) -> None:
        self._conn, self._schema, self._partner, self._lock = conn, schema, partner, threading.Lock()
        self._days, self._hours = ([(u, n, join_xor(hi, lo)) for u, n, hi, lo in conn.execute(
            sql.SQL("SELECT {}, n, fp_hi, fp_lo FROM {}.{} WHERE partner = %s AND n > 0 ORDER BY {}").format(
                sql.Identifier(c), schema, sql.Identifier(t), sql.Identifier(c)), (partner,))]
            for t, c in (("recon_day", "day"), ("recon_hour", "hour")))

    def days(self) -> list[Total]:
        return self._days

    def hours(self) -> list[Total]:
        return self._hours

    def _range(self, select: str, lo: bytes, hi: bytes | None) -> tuple[sql.Composed, tuple[Any, ...]]:
        query = sql.SQL(select + " FROM {}.recon_digest WHERE partner = %s AND case_key >= %s").format(self._schema)
        if hi is None:
            return query, (self._partner, lo)
        return query + sql.SQL(" AND case_key < %s"), (self._partner, lo, hi)

    def _rows(self, query: sql.Composed, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(query, args).fetchall()

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        query, args = self._range("SELECT case_key, digest", lo, hi)
        rows = self._rows(query + sql.SQL(" ORDER BY case_key LIMIT %s"), (*args, limit))  # NULL: all
        return [(bytes(k), bytes(d)) for k, d in rows]

    def item_lists(self, ranges: Sequence[Bounds]) -> list[list[Item]]:
        if not ranges:
            return []
        query = sql.SQL(
            "SELECT r.i, d.case_key, d.digest FROM unnest(%s::bytea[], %s::bytea[]) WITH ORDINALITY AS r(lo, hi, i) "
            "CROSS JOIN LATERAL (SELECT case_key, digest FROM {}.recon_digest "
            "WHERE partner = %s AND case_key >= r.lo AND case_key < r.hi) AS d ORDER BY r.i, d.case_key"
        ).format(self._schema)
        out: list[list[Item]] = [[] for _ in ranges]
        for i, k, d in self._rows(query, (*_bounds(ranges), self._partner)):
            out[i - 1].append((bytes(k), bytes(d)))
        return out

    def summaries(self, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
        if not ranges:
            return []
        # The aggregate inside the lateral subquery keeps it one index range scan per range whatever
        # the statistics say: joined flat, a planner misled by a bulk load's stale row counts filtered
        # every key of the partner against every range (20 s for 219 ranges over 1M keys).
        query = sql.SQL(
            "SELECT d.n, d.fp FROM unnest(%s::bytea[], %s::bytea[]) WITH ORDINALITY AS r(lo, hi, i) "
            "CROSS JOIN LATERAL (SELECT count(*) AS n, " + _XOR.format("digest") + " AS fp FROM {}.recon_digest "
            "WHERE partner = %s AND case_key >= r.lo AND case_key < r.hi) AS d ORDER BY r.i"
        ).format(self._schema)
        rows = self._rows(query, (*_bounds(ranges), self._partner))
        return [(int(n), _bits(fp)) for n, fp in rows]

    def segments(self, cuts: Sequence[Cut]) -> list[list[Segment]]:
        if not cuts:
            return []
        # bytea has no min() or max(); its hex, compared byte by byte (collation "C"), orders the same.
        # Each cut ranks its own keys inside the lateral subquery: one index range scan per cut.
        query = sql.SQL(
            "SELECT r.i, s.seg, s.n, s.fp, s.k0, s.k1 "
            "FROM unnest(%s::bytea[], %s::bytea[], %s::bigint[], %s::bigint[]) "
            "WITH ORDINALITY AS r(lo, hi, first, every, i) "
            "CROSS JOIN LATERAL (SELECT seg, count(*) AS n, " + _XOR.format("digest") + " AS fp, "
            "min(hex) AS k0, max(hex) AS k1 FROM ("
            "SELECT digest, encode(case_key, 'hex') COLLATE \"C\" AS hex, "
            "CASE WHEN rn < r.first THEN 0 ELSE 1 + (rn - r.first) / r.every END AS seg FROM ("
            "SELECT case_key, digest, row_number() OVER (ORDER BY case_key) - 1 AS rn FROM {}.recon_digest "
            "WHERE partner = %s AND case_key >= r.lo AND case_key < r.hi) AS run) AS keyed "
            "GROUP BY seg) AS s ORDER BY r.i, s.seg"
        ).format(self._schema)
        out: list[list[Segment]] = [[] for _ in cuts]
        for i, seg, n, fp, k0, k1 in self._rows(query, (
            *_bounds([(lo, hi) for lo, hi, _, _ in cuts]), [first for _, _, first, _ in cuts],
            [every for _, _, _, every in cuts], self._partner,
        )):
            out[i - 1].append((int(seg), int(n), _bits(fp), bytes.fromhex(k0), bytes.fromhex(k1)))
        return out


_ABOVE = b"\xff" * 17  # above every 16-byte key: an upper bound the index can use, where None means none
_XOR = "bit_xor(('x' || encode({}, 'hex'))::bit(128))"  # PostgreSQL 14+: the XOR of 16-byte digests


def _bounds(ranges: Sequence[Bounds]) -> tuple[list[bytes], list[bytes]]:
    """Ranges as the two bytea arrays the batched queries unnest (no upper bound: above every key)."""
    return [lo for lo, _ in ranges], [_ABOVE if hi is None else hi for _, hi in ranges]


def _bits(value: str | None) -> bytes:
    """A bit(128) as psycopg reads it (a string of 0s and 1s; NULL over no rows) as 16 bytes."""
    return int(value or "0", 2).to_bytes(16, "big")
