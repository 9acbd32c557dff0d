"""Property: whatever steps a case went through, replaying its stored events rebuilds the same state."""

from __future__ import annotations

import contextlib
from typing import Any

from eventsourcing.application import Application
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.case import Case
from hub.domain.errors import HubError
from hub.domain.lifecycle import Step
from hub.domain.values import IssueKind, Party, RatingLevel, RectificationOutcome
from tests.builders import CLERK, HANDLER, new_case, take

ACTIONS: list[tuple[str, Any]] = [(f"step:{s.value}", s) for s in Step if s is not Step.RECEIVE] + [
    ("issue", lambda c: c.raise_issue(CLERK, IssueKind.OVERDUE, "超期")),
    ("assign", lambda c: c.assign_responsibility(HANDLER, f"Q{max(len(c.issues), 1)}", Party.HANDLING_PLACE, "")),
    ("resolve", lambda c: c.resolve_issue(HANDLER, f"Q{max(len(c.issues), 1)}", "已处理")),
    ("rate-bad", lambda c: c.rate(CLERK, RatingLevel.DISSATISFIED, "慢", Party.HANDLING_PLACE)),
    ("rate-good", lambda c: c.rate(CLERK, RatingLevel.VERY_SATISFIED, "", Party.RECEIVING_PLACE)),
    ("callback", lambda c: c.record_callback(HANDLER, "已回访")),
    ("close", lambda c: c.close_bad_review(HANDLER, RectificationOutcome.RECTIFIED, "已整改")),
    ("feedback", lambda c: c.record_feedback(CLERK, True, "")),
]


def state_of(case: Case) -> dict[str, Any]:
    return {k: v for k, v in vars(case).items() if k != "_pending_events"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), max_size=30))
def test_replaying_stored_events_rebuilds_the_same_case(actions: list[tuple[str, Any]]) -> None:
    case = new_case()
    for _name, action in actions:
        with contextlib.suppress(HubError):  # refused steps write nothing; the property covers the rest
            take(case, action) if isinstance(action, Step) else action(case)
    app: Application[Any] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(case)
    reloaded = app.repository.get(case.id)
    assert state_of(reloaded) == state_of(case)
    replayed: Any = None
    for event in app.repository.event_store.get(case.id):
        replayed = event.mutate(replayed)
    assert state_of(replayed) == state_of(case)
