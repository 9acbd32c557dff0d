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
from tests.builders import ACTIONS, new_case, take


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
