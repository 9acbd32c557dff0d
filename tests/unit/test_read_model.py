"""The case read model: folded from the log in bounded steps, the same rows whichever way a case is
read, and kept up by a follower so that a scrape never folds (it answers at once after a bulk load)."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any
from uuid import UUID

import pytest

from adapters.index_follower import IndexFollower
from adapters.metering import case_counts
from adapters.store.memory_index import MemoryCaseIndex
from hub.application import commands as c
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.ports import CaseQuery
from hub.application.read_model import CaseReadModel
from tests.builders import CLERK, HANDLER, actor_data, receive_request
from tests.memory_sites import hub, read_model, step


def received(h: CaseHub, n: int) -> list[UUID]:
    return [h.receive(c.parse(c.ReceiveCase, receive_request(f"r-{i}")))[0].id for i in range(n)]


def test_a_bounded_refresh_stops_at_its_limit_and_a_full_one_reaches_the_end() -> None:
    h = hub("410400")
    model = read_model(h)
    received(h, 30)  # 90 log entries: each case and its two claims
    assert model.lag() == 90
    assert model.refresh(batch=10, limit=25) is False
    assert model.lag() == 65
    assert model.refresh() is True and model.lag() == 0
    assert len(model.list_cases(CaseQuery(as_of=date.today(), page_size=100))) == 30


@pytest.mark.parametrize("batch", [1, 2, 7, 500])
def test_rows_folded_from_the_log_are_the_rows_of_the_loaded_cases(batch: int) -> None:
    h = hub("410400")
    ids = received(h, 6)
    for case_id in ids[:4]:
        step(h, c.ForwardCase, case_id, actor_data(CLERK))
    for case_id in ids[:2]:
        step(h, c.SignCase, case_id, actor_data(HANDLER))
    model = CaseReadModel(h, MemoryCaseIndex(), CaseClocks())  # the same log, an empty read model
    assert model.refresh(batch=batch) is True
    rows = {r.case_id: r for r in model.index.query(CaseQuery(as_of=date.today(), page_size=100))}
    assert rows == {str(i): model.row(h.get_case(i)) for i in ids}


def test_cases_that_begin_in_a_batch_are_folded_without_loading_them(monkeypatch: pytest.MonkeyPatch) -> None:
    h = hub("410400")
    model = read_model(h)
    received(h, 20)
    loads: list[Any] = []
    monkeypatch.setattr(h, "get_case", lambda case_id: loads.append(case_id))
    assert model.refresh(batch=500) is True
    assert loads == [] and len(model.index.query(CaseQuery(as_of=date.today(), page_size=100))) == 20


def test_a_scrape_reads_the_model_as_it_stands_and_the_follower_catches_it_up() -> None:
    h = hub("410400")
    model = read_model(h)
    received(h, 10)
    scrape = case_counts(model)
    before = scrape()
    assert before.index_lag == 30 and sum(before.by_state_and_partner.values()) == 0  # a scrape folds nothing
    follower = IndexFollower(model, idle=60.0, batch=7)
    follower.start()
    try:
        assert caught_up(model)
        h.receive(c.parse(c.ReceiveCase, receive_request("r-late")))
        assert caught_up(model)  # within seconds, its idle poll a minute away: the save woke it
    finally:
        follower.stop()
    after = scrape()
    assert after.index_lag == 0 and sum(after.by_state_and_partner.values()) == 11


def caught_up(model: CaseReadModel, timeout: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if model.lag() == 0:
            return True
        done.wait(0.05)
    return False
