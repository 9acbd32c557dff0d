"""One contract for every ChainStore: the in-memory fake, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from adapters.audit.chain_store import (
    TABLE,
    ChainRewriteRefused,
    MemoryChainStore,
    PostgresChainStore,
    SqliteChainStore,
)
from adapters.bootstrap import conninfo
from adapters.settings import PostgresSettings
from audit.chain import StoredFact, extend, fact_digest
from audit.ports import ChainStore

SITE = "410400"


def fact(position: int) -> StoredFact:
    originator = f"01a2{position:04d}-0000-7000-8000-000000000000"
    topic = "tongban.case:CaseReceived"
    digest = fact_digest(originator, position, topic, b"s%d" % position)
    return StoredFact(position, originator, position, topic, digest)


LINKS = extend(SITE, None, [fact(p) for p in (1, 2, 3, 5, 6, 9)])


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChainStore]:
    made: ChainStore
    if request.param == "memory":
        made = MemoryChainStore()
    elif request.param == "sqlite":
        made = SqliteChainStore(tmp_path / "audit_chain.sqlite3")
    else:
        pg: PostgresSettings = request.getfixturevalue("postgres_schema")
        made = PostgresChainStore(conninfo(pg), pg.schema)
    yield made
    made.close()


def test_empty_store_has_no_head(store: ChainStore) -> None:
    assert store.last() is None
    assert store.links() == []
    store.append([])
    assert store.last() is None


def test_links_round_trip_in_position_order(store: ChainStore) -> None:
    store.append(LINKS[:3])
    store.append(LINKS[3:])
    assert store.links() == LINKS
    assert store.last() == LINKS[-1]


def test_links_by_inclusive_range(store: ChainStore) -> None:
    store.append(LINKS)
    assert store.links(3) == LINKS[2:]
    assert store.links(2, 5) == LINKS[1:4]
    assert store.links(4, 4) == []
    assert store.links(10) == []


def test_append_refuses_to_rewrite_or_back_fill(store: ChainStore) -> None:
    store.append(LINKS[:4])
    with pytest.raises(ChainRewriteRefused) as refused:
        store.append([LINKS[3]])
    assert (refused.value.position, refused.value.head) == (5, 5)
    back_fill = extend(SITE, LINKS[2], [fact(4)])
    with pytest.raises(ChainRewriteRefused):
        store.append(back_fill)
    with pytest.raises(ChainRewriteRefused):  # out of order within one batch
        store.append([LINKS[5], LINKS[4]])
    assert store.links() == LINKS[:4]


def test_a_refused_batch_stores_nothing(store: ChainStore) -> None:
    store.append(LINKS[:2])
    with pytest.raises(ChainRewriteRefused):
        store.append([LINKS[2], LINKS[1]])
    assert store.links() == LINKS[:2]


def test_reopened_sqlite_store_keeps_its_chain(tmp_path: Path) -> None:
    first = SqliteChainStore(tmp_path / "chain.sqlite3")
    first.append(LINKS)
    first.close()
    again = SqliteChainStore(tmp_path / "chain.sqlite3")
    assert again.links() == LINKS
    again.close()


def test_sqlite_table_refuses_update_and_delete(tmp_path: Path) -> None:
    store = SqliteChainStore(tmp_path / "chain.sqlite3")
    store.append(LINKS)
    store.close()
    with sqlite3.connect(tmp_path / "chain.sqlite3") as db:
        for statement in (f"UPDATE {TABLE} SET digest = 'x' WHERE position = 2", f"DELETE FROM {TABLE}"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    db.close()


@pytest.mark.postgres
def test_postgres_table_refuses_update_delete_and_truncate(postgres_schema: PostgresSettings) -> None:
    store = PostgresChainStore(conninfo(postgres_schema), postgres_schema.schema)
    store.append(LINKS)
    again = PostgresChainStore(conninfo(postgres_schema), postgres_schema.schema)  # schema set-up is idempotent
    assert again.links() == LINKS
    again.close()
    store.close()
    table = sql.SQL("{}.{}").format(sql.Identifier(postgres_schema.schema), sql.Identifier(TABLE))
    with psycopg.connect(conninfo(postgres_schema), autocommit=True) as conn:
        for statement in ("UPDATE {} SET digest = 'x' WHERE position = 2", "DELETE FROM {}", "TRUNCATE {}"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql.SQL(statement).format(table))
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone() == (len(LINKS),)


def test_locate_finds_where_a_digest_and_an_identity_are_chained(store: ChainStore) -> None:
    store.append(LINKS)
    moved = LINKS[3].fact  # position 5
    assert store.locate(moved) == (5, 5)
    forged = StoredFact(2, moved.originator_id, moved.version, moved.topic, "f" * 64)
    assert store.locate(forged) == (None, 5)
    assert store.locate(StoredFact(2, "nobody", 1, moved.topic, "f" * 64)) == (None, None)


def test_the_link_before_a_position_skips_positions_the_log_skipped(store: ChainStore) -> None:
    store.append(LINKS)
    assert store.before(1) is None
    assert store.before(5) == LINKS[2]  # 4 was skipped: the link before 5 is at 3
    assert store.before(4) == LINKS[2]
    assert store.before(100) == LINKS[-1]


def test_positions_of_one_originator_by_version(store: ChainStore) -> None:
    store.append(LINKS)
    assert store.positions(LINKS[3].originator_id) == {LINKS[3].version: 5}
    assert store.positions("01a20000-0000-7000-8000-00000000dead") == {}
