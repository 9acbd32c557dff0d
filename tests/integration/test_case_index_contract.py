"""One contract for every CaseIndex: the in-memory fake, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from adapters.bootstrap import conninfo
from adapters.settings import PostgresSettings
from adapters.store.index_filter import matches
from adapters.store.memory_index import MemoryCaseIndex
from adapters.store.postgres_index import PostgresCaseIndex
from adapters.store.sqlite_index import SqliteCaseIndex
from hub.application.ports import CaseIndex, CaseQuery, CaseRow, DueFilter

TODAY = date(2026, 12, 10)


def row(n: int, **changes: object) -> CaseRow:
    base = CaseRow(
        case_id=f"01a2{n:04d}-0000-7000-8000-000000000000", case_number=f"4104002026112900000{n:03d}0",
        state="in_review", item_code="KSTB-006", item_name="企业职工基本养老保险关系转移接续",
        receiving_site="410400", handling_site="320500", co_handling_sites=(), version=1,
        received_at="2026-11-29T05:00:00+00:00", updated_at="2026-11-29T05:00:00+00:00",
    )
    return CaseRow(**{**base.__dict__, **changes})  # type: ignore[arg-type]


ROWS = [
    row(1),
    row(2, state="forwarded", next_due=date(2026, 12, 9), next_warn=date(2026, 12, 9)),
    row(3, next_due=date(2026, 12, 10), next_warn=date(2026, 12, 8)),
    row(4, next_due=date(2026, 12, 20), next_warn=date(2026, 12, 18), due_provisional=True),
    row(5, handling_site="330100", co_handling_sites=("320500", "440300")),
    row(6, state="archived", receiving_site="320500", handling_site="410400"),
]
QUERIES = [
    CaseQuery(as_of=TODAY),
    CaseQuery(as_of=TODAY, states=frozenset({"forwarded", "archived"})),
    CaseQuery(as_of=TODAY, due=DueFilter.BREACHED),
    CaseQuery(as_of=TODAY, due=DueFilter.WARNING_OR_BREACHED),
    CaseQuery(as_of=TODAY, partner="440300"),
    CaseQuery(as_of=TODAY, partner="320500", page_size=2),
    CaseQuery(as_of=TODAY, page_size=2, after=ROWS[3].case_id),
]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CaseIndex]:
    made: CaseIndex
    if request.param == "memory":
        made = MemoryCaseIndex()
    elif request.param == "sqlite":
        made = SqliteCaseIndex(tmp_path / "index.sqlite3")
    else:
        pg: PostgresSettings = request.getfixturevalue("postgres_schema")
        made = PostgresCaseIndex(conninfo(pg), pg.schema)
    yield made
    made.close()


def expected(query: CaseQuery) -> list[CaseRow]:
    found = sorted((r for r in ROWS if matches(r, query)), key=lambda r: r.case_id, reverse=True)
    found = [r for r in found if query.after is None or r.case_id < query.after]
    return found[: query.page_size]


@pytest.mark.parametrize("query", QUERIES, ids=range(len(QUERIES)))
def test_queries_return_the_same_rows(index: CaseIndex, query: CaseQuery) -> None:
    index.upsert(ROWS, position=6)
    assert index.query(query) == expected(query)


def test_position_moves_only_forward_with_its_rows(index: CaseIndex) -> None:
    assert index.position() == 0
    index.upsert(ROWS[:2], position=5)
    index.upsert([row(1, state="archived", version=9)], position=9)
    assert index.position() == 9
    assert index.query(CaseQuery(as_of=TODAY, states=frozenset({"archived"}))) == [row(1, state="archived", version=9)]


def test_row_round_trips_every_field(index: CaseIndex) -> None:
    index.upsert([ROWS[4], ROWS[3]], position=1)
    assert index.query(CaseQuery(as_of=TODAY)) == [ROWS[4], ROWS[3]]


def test_expected_filter_is_not_trivial() -> None:
    assert [len(expected(q)) for q in QUERIES] == [6, 2, 1, 2, 1, 2, 2]


def test_summary_counts_by_state_partner_due_and_review(index: CaseIndex) -> None:
    rows = [*ROWS, row(7, review="open"), row(8, review="late"), row(9, review="open", state="archived")]
    index.upsert(rows, position=9)
    summary = index.summary("410400", TODAY)
    assert summary.by_state_and_partner == {
        ("in_review", "320500"): 5, ("in_review", "330100"): 1, ("forwarded", "320500"): 1,
        ("archived", "320500"): 2,
    }
    assert (summary.warning, summary.breached) == (1, 1)
    assert summary.reviews == {"open": 2, "late": 1}


def test_closing_twice_is_harmless(index: CaseIndex) -> None:
    """The hub closes its index; whoever also closes it (a server stopping twice) must not fail."""
    index.close()
    index.close()
