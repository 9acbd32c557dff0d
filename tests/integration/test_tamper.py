"""Tampering with a real store, behind the hub's back, is found and located by the site chain.

A real hub (SQLite or PostgreSQL) records a few cases; the site chain follows its log; then the
event table is edited directly in the database, as someone with database access would, and the
chain is verified against what is stored now.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.cryptography import AESCipher
from psycopg import sql

from adapters.audit.chain_store import MemoryChainStore, PostgresChainStore, SqliteChainStore
from adapters.audit.site_chain import SiteChain, facts_from
from adapters.bootstrap import build_hub, conninfo
from adapters.settings import PostgresSettings, Settings
from audit.chain import Finding
from audit.ports import ChainStore
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from tests.builders import CLERK, RECEIVING, actor_data, receive_request

# Each receipt stores the case and two claims; two cases are then forwarded: 11 events.
EVENTS = 11
EDITED, DELETED, SWAPPED = 4, 10, (1, 7)  # 4: a CaseReceived; 10: a CaseForwarded; 1 and 7: two CaseReceived


def record_cases(hub: CaseHub) -> None:
    cases = [hub.receive(c.parse(c.ReceiveCase, receive_request(f"req-{n}")))[0] for n in range(3)]
    for case in cases[:2]:
        hub.execute(c.parse(c.ForwardCase, {
            "case_id": str(case.id), "actor": actor_data(CLERK), "courier": "EMS", "tracking_number": "1173945026718",
        }))


def close(hub: CaseHub) -> None:
    hub.close()


def hub_of(chain: SiteChain) -> CaseHub:
    """The hub whose log ``chain`` follows (a CaseHub here: the tests write to it and close it)."""
    assert isinstance(chain.log, CaseHub)
    return chain.log


Statements = list[tuple[str, tuple[object, ...]]]


@dataclass
class Site:
    """One site's stores, reopened by each step as a separate process would, and raw SQL on its event table."""

    settings: Settings
    chain_store: ChainStore
    run_sql: Callable[[Statements], list[tuple[Any, ...]]]  # in one transaction; rows of the last statement
    table: str
    position: str

    def chain(self) -> SiteChain:
        return SiteChain(build_hub(self.settings), self.chain_store)

    def verify(self, checkpoints: list[tuple[int, str]] | None = None, window: int = 20_000) -> list[Finding]:
        chain = self.chain()
        try:
            return chain.verify(checkpoints or [], window=window)
        finally:
            close(hub_of(chain))

    def row(self, position: int) -> tuple[Any, bytes]:
        """(originator_id, state) of the row at ``position``, as the database holds them."""
        [(originator, state)] = self.run_sql(
            [(f"SELECT originator_id, state FROM {self.table} WHERE {self.position} = ?", (position,))]
        )
        return originator, bytes(state)


def sqlite_sql(path: Path) -> Callable[[Statements], list[tuple[Any, ...]]]:
    def run(statements: Statements) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(path)
        try:
            with db:
                rows: list[tuple[Any, ...]] = []
                for statement, args in statements:
                    rows = db.execute(statement, args).fetchall()
                return rows
        finally:
            db.close()
    return run


def postgres_sql(pg: PostgresSettings) -> Callable[[Statements], list[tuple[Any, ...]]]:
    def run(statements: Statements) -> list[tuple[Any, ...]]:
        with psycopg.connect(conninfo(pg)) as conn, conn.transaction():
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg.schema)))
            rows: list[tuple[Any, ...]] = []
            for statement, args in statements:
                cur = conn.execute(statement.replace("?", "%s"), args)
                rows = cur.fetchall() if cur.description else []
            return rows
    return run


