"""Where a site keeps its site chain: a small append-only table beside the event store.

The chain only helps if it is not rewritten with the events, so the table refuses UPDATE, DELETE
and TRUNCATE by trigger and ``append`` refuses any position at or before the chain's head. That
stops accidents and careless scripts; someone who owns the database can still drop a trigger,
which is what checkpoints kept off-site are for (``audit.chain.verify``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from psycopg import sql
from psycopg_pool import ConnectionPool

from adapters.store.arrays import columns
from audit.chain import ChainLink, StoredFact
from hub.domain.errors import HubError

TABLE = "audit_chain_v1"
COLUMNS = ("position", "originator_id", "version", "topic", "digest", "link")


class ChainRewriteRefused(HubError):
    """An append would rewrite or back-fill the chain at or before its head."""

    reason = "CHAIN_REWRITE_REFUSED"

    def __init__(self, position: int, head: int) -> None:
        super().__init__(f"审计链只能追加: 通知 {position} 不在链头 {head} 之后 "
                         f"(the audit chain is append-only: {position} is not after head {head})")
        self.position = position
        self.head = head


def _check_order(links: Sequence[ChainLink], head: int) -> None:
    after = head
    for link in links:
        if link.position <= after:
            raise ChainRewriteRefused(link.position, head)
        after = link.position


def _values(link: ChainLink) -> tuple[object, ...]:
    return (link.position, link.originator_id, link.version, link.topic, link.digest, link.link)


def _link(row: Sequence[object]) -> ChainLink:
    position, originator_id, version, topic, digest, link = row
    return ChainLink(int(str(position)), str(originator_id), int(str(version)), str(topic), str(digest), str(link))


class MemoryChainStore:
    """The fake: same contract, kept in a list."""

    def __init__(self) -> None:
        self._links: list[ChainLink] = []
        self._lock = threading.Lock()

    def last(self) -> ChainLink | None:
        with self._lock:
            return self._links[-1] if self._links else None

    def append(self, links: Sequence[ChainLink]) -> None:
        with self._lock:
            _check_order(links, self._links[-1].position if self._links else 0)
            self._links.extend(links)

    def locate(self, fact: StoredFact) -> tuple[int | None, int | None]:
        with self._lock:
            by_digest = next((k.position for k in self._links if k.digest == fact.digest), None)
            by_identity = next((k.position for k in self._links
                                if (k.originator_id, k.version) == (fact.originator_id, fact.version)), None)
        return by_digest, by_identity

    def links(self, start: int = 1, stop: int | None = None) -> list[ChainLink]:
        with self._lock:
            return [k for k in self._links if k.position >= start and (stop is None or k.position <= stop)]

    def before(self, position: int) -> ChainLink | None:
        with self._lock:
            return next((k for k in reversed(self._links) if k.position < position), None)

    def positions(self, originator_id: str) -> dict[int, int]:
        with self._lock:
            return {k.version: k.position for k in self._links if k.originator_id == originator_id}

    def close(self) -> None:
        pass


_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    position INTEGER PRIMARY KEY, originator_id TEXT NOT NULL, version INTEGER NOT NULL,
    topic TEXT NOT NULL, digest TEXT NOT NULL, link TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END;
"""


class SqliteChainStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SQLITE_SCHEMA)
        self._lock = threading.Lock()

    def last(self) -> ChainLink | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY position DESC LIMIT 1"
            ).fetchone()
        return _link(found) if found else None

    def append(self, links: Sequence[ChainLink]) -> None:
        if not links:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                head = self._db.execute(f"SELECT COALESCE(MAX(position), 0) FROM {TABLE}").fetchone()[0]
                _check_order(links, int(head))
                self._db.executemany(
                    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})",
                    [_values(k) for k in links],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def links(self, start: int = 1, stop: int | None = None) -> list[ChainLink]:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE position >= ? AND position <= ? ORDER BY position",
                (start, stop if stop is not None else 2**63 - 1),
            ).fetchall()
        return [_link(r) for r in found]

    def before(self, position: int) -> ChainLink | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE position < ? ORDER BY position DESC LIMIT 1",
                (position,),
            ).fetchone()
        return _link(row) if row else None

    def positions(self, originator_id: str) -> dict[int, int]:
        """A scan, in the database: asked once per exported bundle, and an index would tax every append."""
        with self._lock:
            rows = self._db.execute(f"SELECT version, position FROM {TABLE} WHERE originator_id = ? ORDER BY position",
                                    (originator_id,)).fetchall()
        return {int(v): int(p) for v, p in rows}

    def locate(self, fact: StoredFact) -> tuple[int | None, int | None]:
        """Only asked for positions that changed (tampering), so a scan is fine here."""
        with self._lock:
            by_digest = self._db.execute(f"SELECT MIN(position) FROM {TABLE} WHERE digest = ?",
                                         (fact.digest,)).fetchone()[0]
            by_identity = self._db.execute(
                f"SELECT MIN(position) FROM {TABLE} WHERE originator_id = ? AND version = ?",
                (fact.originator_id, fact.version),
            ).fetchone()[0]
        return by_digest, by_identity

    def close(self) -> None:
        with self._lock:
            self._db.close()


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    position BIGINT PRIMARY KEY, originator_id TEXT NOT NULL, version BIGINT NOT NULL,
    topic TEXT NOT NULL, digest TEXT NOT NULL, link TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE TRIGGER {row_trigger} BEFORE UPDATE OR DELETE ON {schema}.{table}
    FOR EACH ROW EXECUTE FUNCTION {schema}.{function}();
