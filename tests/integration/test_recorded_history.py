"""Stored history must keep loading: the recorded events in tests/fixtures replay into the same cases.

If this fails after a change to an event, the change broke stored data: restore the event's shape and
bump its class_version with an upcaster instead (docs/events.md). Never re-record to make it pass.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import StoredEvent

from adapters.bootstrap import build_hub
from adapters.settings import Settings
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.history import case_history
from hub.domain.case import EVENT_TYPES, STEP_EVENTS, Case
from hub.domain.lifecycle import CaseState
from tests.builders import RECEIVING

FIXTURE = Path(__file__).parent.parent / "fixtures" / "history-v1.jsonl"


def load_recording(hub: CaseHub) -> list[StoredEvent]:
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line]
    stored = [
        StoredEvent(UUID(r["originator_id"]), r["originator_version"], r["topic"], r["state"].encode("utf-8"))
        for r in rows
    ]
    hub.recorder.insert_events(stored)
    return stored


@pytest.fixture
def replayed(tmp_path: Path) -> tuple[CaseHub, list[StoredEvent]]:
    hub = build_hub(Settings(site=RECEIVING, data_dir=tmp_path))
    return hub, load_recording(hub)


def test_every_event_type_is_in_the_recording(replayed: tuple[CaseHub, list[StoredEvent]]) -> None:
    _, stored = replayed
    topics = {s.topic for s in stored}
    names = {cls.TOPIC for cls in STEP_EVENTS.values()} | {
        f"tongban.case:{n}" for n in ("CaseReceived", "IssueRaised", "ResponsibilityAssigned", "IssueResolved",
                                      "CaseRated", "BadReviewCallbackMade", "BadReviewClosed",
                                      "RectificationFeedbackRecorded")
    }
    assert names <= topics, names - topics


def test_recorded_cases_replay_to_their_recorded_outcome(replayed: tuple[CaseHub, list[StoredEvent]]) -> None:
    hub, stored = replayed
    case_ids = [s.originator_id for s in stored if s.topic == "tongban.case:CaseReceived"]
    cases = [hub.get_case(i) for i in case_ids]
    assert [(c.state, c.version) for c in cases] == [
        (CaseState.ARCHIVED, 21), (CaseState.REFUSED_AT_INTAKE, 2), (CaseState.WITHDRAWN, 3),
        (CaseState.NOT_ACCEPTED, 7),
    ]
    full = cases[0]
    assert full.committed_days == 20 and full.issues["Q1"]["responsible"] == "courier"
    assert full.rating is not None and full.rating["feedback"] == {"satisfied": True, "note": ""}
    assert full.applicant["id_number"] == "410402199003072416"
    clocks = Counter(c.code for c in CaseClocks(now=hub.now)(full))
    assert clocks["committed"] == 1 and clocks["issue"] == 1 and clocks["rectification"] == 1
    history = case_history(hub, full.id)
    assert [h.version for h in history] == list(range(1, 22))
    assert history[0].details["applicant"].endswith("2416") and "199003" not in history[0].details["applicant"]


def test_recorded_idempotency_claims_still_hold(replayed: tuple[CaseHub, list[StoredEvent]]) -> None:
    from hub.application import commands as c
    from tests.builders import receive_request

    hub, stored = replayed
    first = next(s.originator_id for s in stored if s.topic == "tongban.case:CaseReceived")
    again, created = hub.receive(c.parse(c.ReceiveCase, receive_request("recorded-1")))
    assert not created and again.id == first


# The upcasting recipe of docs/events.md, exercised on an explicit-topic aggregate like Case.
class Parcel(Aggregate):
    TOPIC = "tests.history:Parcel"

    class Event(Aggregate.Event):
        TOPIC = "tests.history:Parcel.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tests.history:Parcel.Created"

    class Sent(Event):
        TOPIC = "tests.history:Sent"
        class_version = 2
        courier: str
        channel: str  # added in v2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["channel"] = "courier"

        def apply(self, aggregate: Any) -> None:
            aggregate.route = (self.courier, self.channel)

    @event("Made", topic="tests.history:Made")
    def __init__(self, *, id: UUID) -> None:
        self.route: tuple[str, str] | None = None


def test_upcasting_recipe_loads_a_v1_event_as_v2() -> None:
    app: Application[Any] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    parcel = Parcel(id=UUID(int=7))
    app.save(parcel)
    at = datetime(2026, 11, 1).isoformat() + "+00:00"
    v1 = json.dumps({"timestamp": {"_type_": "datetime_iso", "_data_": at}, "courier": "EMS"}).encode()
    app.recorder.insert_events([StoredEvent(parcel.id, 2, "tests.history:Sent", v1)])
    assert app.repository.get(parcel.id).route == ("EMS", "courier")


def test_case_class_keeps_its_topic() -> None:
    assert Case.TOPIC == "tongban.case:Case"


def test_every_recorded_event_fits_the_schema_a_partner_is_held_to(
    replayed: tuple[CaseHub, list[StoredEvent]],
) -> None:
    """No valid old event is refused: the shared form of every recorded event (v1 ones with their derived
    identity) has a known type and version and fits its type's schema (hub/application/event_schema.py)."""
    from hub.application.partner_intake import KNOWN_VERSIONS, PartnerIntake

    hub, stored = replayed
    intake = PartnerIntake(RECEIVING)
    events = [e for s in stored if s.topic == "tongban.case:CaseReceived"
              for e in hub.get_case(s.originator_id).shared_events()]
    for shared in events:
        assert shared.type_version == KNOWN_VERSIONS[shared.type]
        intake.check_data(shared)
    assert {e.type for e in events} == set(EVENT_TYPES)
