"""Group commit: many callers, one transaction per batch, each caller its own result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from adapters.settings import ConfigError, settings_from
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.group_commit import CommitterClosed, GroupCommitter
from hub.domain.errors import ConcurrentUpdate, IllegalStep
from hub.domain.lifecycle import CaseState
from hub.domain.values import IssueKind
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from tests.builders import CLERK, RECEIVING, actor_data, receive_request
from tests.threads import together

CATALOGUE, REGIONS = Catalogue.load(), RegionDirectory.load()
FOREVER = 60.0  # a window no test waits out: batches here are flushed by their size


class RacingHub(CaseHub):
    """A hub where, once, another writer stores a step on ``race_case`` just before a batch is saved."""

    race_case: UUID | None = None

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        if self.race_case is not None and len(objs) > 1:
            rival, self.race_case = self.get_case(self.race_case), None
            rival.raise_issue(CLERK, IssueKind.OTHER, "材料缺页", site=self.site)
            super().save(rival)
        return super().save(*objs, **kwargs)


@pytest.fixture
def hub() -> CaseHub:
    return CaseHub(site=RECEIVING, catalogue=CATALOGUE, regions=REGIONS,
                   env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


@pytest.fixture
def flushes() -> list[tuple[int, bool]]:
    return []


@pytest.fixture
def committer_for(flushes: list[tuple[int, bool]]) -> Iterator[Callable[..., GroupCommitter]]:
    made: list[GroupCommitter] = []

    def make(hub: CaseHub, max_batch: int, window: float = FOREVER) -> GroupCommitter:
        committer = GroupCommitter(hub, max_batch, window, on_flush=lambda n, fell: flushes.append((n, fell)))
        made.append(committer)
        return committer

    yield make
    for committer in made:
        committer.close()


def receive(request_id: str) -> c.ReceiveCase:
    return c.parse(c.ReceiveCase, receive_request(request_id))


def forward(case_id: UUID, **extra: Any) -> c.CaseCommand:
    return c.parse(c.ForwardCase, {"case_id": str(case_id), "actor": actor_data(CLERK), "courier": "EMS",
                                   "tracking_number": "1173945026718", **extra})


def test_concurrent_receipts_are_stored_in_one_batch_and_each_caller_gets_its_own_case(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]]
) -> None:
    committer = committer_for(hub, max_batch=20)
    results = together([lambda i=i: committer.receive(receive(f"r-{i}")) for i in range(20)])
    assert flushes == [(20, False)]
    assert all(created for _case, created in results)
    ids = {case.id for case, _created in results}
    assert len(ids) == 20
    for i, (case, _created) in enumerate(results):
        stored = hub.get_case(case.id)
        assert stored.request_id == f"r-{i}" and stored.version == 1


def test_a_rule_violation_fails_only_its_own_command(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]]
) -> None:
    first, _ = hub.receive(receive("r-1"))
    second, _ = hub.receive(receive("r-2"))
    committer = committer_for(hub, max_batch=3)
    results = together([lambda: committer.execute(forward(first.id)), lambda: committer.execute(forward(first.id)),
                        lambda: committer.execute(forward(second.id))])
    assert flushes == [(3, False)]
    refused = [r for r in results[:2] if isinstance(r, IllegalStep)]
    assert len(refused) == 1, results
    assert results[2].state is CaseState.FORWARDED
    assert hub.get_case(first.id).state is CaseState.FORWARDED and hub.get_case(first.id).version == 2
    assert hub.get_case(second.id).state is CaseState.FORWARDED


def test_a_stale_expected_version_fails_only_its_caller(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter]
) -> None:
    first, _ = hub.receive(receive("r-1"))
    second, _ = hub.receive(receive("r-2"))
    committer = committer_for(hub, max_batch=2)
    results = together([lambda: committer.execute(forward(first.id, expected_version=7)),
                        lambda: committer.execute(forward(second.id, expected_version=1))])
    assert isinstance(results[0], ConcurrentUpdate)
    assert results[1].version == 2
    assert hub.get_case(first.id).state is CaseState.RECEIVED


def test_batches_are_bounded_by_size(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]]
) -> None:
    committer = committer_for(hub, max_batch=4)
    results = together([lambda i=i: committer.receive(receive(f"r-{i}")) for i in range(8)])
    assert flushes == [(4, False), (4, False)]
    assert len({case.id for case, _ in results}) == 8


def test_a_lone_command_is_flushed_when_the_window_closes(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]]
) -> None:
    committer = committer_for(hub, max_batch=1000, window=0.01)
    case, created = committer.receive(receive("r-1"))
    assert created and flushes == [(1, False)]
    assert committer.execute(forward(case.id)).state is CaseState.FORWARDED


def test_a_repeated_request_id_in_one_batch_opens_one_case(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter]
) -> None:
    committer = committer_for(hub, max_batch=3)
    results = together([lambda: committer.receive(receive("same")), lambda: committer.receive(receive("same")),
                        lambda: committer.receive(receive("other"))])
    assert sorted(created for _, created in results[:2]) == [False, True]
    assert results[0][0].id == results[1][0].id != results[2][0].id


@pytest.fixture
def racing() -> tuple[CaseHub, UUID, UUID]:
    """A hub where a rival writes to the first of two cases just before the next batch is saved."""
    hub = RacingHub(site=RECEIVING, catalogue=CATALOGUE, regions=REGIONS,
                    env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    raced, _ = hub.receive(receive("r-1"))
    calm, _ = hub.receive(receive("r-2"))
    hub.race_case = raced.id
    return hub, raced.id, calm.id


def test_a_lost_race_falls_back_to_one_by_one_and_each_caller_still_gets_its_result(
    committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]],
    racing: tuple[CaseHub, UUID, UUID],
) -> None:
    hub, raced_id, calm_id = racing
    committer = committer_for(hub, max_batch=3)
    results = together([lambda: committer.execute(forward(raced_id)), lambda: committer.execute(forward(calm_id)),
                        lambda: committer.receive(receive("r-3"))])
    assert flushes == [(3, True)]
    assert results[0].state is CaseState.FORWARDED and results[0].version == 3  # after the rival's issue
    assert results[1].state is CaseState.FORWARDED and results[1].version == 2
    assert results[2][1] is True and hub.get_case(results[2][0].id).version == 1
    stored = hub.get_case(raced_id)
    assert len(stored.issues) == 1 and stored.state is CaseState.FORWARDED


def test_an_expected_version_lost_in_the_race_is_reported_to_its_caller(
    committer_for: Callable[..., GroupCommitter], racing: tuple[CaseHub, UUID, UUID]
) -> None:
    hub, raced_id, calm_id = racing
    committer = committer_for(hub, max_batch=2)
    results = together([lambda: committer.execute(forward(raced_id, expected_version=1)),
                        lambda: committer.execute(forward(calm_id, expected_version=1))])
    assert isinstance(results[0], ConcurrentUpdate)
    assert results[1].version == 2


def test_a_closed_committer_refuses_new_commands(hub: CaseHub) -> None:
    committer = GroupCommitter(hub, max_batch=8, window=0.001)
    committer.receive(receive("r-1"))
    committer.close()
    with pytest.raises(CommitterClosed):
        committer.receive(receive("r-2"))


def test_bounds_must_make_sense(hub: CaseHub) -> None:
    with pytest.raises(ValueError):
        GroupCommitter(hub, max_batch=0)


def test_the_site_reads_its_group_commit_bounds_and_refuses_nonsense() -> None:
    settings = settings_from({"site": {"code": RECEIVING}, "store": {"group_commit_max": 64,
                                                                     "group_commit_window_ms": 2}})
    assert (settings.group_commit_max, settings.group_commit_window_ms) == (64, 2.0)
    assert settings_from({"site": {"code": RECEIVING}}).group_commit_max == 256
    for bad in ({"group_commit_max": 0}, {"group_commit_max": "many"}, {"group_commit_window_ms": -1}):
        with pytest.raises(ConfigError, match="group_commit"):
            settings_from({"site": {"code": RECEIVING}, "store": bad})


def test_a_request_id_stored_by_an_earlier_batch_returns_its_case(
    hub: CaseHub, committer_for: Callable[..., GroupCommitter], flushes: list[tuple[int, bool]]
) -> None:
    committer = committer_for(hub, max_batch=1)
    first, created = committer.receive(receive("again"))
    again, created_again = committer.receive(receive("again"))
    assert created and not created_again and again.id == first.id
    assert flushes == [(1, False), (1, True)]


def test_a_broken_flush_observer_loses_no_caller_and_stops_no_flushing(hub: CaseHub) -> None:
    def observer(_n: int, _fell: bool) -> None:
        raise RuntimeError("metrics backend down")

    committer = GroupCommitter(hub, max_batch=1, window=0.001, on_flush=observer)
    try:
        for request_id in ("r-1", "r-2"):  # the second is flushed by the same thread: it survived the first
            case, created = committer.receive(receive(request_id))
            assert created and hub.get_case(case.id).request_id == request_id
    finally:
        committer.close()