@pytest.fixture(params=["sqlite", "sqlite+memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    settings = Settings(site=RECEIVING, data_dir=tmp_path / "data")
    made: Site
    if request.param.startswith("sqlite"):
        store: ChainStore = (
            MemoryChainStore() if request.param.endswith("memory")
            else SqliteChainStore(settings.data_dir / "audit_chain.sqlite3")
        )
        made = Site(settings, store, sqlite_sql(settings.data_dir / "events.sqlite3"), "stored_events", "rowid")
    else:
        pg: PostgresSettings = request.getfixturevalue("postgres_schema")
        settings = replace(settings, store="postgres", postgres=pg)
        store = PostgresChainStore(conninfo(pg), pg.schema)
        made = Site(settings, store, postgres_sql(pg), "tongban_events", "notification_id")
    hub = build_hub(settings)
    record_cases(hub)
    assert SiteChain(hub, store).extend() == EVENTS
    close(hub)
    yield made
    store.close()


def kinds(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.kind, f.position) for f in findings]


def test_untouched_store_verifies_clean(site: Site) -> None:
    assert site.verify() == []
    chain = site.chain()
    try:
        assert chain.extend() == 0
        head = chain.head()
        assert head is not None and head.position == EVENTS
        assert chain.verify([(head.position, head.link)]) == []
    finally:
        close(hub_of(chain))


def test_edited_event_is_found_where_it_was_edited(site: Site) -> None:
    _originator, state = site.row(EDITED)
    assert b"13837512345" in state
    site.run_sql([(f"UPDATE {site.table} SET state = ? WHERE {site.position} = ?",
                   (state.replace(b"13837512345", b"13800000000"), EDITED))])
    [finding] = site.verify()
    assert (finding.kind, finding.position, finding.version) == ("edited", EDITED, 1)
    assert finding.detail.startswith(f"事件被修改 (event edited): 办件 {finding.originator_id} 版本 1 在通知 {EDITED}")


def test_deleted_event_is_found_where_it_was_deleted(site: Site) -> None:
    site.run_sql([(f"DELETE FROM {site.table} WHERE {site.position} = ?", (DELETED,))])
    [finding] = site.verify()
    assert (finding.kind, finding.position, finding.version) == ("deleted", DELETED, 2)


def test_swapped_events_are_found_at_both_positions(site: Site) -> None:
    first, second = SWAPPED
    (a, a_state), (b, b_state) = site.row(first), site.row(second)
    temporary = "00000000-0000-0000-0000-000000000000" if site.table == "tongban_events" else "0" * 32
    update = f"UPDATE {site.table} SET originator_id = ?, state = ? WHERE {site.position} = ?"
    site.run_sql([(update, (temporary, b_state, first)), (update, (a, a_state, second)), (update, (b, b_state, first))])
    findings = site.verify()
    assert kinds(findings) == [("reordered", first), ("reordered", second)]
    assert f"原通知 {second}" in findings[0].detail and f"原通知 {first}" in findings[1].detail


def test_verifying_a_few_positions_at_a_time_finds_the_same(site: Site) -> None:
    chain = site.chain()
    head = chain.head()
    close(hub_of(chain))
    assert head is not None
    checkpoints = [(3, "0" * 64), (head.position, head.link)]
    first, second = SWAPPED  # a move across windows must still read as a move, not as two edits
    (a, a_state), (b, b_state) = site.row(first), site.row(second)
    temporary = "00000000-0000-0000-0000-000000000000" if site.table == "tongban_events" else "0" * 32
    update = f"UPDATE {site.table} SET originator_id = ?, state = ? WHERE {site.position} = ?"
    site.run_sql([(update, (temporary, b_state, first)), (update, (a, a_state, second)), (update, (b, b_state, first)),
                  (f"DELETE FROM {site.table} WHERE {site.position} = ?", (DELETED,))])
    whole = site.verify(checkpoints)
    assert kinds(whole) == [("reordered", first), ("checkpoint_mismatch", 3), ("reordered", second),
                            ("deleted", DELETED)]
    for window in (1, 2, 5):
        assert site.verify(checkpoints, window=window) == whole


def test_new_events_after_tampering_are_chained_and_the_tampering_still_shows(site: Site) -> None:
    site.run_sql([(f"DELETE FROM {site.table} WHERE {site.position} = ?", (DELETED,))])
    chain = site.chain()
    try:
        hub_of(chain).receive(c.parse(c.ReceiveCase, receive_request("req-later")))
        assert chain.extend(batch=2) == 3
        assert kinds(chain.verify()) == [("deleted", DELETED)]
    finally:
        close(hub_of(chain))


def test_chaining_in_small_batches_gives_the_same_chain(tmp_path: Path) -> None:
    hub = build_hub(Settings(site=RECEIVING, data_dir=tmp_path))
    try:
        record_cases(hub)
        whole, batched = MemoryChainStore(), MemoryChainStore()
        assert SiteChain(hub, whole).extend() == SiteChain(hub, batched).extend(batch=2) == EVENTS
        assert whole.links() == batched.links()
        assert sorted(SiteChain(hub, whole).stored_facts(3, 5)) == [3, 4, 5]
        notifications = hub.recorder.select_notifications(start=1, limit=EVENTS)
        assert [link.fact for link in whole.links()] == facts_from(notifications)
    finally:
        close(hub)


def test_an_encrypted_store_is_verified_without_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    settings = Settings(site=RECEIVING, data_dir=tmp_path)
    store = MemoryChainStore()
    hub = build_hub(settings)
    record_cases(hub)
    SiteChain(hub, store).extend()
    close(hub)
    monkeypatch.delenv("TONGBAN_PII_KEY")
    auditor = build_hub(settings)
    try:
        assert SiteChain(auditor, store).verify() == []
    finally:
        close(auditor)
