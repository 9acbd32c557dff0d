"""Property: two sites acting on their own copies of a case, exchanging events late and in any
interleaving, end with the same events, the same state, the same conflicts and the same chains."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.case import Case
from hub.domain.errors import HubError
from hub.domain.lifecycle import Step
from hub.domain.values import IssueKind, Party, RatingLevel
from tests.builders import CLERK, DETAILS, HANDLER, HANDLING, RECEIVING, new_case

RECEIVING_STEPS = [Step.FORWARD, Step.REFUSE_INTAKE, Step.SUBMIT_SUPPLEMENT, Step.CONFIRM_DELIVERY, Step.WITHDRAW]
HANDLING_STEPS = [Step.SIGN, Step.REQUEST_SUPPLEMENT, Step.ACCEPT, Step.RETURN, Step.DECIDE, Step.DISPATCH,
                  Step.ARCHIVE, Step.WITHDRAW, Step.SUSPEND, Step.RESUME]


def act(case: Case, site: str, choice: int) -> None:
    actor = CLERK if site == RECEIVING else HANDLER
    steps = RECEIVING_STEPS if site == RECEIVING else HANDLING_STEPS
    with contextlib.suppress(HubError):
        if choice < len(steps):
            step = steps[choice]
            case.take_step(step, actor, site=site, **dict(DETAILS.get(step, {})))
        elif choice == len(steps):
            case.raise_issue(actor, IssueKind.DISPUTE, "争议", site=site)
        else:
            case.rate(actor, RatingLevel.DISSATISFIED, "慢", Party.HANDLING_PLACE, site=site)


def fingerprint(case: Case) -> tuple[Any, ...]:
    return (
        case.state, case.committed_days, case.outcome, sorted(case.issues), case.rating,
        [e.event_id for e in case.shared_events()], case.conflicts,
        {o: case.chain_head(o) for o in sorted(case.chains)}, case.marks,
    )


class Link:
    """What each side has not yet delivered to the other, per origin in seq order."""

    def __init__(self, a: Case, b: Case) -> None:
        self.sides = {RECEIVING: a, HANDLING: b}
        self.sent = {RECEIVING: 1, HANDLING: 0}  # b was created from a's first event

    def deliver(self, origin: str, count: int) -> None:
        source = self.sides[origin]
        target = self.sides[HANDLING if origin == RECEIVING else RECEIVING]
        pending = source.shared_events(origin)[self.sent[origin]:]
        for event in pending[:count]:
            target.ingest(event)
            self.sent[origin] += 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["act-a", "act-b", "send-a", "send-b"]), st.integers(0, 11)), max_size=40))
def test_sites_converge_whatever_the_interleaving(moves: list[tuple[str, int]]) -> None:
    a = new_case()
    b = Case.from_partner(a.shared_events()[0])
    link = Link(a, b)
    for move, n in moves:
        if move == "act-a":
            act(a, RECEIVING, n % 7)
        elif move == "act-b":
            act(b, HANDLING, n % 12)
        else:
            link.deliver(RECEIVING if move == "send-a" else HANDLING, n % 3 + 1)
    link.deliver(RECEIVING, 10_000)
    link.deliver(HANDLING, 10_000)
    assert fingerprint(a) == fingerprint(b)


def test_concurrent_withdraw_and_accept_settle_the_same_way_on_both_sites() -> None:
    a = new_case()
    b = Case.from_partner(a.shared_events()[0])
    link = Link(a, b)
    a.take_step(Step.FORWARD, CLERK, site=RECEIVING)
    link.deliver(RECEIVING, 1)
    b.take_step(Step.SIGN, HANDLER, site=HANDLING)
    link.deliver(HANDLING, 1)
    a.take_step(Step.WITHDRAW, CLERK, site=RECEIVING, reason="申请人撤回")  # concurrently...
    b.take_step(Step.ACCEPT, HANDLER, site=HANDLING, committed_days=5)  # ...with this
    link.deliver(RECEIVING, 5)
    link.deliver(HANDLING, 5)
    assert fingerprint(a) == fingerprint(b)
    # Both events have Lamport 4; origin 320500 sorts first: accepted, then withdrawn.
    assert a.state.value == "withdrawn" and a.conflicts == []
