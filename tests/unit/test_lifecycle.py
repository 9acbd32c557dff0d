"""Every allowed and every forbidden (state, step) pair, table-driven from the lifecycle table."""

from __future__ import annotations

import pytest

from hub.domain.errors import IllegalStep, NotPermitted, RuleViolation
from hub.domain.lifecycle import TERMINAL, TRANSITIONS, CaseState, Step
from hub.domain.values import Actor, Mode, Role
from tests.builders import CLERK, HANDLER, HANDLING, OUTSIDER, PATHS, RECEIVING, case_in, new_case, take

MAIN_STEPS = [s for s in Step if s is not Step.RECEIVE]
PAIRS = [(state, step) for state in CaseState for step in MAIN_STEPS]


def test_every_state_is_reachable_and_every_step_is_in_the_table() -> None:
    assert set(PATHS) == set(CaseState)
    assert set(TRANSITIONS) == set(MAIN_STEPS)


@pytest.mark.parametrize(("state", "step"), PAIRS, ids=[f"{s.value}-{t.value}" for s, t in PAIRS])
def test_step_from_state(state: CaseState, step: Step) -> None:
    case = case_in(state)
    version = case.version
    case.collect_events()
    if state in TRANSITIONS[step].sources:
        take(case, step)
        assert case.state is TRANSITIONS[step].target
        assert case.version == version + 1
    else:
        with pytest.raises(IllegalStep) as refused:
            take(case, step)
        assert refused.value.state == state.value and refused.value.step == step.value
        assert state.label in refused.value.message and step.label in refused.value.message
        assert case.version == version and case.collect_events() == []


def test_terminal_states_allow_no_main_step() -> None:
    for state in TERMINAL:
        assert not any(state in t.sources for t in TRANSITIONS.values())


@pytest.mark.parametrize("step", [Step.SIGN, Step.ACCEPT])
def test_handling_steps_need_handling_site_staff(step: Step) -> None:
    case = case_in(CaseState.FORWARDED if step is Step.SIGN else CaseState.PENDING_ACCEPTANCE)
    at_the_window = Actor("PDS-9", Role.HANDLER, RECEIVING)
    for wrong, reason in ((CLERK, "WRONG_ROLE"), (OUTSIDER, "WRONG_SIDE"), (at_the_window, "WRONG_SIDE")):
        with pytest.raises(NotPermitted) as refused:
            take(case, step, wrong)
        assert refused.value.reason == reason


def test_forward_needs_receiving_site_staff() -> None:
    for wrong, reason in ((HANDLER, "WRONG_ROLE"), (Actor("SZ-9", Role.WINDOW_CLERK, HANDLING), "WRONG_SIDE")):
        with pytest.raises(NotPermitted) as refused:
            take(new_case(), Step.FORWARD, wrong)
        assert refused.value.reason == reason


def test_supplement_is_requested_once() -> None:
    case = case_in(CaseState.AWAITING_SUPPLEMENT)
    take(case, Step.SUBMIT_SUPPLEMENT)
    with pytest.raises(RuleViolation) as refused:
        take(case, Step.REQUEST_SUPPLEMENT)
    assert refused.value.reason == "SUPPLEMENT_ONCE"


def test_committed_deadline_may_not_exceed_legal_limit() -> None:
    case = case_in(CaseState.PENDING_ACCEPTANCE)
    with pytest.raises(RuleViolation) as refused:
        case.take_step(Step.ACCEPT, HANDLER, site=HANDLER.site, committed_days=21)
    assert refused.value.reason == "COMMITMENT_EXCEEDS_LEGAL_LIMIT"
    case.take_step(Step.ACCEPT, HANDLER, site=HANDLER.site, committed_days=20)
    assert case.committed_days == 20


def test_accept_without_days_takes_the_catalogue_commitment() -> None:
    case = case_in(CaseState.PENDING_ACCEPTANCE)
    case.take_step(Step.ACCEPT, HANDLER, site=HANDLER.site)
    assert case.committed_days == 15


def test_joint_case_has_joint_legal_limit_and_co_sites() -> None:
    case = new_case(mode=Mode.JOINT, co_sites=["330100"])
    assert case.item["legal_days"] == 45
    for step in (Step.FORWARD, Step.SIGN):
        take(case, step)
    case.take_step(Step.ACCEPT, OUTSIDER, site=OUTSIDER.site, committed_days=45)  # a co-handling site may act
    assert case.state is CaseState.IN_REVIEW


def test_joint_mode_needs_partners() -> None:
    with pytest.raises(RuleViolation, match="联办地"):
        new_case(mode=Mode.JOINT)


def test_denial_needs_a_reason_and_dispatch_needs_a_reference() -> None:
    case = case_in(CaseState.IN_REVIEW)
    with pytest.raises(RuleViolation, match="理由"):
        case.take_step(Step.DECIDE, HANDLER, site=HANDLER.site, outcome="denied", reason="")
    case.take_step(Step.DECIDE, HANDLER, site=HANDLER.site, outcome="denied", reason="不符合条件")
    with pytest.raises(RuleViolation, match="证照编号"):
        case.take_step(Step.DISPATCH, HANDLER, site=HANDLER.site, method="electronic_licence", licence_reference="")