CREATE OR REPLACE TRIGGER {truncate_trigger} BEFORE TRUNCATE ON {schema}.{table}
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}();
"""


class PostgresChainStore:
    """The chain in the site's schema, beside the event tables."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self._schema, self._table = sql.Identifier(schema), sql.Identifier(TABLE)
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=2, open=True)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
            # Two processes starting at once would race on CREATE OR REPLACE: take turns.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{TABLE}",))
            conn.execute(sql.SQL(_PG_SCHEMA).format(
                schema=self._schema, table=self._table, function=sql.Identifier(f"{TABLE}_append_only"),
                row_trigger=sql.Identifier(f"{TABLE}_no_rewrite"),
                truncate_trigger=sql.Identifier(f"{TABLE}_no_truncate"),
            ))

    def _select(self, where: str = "", order: str = "ASC", limit: str = "") -> sql.Composed:
        return sql.SQL("SELECT {columns} FROM {schema}.{table} {where} ORDER BY position {order} {limit}").format(
            columns=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS), schema=self._schema,
            table=self._table, where=sql.SQL(where), order=sql.SQL(order), limit=sql.SQL(limit),
        )

    def last(self) -> ChainLink | None:
        with self._pool.connection() as conn:
            found = conn.execute(self._select(order="DESC", limit="LIMIT 1")).fetchone()
        return _link(found) if found else None

    def append(self, links: Sequence[ChainLink]) -> None:
        if not links:
            return
        insert = sql.SQL(  # one statement per batch: the links go as binary column arrays
            "INSERT INTO {schema}.{table} ({columns}) "
            "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[])"
        ).format(schema=self._schema, table=self._table,
                 columns=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Appenders take turns so the head read here is still the head at commit.
            cur.execute(sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(self._schema, self._table))
            cur.execute(sql.SQL("SELECT COALESCE(MAX(position), 0) FROM {}.{}").format(self._schema, self._table))
            head = cur.fetchone()
            _check_order(links, int(head[0]) if head else 0)
            rows = [_values(k) for k in links]
            cur.execute(insert, columns(rows, len(COLUMNS)))

    def links(self, start: int = 1, stop: int | None = None) -> list[ChainLink]:
        with self._pool.connection() as conn:
            found = conn.execute(
                self._select("WHERE position >= %s AND position <= %s"),
                (start, stop if stop is not None else 2**63 - 1),
            ).fetchall()
        return [_link(r) for r in found]

    def before(self, position: int) -> ChainLink | None:
        with self._pool.connection() as conn:
            row = conn.execute(self._select("WHERE position < %s", "DESC", "LIMIT 1"), (position,)).fetchone()
        return _link(row) if row else None

    def positions(self, originator_id: str) -> dict[int, int]:
        """A scan, in the database: asked once per exported bundle, and an index would tax every append."""
        query = sql.SQL("SELECT version, position FROM {}.{} WHERE originator_id = %s ORDER BY position").format(
            self._schema, self._table)
        with self._pool.connection() as conn:
            rows = conn.execute(query, (originator_id,)).fetchall()
        return {int(v): int(p) for v, p in rows}

    def locate(self, fact: StoredFact) -> tuple[int | None, int | None]:
        """Only asked for positions that changed (tampering), so a scan is fine here."""
        where = sql.SQL("SELECT MIN(position) FROM {}.{} WHERE ").format(self._schema, self._table)
        with self._pool.connection() as conn:
            by_digest = conn.execute(where + sql.SQL("digest = %s"), (fact.digest,)).fetchone()
            by_identity = conn.execute(where + sql.SQL("originator_id = %s AND version = %s"),
                                       (fact.originator_id, fact.version)).fetchone()
        return (by_digest[0] if by_digest else None), (by_identity[0] if by_identity else None)

    def close(self) -> None:
        self._pool.close()
