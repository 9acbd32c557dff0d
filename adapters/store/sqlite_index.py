"""The case index (read model) in SQLite, beside the embedded event store.

Rebuildable at any time: delete the file and the hub replays the event log into it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from adapters.store.index_sql import COLUMNS, row_from, row_values
from hub.application.ports import CaseQuery, CaseRow, DueFilter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS case_index (
    case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, state TEXT NOT NULL,
    item_code TEXT NOT NULL, item_name TEXT NOT NULL, receiving_site TEXT NOT NULL,
    handling_site TEXT NOT NULL, co_handling_sites TEXT NOT NULL, version INTEGER NOT NULL,
    received_at TEXT NOT NULL, updated_at TEXT NOT NULL, next_due TEXT, next_warn TEXT,
    due_provisional INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS case_index_state ON case_index (state, case_id);
CREATE INDEX IF NOT EXISTS case_index_due ON case_index (next_due);
CREATE TABLE IF NOT EXISTS case_index_position (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL);
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
            found = self._db.execute("SELECT position FROM case_index_position WHERE id = 1").fetchone()
        return int(found[0]) if found else 0

    def upsert(self, rows: Sequence[CaseRow], position: int) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO case_index ({', '.join(COLUMNS)}) VALUES ({placeholders}) "
                    f"ON CONFLICT (case_id) DO UPDATE SET {updates}",
                    [_sqlite_values(r) for r in rows],
                )
                self._db.execute(
                    "INSERT INTO case_index_position (id, position) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET position = excluded.position "
                    "WHERE excluded.position > case_index_position.position",
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
            f"SELECT {', '.join(COLUMNS)} FROM case_index WHERE {' AND '.join(where)} "
            f"ORDER BY case_id DESC LIMIT ?"
        )
        with self._lock:
            found = self._db.execute(sql, [*args, query.page_size]).fetchall()
        return [row_from(_from_sqlite(r)) for r in found]

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
