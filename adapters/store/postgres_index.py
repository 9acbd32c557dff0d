"""The case index (read model) in PostgreSQL, in the site's schema beside the event tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from psycopg import sql
from psycopg_pool import ConnectionPool

from adapters.store.index_sql import COLUMNS, POSITION_TABLE, TABLE, row_from, row_values
from hub.application.ports import CaseQuery, CaseRow, DueFilter, IndexSummary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    case_id TEXT PRIMARY KEY, case_number TEXT NOT NULL, state TEXT NOT NULL,
    item_code TEXT NOT NULL, item_name TEXT NOT NULL, receiving_site TEXT NOT NULL,
    handling_site TEXT NOT NULL, co_handling_sites TEXT NOT NULL, version BIGINT NOT NULL,
    received_at TEXT NOT NULL, updated_at TEXT NOT NULL, next_due DATE, next_warn DATE,
    due_provisional BOOLEAN NOT NULL, review TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS {state_index} ON {schema}.{table} (state, case_id);
CREATE INDEX IF NOT EXISTS {due_index} ON {schema}.{table} (next_due);
CREATE TABLE IF NOT EXISTS {schema}.{position} (
    id INTEGER PRIMARY KEY CHECK (id = 1), position BIGINT NOT NULL
);
"""


class PostgresCaseIndex:
    def __init__(self, conninfo: str, schema: str) -> None:
        self._schema = sql.Identifier(schema)
        self._table, self._position = sql.Identifier(TABLE), sql.Identifier(POSITION_TABLE)
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True)
        with self._pool.connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
            conn.execute(sql.SQL(_SCHEMA).format(
                schema=self._schema, table=self._table, position=self._position,
                state_index=sql.Identifier(f"{TABLE}_state"), due_index=sql.Identifier(f"{TABLE}_due"),
            ))

    def position(self) -> int:
        with self._pool.connection() as conn:
            found = conn.execute(
                sql.SQL("SELECT position FROM {}.{} WHERE id = 1").format(self._schema, self._position)
            ).fetchone()
        return int(found[0]) if found else 0

    def upsert(self, rows: Sequence[CaseRow], position: int) -> None:
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in COLUMNS[1:]
        )
        insert = sql.SQL(
            "INSERT INTO {schema}.{table} ({columns}) VALUES ({values}) "
            "ON CONFLICT (case_id) DO UPDATE SET {updates}"
        ).format(
            schema=self._schema, table=self._table, columns=columns,
            values=sql.SQL(", ").join(sql.Placeholder() for _ in COLUMNS), updates=updates,
        )
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(insert, [row_values(r) for r in rows])
            cur.execute(
                sql.SQL(
                    "INSERT INTO {schema}.{position} (id, position) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET position = excluded.position "
                    "WHERE excluded.position > {schema}.{position}.position"
                ).format(schema=self._schema, position=self._position),
                (position,),
            )

    def query(self, query: CaseQuery) -> list[CaseRow]:
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        args: list[object] = []
        if query.states:
            where.append(sql.SQL("state = ANY(%s)"))
            args.append(sorted(query.states))
        if query.partner:
            where.append(sql.SQL("(receiving_site = %s OR handling_site = %s OR strpos(co_handling_sites, %s) > 0)"))
            args.extend([query.partner, query.partner, query.partner])
        if query.due is DueFilter.BREACHED:
            where.append(sql.SQL("next_due < %s"))
            args.append(query.as_of)
        elif query.due is DueFilter.WARNING_OR_BREACHED:
            where.append(sql.SQL("next_warn <= %s"))
            args.append(query.as_of)
        if query.after:
            where.append(sql.SQL("case_id < %s"))
            args.append(query.after)
        statement = sql.SQL(
            "SELECT {columns} FROM {schema}.{table} WHERE {where} ORDER BY case_id DESC LIMIT %s"
        ).format(
            columns=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
            schema=self._schema,
            table=self._table,
            where=sql.SQL(" AND ").join(where),
        )
        with self._pool.connection() as conn:
            found = conn.execute(statement, [*args, query.page_size]).fetchall()
        return [row_from(r) for r in found]

    def summary(self, site: str, as_of: date) -> IndexSummary:
        table = sql.SQL("{}.{}").format(self._schema, self._table)
        with self._pool.connection() as conn:
            states = conn.execute(
                sql.SQL("SELECT state, CASE WHEN receiving_site = %s THEN handling_site ELSE receiving_site END, "
                        "COUNT(*) FROM {} GROUP BY 1, 2").format(table), (site,)
            ).fetchall()
            due = conn.execute(
                sql.SQL("SELECT COUNT(*) FILTER (WHERE next_warn <= %s AND next_due >= %s), "
                        "COUNT(*) FILTER (WHERE next_due < %s) FROM {}").format(table), (as_of, as_of, as_of)
            ).fetchone()
            reviews = conn.execute(sql.SQL("SELECT review, COUNT(*) FROM {} GROUP BY review").format(table)).fetchall()
        assert due is not None
        return IndexSummary(
            {(str(s), str(p)): int(n) for s, p, n in states}, int(due[0]), int(due[1]),
            {str(r): int(n) for r, n in reviews if r},
        )

    def close(self) -> None:
        self._pool.close()
