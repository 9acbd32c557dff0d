"""The case index (read model) in SQLite, beside the embedded event store.

Rebuildable at any time: delete the file and the hub replays the event log into it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from adapters.store.index_sql import COLUMNS, POSITION_TABLE, TABLE, row_from, row_values
from hub.application.ports import CaseQuery, CaseRow, DueFilter, IndexSummary

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, state TEXT NOT NULL,
    item_code TEXT NOT NULL, item_name TEXT NOT NULL, receiving_site TEXT NOT NULL,
    handling_site TEXT NOT NULL, co_handling_sites TEXT NOT NULL, version INTEGER NOT NULL,
    received_at TEXT NOT NULL, updated_at TEXT NOT NULL, next_due TEXT, next_warn TEXT,
    due_provisional INTEGER NOT NULL, review TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS {TABLE}_state ON {TABLE} (state, case_id);
CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (next_due);
CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL);
"""


class SqliteCaseIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def position(self) -> int:
        with self._lock:
            found = self._db.execute(f"SELECT position FROM {POSITION_TABLE} WHERE id = 1").fetchone()
        return int(found[0]) if found else 0

    def upsert(self, rows: Sequence[CaseRow], position: int) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                    f"ON CONFLICT (case_id) DO UPDATE SET {updates}",
                    [_sqlite_values(r) for r in rows],
                )
                self._db.execute(
                    f"INSERT INTO {POSITION_TABLE} (id, position) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET position = excluded.position "
                    f"WHERE excluded.position > {POSITION_TABLE}.position",
                    (position,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def query(self, query: CaseQuery) -> list[CaseRow]:
        where, args = ["1 = 1"], []
        if query.states:
            where.append(f"state IN ({', '.join('?' for _ in query.states)})")
            args.extend(sorted(query.states))
        if query.partner:
            where.append("(receiving_site = ? OR handling_site = ? OR instr(co_handling_sites, ?) > 0)")
            args.extend([query.partner, query.partner, query.partner])
        if query.due is DueFilter.BREACHED:
            where.append("next_due < ?")
            args.append(query.as_of.isoformat())
        elif query.due is DueFilter.WARNING_OR_BREACHED:
            where.append("next_warn <= ?")
            args.append(query.as_of.isoformat())
        if query.after:
            where.append("case_id < ?")
            args.append(query.after)
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {' AND '.join(where)} "
            f"ORDER BY case_id DESC LIMIT ?"
        )
        with self._lock:
            found = self._db.execute(sql, [*args, query.page_size]).fetchall()
        return [row_from(_from_sqlite(r)) for r in found]

    def summary(self, site: str, as_of: date) -> IndexSummary:
        day = as_of.isoformat()
        with self._lock:
            states = self._db.execute(
                f"SELECT state, CASE WHEN receiving_site = ? THEN handling_site ELSE receiving_site END, COUNT(*) "
                f"FROM {TABLE} GROUP BY 1, 2", (site,)
            ).fetchall()
            due = self._db.execute(
                f"SELECT COALESCE(SUM(next_warn <= ? AND next_due >= ?), 0), COALESCE(SUM(next_due < ?), 0) "
                f"FROM {TABLE}", (day, day, day)
            ).fetchone()
            reviews = self._db.execute(f"SELECT review, COUNT(*) FROM {TABLE} GROUP BY review").fetchall()
        return IndexSummary(
            {(str(s), str(p)): int(n) for s, p, n in states}, int(due[0]), int(due[1]),
            {str(r): int(n) for r, n in reviews if r},
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _sqlite_values(row: CaseRow) -> tuple[object, ...]:
    values = list(row_values(row))
    for i, value in enumerate(values):
        if isinstance(value, date):
            values[i] = value.isoformat()
    return tuple(values)


def _from_sqlite(found: Sequence[object]) -> list[object]:
    out = list(found)
    for name in ("next_due", "next_warn"):
        i = COLUMNS.index(name)
        out[i] = date.fromisoformat(str(out[i])) if out[i] else None
    return out
