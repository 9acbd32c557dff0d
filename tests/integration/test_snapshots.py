"""Case snapshots on SQLite and PostgreSQL: a case loaded from a snapshot is the case its events give."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapters.bootstrap import build_hub
from adapters.settings import PostgresSettings, Settings
from audit.ledger import CheckpointLedger
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.domain.case import Case
from hub.domain.lifecycle import CaseState
from tests.builders import CLERK, HANDLER, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub as memory_hub
from tests.memory_sites import relay, step


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    base = Settings(site=RECEIVING, data_dir=tmp_path / "data", snapshot_interval=2)
    if request.param == "sqlite":
        return base
    postgres: PostgresSettings = request.getfixturevalue("postgres_schema")
    return replace(base, store="postgres", postgres=postgres)


def state(case: Case) -> dict[str, Any]:
    return dict(vars(case))


def test_a_case_restored_from_snapshots_is_identical_to_its_events_folded(settings: Settings) -> None:
    snapshotting, plain = build_hub(settings), build_hub(replace(settings, snapshot_interval=0))
    partner = memory_hub("320500")
    try:
        case, _ = snapshotting.receive(c.parse(c.ReceiveCase, receive_request()))
        step(snapshotting, c.ForwardCase, case.id, actor_data(CLERK), courier="EMS", tracking_number="1173945026718")
        relay(snapshotting, partner)
        step(partner, c.SignCase, case.id, actor_data(HANDLER))
        step(partner, c.RequestSupplement, case.id, actor_data(HANDLER), missing_materials=["参保缴费凭证"])
        # meanwhile, before the partner's events arrive, the window raises an issue: they arrive out of order
        step(snapshotting, c.RaiseIssue, case.id, actor_data(CLERK), kind="lost_parcel", description="材料丢失")
        relay(partner, snapshotting)
        step(snapshotting, c.SubmitSupplement, case.id, actor_data(CLERK), materials=[{"name": "参保缴费凭证"}])
        relay(snapshotting, partner)
        step(partner, c.AcceptCase, case.id, actor_data(HANDLER), committed_days=10)
        relay(partner, snapshotting)

        assert snapshotting.snapshots is not None
        taken = list(snapshotting.snapshots.get(case.id))
        assert len(taken) >= 3
        loaded, folded = snapshotting.get_case(case.id), plain.get_case(case.id)
        assert loaded.state is CaseState.IN_REVIEW and loaded.version == folded.version
        assert state(loaded) == state(folded)
        for snapshot in taken:  # every snapshot on its own is the case at its version
            at_version = plain.repository.get(case.id, version=snapshot.originator_version)
            assert state(snapshot.mutate(None)) == state(at_version)
        step(snapshotting, c.RaiseIssue, case.id, actor_data(CLERK), kind="other", description="补充说明")
        assert state(plain.get_case(case.id)) == state(snapshotting.get_case(case.id))
    finally:
        for hub in (snapshotting, plain):
            hub.close()


def test_the_checkpoint_ledger_is_snapshotted_too(settings: Settings) -> None:
    snapshotting, plain = build_hub(settings), build_hub(replace(settings, snapshot_interval=0))
    try:
        ledger = CheckpointLedger.open(RECEIVING)
        for position in range(1, 6):
            ledger.record(signed={"checkpoint": {"position": position}, "countersignatures": []})
            snapshotting.save(ledger)
        assert snapshotting.snapshots is not None and list(snapshotting.snapshots.get(ledger.id))
        loaded, folded = snapshotting.find(ledger.id, CheckpointLedger), plain.find(ledger.id, CheckpointLedger)
        assert loaded is not None and folded is not None
        assert vars(loaded) == vars(folded) and loaded.last_position == 5
    finally:
        for hub in (snapshotting, plain):
            hub.close()


def test_without_an_interval_no_snapshots_are_kept(tmp_path: Path) -> None:
    hub: CaseHub = build_hub(Settings(site=RECEIVING, data_dir=tmp_path / "data", snapshot_interval=0))
    try:
        assert hub.snapshots is None
    finally:
        hub.close()
