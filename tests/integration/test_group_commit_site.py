"""Group commit behind the real gRPC CaseService, on SQLite and PostgreSQL: each caller its own answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import grpc
import pytest

from adapters.bootstrap import build_hub
from adapters.grpc.errors import error_info
from adapters.settings import Settings
from hub.application.group_commit import GroupCommitter
from hub.domain.values import IssueKind
from tests.builders import CLERK
from tests.integration.conftest import RunningSite, start_site
from tests.integration.test_grpc_site import WIRE_CLERK, receive_request
from tests.threads import together
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc

CALLERS = 12


@pytest.fixture
def batched(site_settings: Settings) -> Iterator[tuple[RunningSite, list[tuple[int, bool]]]]:
    sizes: list[tuple[int, bool]] = []
    site = start_site(site_settings, workers=CALLERS + 4, committer=lambda hub: GroupCommitter(
        hub, max_batch=CALLERS, window=60.0, on_flush=lambda n, fell: sizes.append((n, fell))))
    yield site, sizes
    site.stop()


def forward(site: RunningSite, case_id: str) -> pb.Case:
    request = svc.ForwardCaseRequest(case_id=case_id, actor=WIRE_CLERK, courier="EMS", tracking_number="1173945026718")
    return site.stub.ForwardCase(request, timeout=30).case


def test_concurrent_callers_share_one_transaction_and_each_gets_its_own_answer(
    batched: tuple[RunningSite, list[tuple[int, bool]]],
) -> None:
    site, sizes = batched
    received = together([
        lambda i=i: site.stub.ReceiveCase(receive_request(f"gc-{i}"), timeout=30) for i in range(CALLERS)
    ])
    assert sizes == [(CALLERS, False)]
    ids = [r.case.case_id for r in received]
    assert len(set(ids)) == CALLERS and all(r.created for r in received)

    twice = ids[0]
    steps = together([lambda: forward(site, twice), lambda: forward(site, twice)]
                     + [lambda case_id=case_id: forward(site, case_id) for case_id in ids[1:CALLERS - 1]])
    assert sizes == [(CALLERS, False)] * 2
    refused = [s for s in steps[:2] if isinstance(s, grpc.RpcError)]
    assert len(refused) == 1
    assert refused[0].code() is grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(refused[0])
    assert info is not None and info.reason == "ILLEGAL_STEP"
    assert all(s.state == pb.CASE_STATE_FORWARDED for s in steps if not isinstance(s, grpc.RpcError))
    for case_id in ids[: CALLERS - 1]:
        assert site.hub.get_case(UUID(case_id)).version == 2


def test_a_batch_that_loses_a_race_with_another_process_is_committed_one_by_one(
    batched: tuple[RunningSite, list[tuple[int, bool]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    site, sizes = batched
    ids = [r.case.case_id for r in together([
        lambda i=i: site.stub.ReceiveCase(receive_request(f"race-{i}"), timeout=30) for i in range(CALLERS)
    ])]
    rival = build_hub(site.settings)  # another process serving the same store
    hub_save = site.hub.save

    def save_after_rival(*objs: Any, **kwargs: Any) -> Any:
        if len(objs) > 1:
            monkeypatch.setattr(site.hub, "save", hub_save)
            case = rival.get_case(UUID(ids[0]))
            case.raise_issue(CLERK, IssueKind.OTHER, "材料缺页", site=rival.site)
            rival.save(case)
        return hub_save(*objs, **kwargs)

    monkeypatch.setattr(site.hub, "save", save_after_rival)
    steps = together([lambda case_id=case_id: forward(site, case_id) for case_id in ids])
    rival.close()
    assert sizes[-1] == (CALLERS, True)
    assert all(s.state == pb.CASE_STATE_FORWARDED for s in steps)
    assert steps[0].version == 3 and all(s.version == 2 for s in steps[1:])
    assert len(site.hub.get_case(UUID(ids[0])).issues) == 1
