"""The site's staff directory: who may sign in here, in which role, and who changed that.

Kept beside the site's other stores: ``staff.sqlite3`` in the data dir (embedded), or tables in the
site's PostgreSQL schema. Not an event-sourced aggregate in the site store on purpose: that log is
shared with partners' audit trails and chained for ever, and a password hash must be replaceable
and must never travel or be chained. Accountability for the directory itself is the append-only
``staff_changes`` table (who added, disabled or reset whom, when; never a hash).

Every account belongs to this site: a directory can only vouch for its own staff.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from hub.domain.values import Role

STAFF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
STAFF_ROLES = frozenset(Role) - {Role.SYSTEM}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS staff ("
    " staff_id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, site TEXT NOT NULL,"
    " active BOOLEAN NOT NULL, password_hash TEXT NOT NULL, changed_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS staff_changes ("
    " at TEXT NOT NULL, staff_id TEXT NOT NULL, change TEXT NOT NULL, detail TEXT NOT NULL, by TEXT NOT NULL)",
)
_COLUMNS = "staff_id, name, role, site, active, password_hash, changed_at"


class DirectoryError(Exception):
    """A directory change that cannot be made (unknown or duplicate staff id, bad value)."""


@dataclass(frozen=True)
class StaffAccount:
    staff_id: str
    name: str
    role: Role
    site: str
    active: bool
    password_hash: str
    changed_at: str


@dataclass(frozen=True)
class StaffChange:
    at: str
    staff_id: str
    change: str  # added | disabled | enabled | password
    detail: str
    by: str


class StaffDirectory(Protocol):
    """What the gate and `tongban staff` use."""

    site: str

    def get(self, staff_id: str) -> StaffAccount | None: ...

    def accounts(self) -> list[StaffAccount]: ...

    def add(self, staff_id: str, name: str, role: Role, password_hash: str, *, by: str) -> StaffAccount: ...

    def set_active(self, staff_id: str, active: bool, *, by: str) -> None: ...

    def set_password(self, staff_id: str, password_hash: str, *, by: str) -> None: ...

    def changes(self, staff_id: str | None = None) -> list[StaffChange]: ...

    def close(self) -> None: ...


Cursor = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class SqlStaffDirectory:
    """The directory over any DB-API connection: ``transaction`` yields a function that runs one
    statement (written with ``?`` placeholders) and returns its rows."""

    def __init__(self, site: str, transaction: Callable[[], Any], closer: Callable[[], None]) -> None:
        self.site = site
        self._transaction = transaction
        self._close = closer
        with self._transaction() as run:
            for statement in _SCHEMA:
                run(statement, ())

    def get(self, staff_id: str) -> StaffAccount | None:
        with self._transaction() as run:
            rows = run(f"SELECT {_COLUMNS} FROM staff WHERE staff_id = ?", (staff_id,))
        return _account(rows[0]) if rows else None

    def accounts(self) -> list[StaffAccount]:
        with self._transaction() as run:
            return [_account(r) for r in run(f"SELECT {_COLUMNS} FROM staff ORDER BY staff_id", ())]

    def add(self, staff_id: str, name: str, role: Role, password_hash: str, *, by: str) -> StaffAccount:
        if not STAFF_ID.fullmatch(staff_id):
            raise DirectoryError(f"工号只能由字母、数字和 _.:- 组成（最多 64 个字符）：{staff_id!r}")
        if role not in STAFF_ROLES:
            raise DirectoryError(f"员工账号不能是角色 {role.value}")
        if not 0 < len(name) <= 32:
            raise DirectoryError("姓名须为 1-32 个字符")
        now = _now()
        with self._transaction() as run:
            if run("SELECT 1 FROM staff WHERE staff_id = ?", (staff_id,)):
                raise DirectoryError(f"工号 {staff_id} 已存在")
            run(f"INSERT INTO staff ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (staff_id, name, role.value, self.site, True, password_hash, now))
            _log(run, now, staff_id, "added", f"role={role.value} name={name}", by)
        return StaffAccount(staff_id, name, role, self.site, True, password_hash, now)

    def set_active(self, staff_id: str, active: bool, *, by: str) -> None:
        self._change(staff_id, "UPDATE staff SET active = ?, changed_at = ? WHERE staff_id = ?", active,
                     "enabled" if active else "disabled", by)

    def set_password(self, staff_id: str, password_hash: str, *, by: str) -> None:
        self._change(staff_id, "UPDATE staff SET password_hash = ?, changed_at = ? WHERE staff_id = ?",
                     password_hash, "password", by)

    def changes(self, staff_id: str | None = None) -> list[StaffChange]:
        query = "SELECT at, staff_id, change, detail, by FROM staff_changes"
        with self._transaction() as run:
            rows = run(query + " WHERE staff_id = ? ORDER BY at", (staff_id,)) if staff_id else run(
                query + " ORDER BY at", ())
        return [StaffChange(*(str(v) for v in r)) for r in rows]

    def close(self) -> None:
        self._close()

    def _change(self, staff_id: str, statement: str, value: Any, change: str, by: str) -> None:
        now = _now()
        with self._transaction() as run:
            if not run("SELECT 1 FROM staff WHERE staff_id = ?", (staff_id,)):
                raise DirectoryError(f"没有工号 {staff_id}")
            run(statement, (value, now, staff_id))
            _log(run, now, staff_id, change, "", by)


def sqlite_directory(path: Path, site: str) -> SqlStaffDirectory:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    lock = threading.Lock()

    @contextmanager
    def transaction() -> Iterator[Cursor]:
        with lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield lambda sql, args: db.execute(sql, tuple(args)).fetchall()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    return SqlStaffDirectory(site, transaction, db.close)


def postgres_directory(conninfo: str, schema: str, site: str) -> SqlStaffDirectory:
    import psycopg
    from psycopg import sql

    @contextmanager
    def transaction() -> Iterator[Cursor]:
        with psycopg.connect(conninfo) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))

            def run(statement: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
                cur.execute(statement.replace("?", "%s"), tuple(args))  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []

            yield run

    return SqlStaffDirectory(site, transaction, lambda: None)


def _account(row: Sequence[Any]) -> StaffAccount:
    staff_id, name, role, site, active, password_hash, changed_at = row
    return StaffAccount(str(staff_id), str(name), Role(role), str(site), bool(active), str(password_hash),
                        str(changed_at))


def _log(run: Cursor, at: str, staff_id: str, change: str, detail: str, by: str) -> None:
    run("INSERT INTO staff_changes (at, staff_id, change, detail, by) VALUES (?, ?, ?, ?, ?)",
        (at, staff_id, change, detail, by))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
