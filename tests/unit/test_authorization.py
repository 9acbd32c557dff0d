"""Who may take which step: the table walked exhaustively against an independent statement of the rules,
then the same table seen through a case's commands and through a partner's events at ingest."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eventsourcing.application import Application
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.application import commands as c
from hub.application.case_sharing import CaseSharing
from hub.domain.authorization import PERMISSIONS, Side, authorize
from hub.domain.case import EVENT_TYPES, STEP_EVENTS, Case
from hub.domain.errors import HubError, IllegalStep, NotPermitted, RuleViolation
from hub.domain.lifecycle import TRANSITIONS, CaseState, Step
from hub.domain.shared import SharedEvent
from hub.domain.values import Actor, IssueKind, Mode, Party, RatingLevel, RectificationOutcome, Role
from tests.builders import (
    APPLICANT,
    CLERK,
    DETAILS,
    HANDLER,
    HANDLING,
    OTHER,
    PATHS,
    RECEIVING,
    SUPERVISOR,
    actor_data,
    case_in,
    new_case,
    receive_request,
    take,
)
from tests.memory_sites import hub, relay, step

# ---------------------------------------------------------------------- the rules, stated independently
# Written as "what each role does" (the table is written as "who may take each action").
STEP_OF = {cls.__name__: s for s, cls in STEP_EVENTS.items()}
WINDOW_WORK = {"CaseReceived", "IntakeRefused", "CaseForwarded"}
APPLICANTS_PART = {"SupplementSubmitted", "CaseWithdrawn", "CaseRated", "RectificationFeedbackRecorded"}
EITHER_PLACE_STAFF = {"ResultDelivered", "CaseWithdrawn", "IssueRaised", "IssueResolved", "BadReviewCallbackMade",
                      "BadReviewClosed"}
OVERSIGHT = {"IssueRaised", "ResponsibilityAssigned", "IssueResolved", "BadReviewCallbackMade", "BadReviewClosed",
             "RectificationFeedbackRecorded"}
HANDLERS_OWN = {name for name in STEP_OF} - WINDOW_WORK - {"SupplementSubmitted", "ResultDelivered", "CaseWithdrawn"}
SERVICE_OVER = {CaseState.REFUSED_AT_INTAKE, CaseState.NOT_ACCEPTED, CaseState.DELIVERED, CaseState.ARCHIVED,
                CaseState.WITHDRAWN}
ROLES: list[Role | str] = [*Role, "auditor", "", "root"]


def may(role: Role | str, side: Side, action: str) -> bool:
    """Whether ``role`` at ``side`` may take ``action`` at all (any state)."""
    at_window, on_case = side is Side.RECEIVING, side is not Side.OUTSIDE
    at_handling_place = side in (Side.HANDLING, Side.CO_HANDLING)
    if role == Role.SYSTEM:  # a window system acts as its site's clerks and handlers
        return may(Role.WINDOW_CLERK, side, action) or may(Role.HANDLER, side, action)
    if role == Role.WINDOW_CLERK:
        return at_window and (action in WINDOW_WORK | APPLICANTS_PART | EITHER_PLACE_STAFF)
    if role == Role.HANDLER:
        return at_handling_place and action in HANDLERS_OWN | EITHER_PLACE_STAFF
    if role == Role.SUPERVISOR:
        return on_case and action in OVERSIGHT
    if role == Role.APPLICANT:
        return at_window and action in APPLICANTS_PART
    return False  # auditors and anything unknown


def expected(role: Role | str, side: Side, action: str, state: CaseState | None) -> str | None:
    """The reason code the table must answer with, or None if allowed."""
    if not any(may(role, s, action) for s in Side):
        return "WRONG_ROLE"
    if not may(role, side, action):
        return "WRONG_SIDE"
    if state is None:
        return None
    if action in STEP_OF and state not in TRANSITIONS[STEP_OF[action]].sources:
        return "ILLEGAL_STEP"
    if action == "CaseRated" and state not in SERVICE_OVER:
        return "NOT_YET_RATEABLE"
    return None


def decision(role: Role | str, side: Side, action: str, state: CaseState | None) -> str | None:
    try:
        authorize(action, role, side, state)
    except (NotPermitted, RuleViolation) as refused:
        assert isinstance(refused, NotPermitted) == (refused.reason in ("WRONG_ROLE", "WRONG_SIDE"))
        assert refused.message and not refused.message.isascii()  # staff read Chinese
        return refused.reason
    return None


def test_the_table_covers_every_stored_event_type_and_each_step_once() -> None:
    assert set(PERMISSIONS) == set(EVENT_TYPES)
    for name, rule in PERMISSIONS.items():
        assert rule.step is STEP_OF.get(name)
    assert {r.step for r in PERMISSIONS.values() if r.step} == set(TRANSITIONS)


def test_every_role_side_action_and_state() -> None:
    walked, wrong = 0, []
    for action in PERMISSIONS:
        for role in ROLES:
            for side in Side:
                for state in [*CaseState, None]:
                    walked += 1
                    got, want = decision(role, side, action, state), expected(role, side, action, state)
                    if got != want:
                        wrong.append((action, role, side.value, state and state.value, got, want))
    assert wrong == []
    assert walked == len(PERMISSIONS) * len(ROLES) * len(Side) * (len(CaseState) + 1)


def test_an_auditor_may_do_nothing_and_an_unknown_type_is_bad_input() -> None:
    for action in PERMISSIONS:
        for side in Side:
            assert decision("auditor", side, action, None) == "WRONG_ROLE"
    with pytest.raises(HubError) as unknown:
        authorize("CaseTeleported", Role.HANDLER, Side.HANDLING, CaseState.RECEIVED)
    assert unknown.value.reason == "INVALID_ARGUMENT"


def test_a_supervisor_assigns_responsibility_but_takes_no_main_track_step() -> None:
    for side in (Side.RECEIVING, Side.HANDLING, Side.CO_HANDLING):
        assert decision(Role.SUPERVISOR, side, "ResponsibilityAssigned", CaseState.FORWARDED) is None
    assert decision(Role.SUPERVISOR, Side.OUTSIDE, "ResponsibilityAssigned", CaseState.FORWARDED) == "WRONG_SIDE"
    for name in STEP_OF:
        assert decision(Role.SUPERVISOR, Side.HANDLING, name, None) == "WRONG_ROLE"
    for role in (Role.WINDOW_CLERK, Role.HANDLER, Role.SYSTEM, Role.APPLICANT):
        assert decision(role, Side.HANDLING, "ResponsibilityAssigned", None) == "WRONG_ROLE"


# ---------------------------------------------------------------------- through a case's commands
CO = "440100"  # the co-handling site of the joint cases below; OTHER stays outside every case
SITE_OF = {Side.RECEIVING: RECEIVING, Side.HANDLING: HANDLING, Side.CO_HANDLING: CO, Side.OUTSIDE: OTHER}


def joint_case_in(state: CaseState) -> Case:
    case = new_case(mode=Mode.JOINT, co_sites=[CO])
    for s in PATHS[state]:
        take(case, s)
    assert case.state is state
    return case


def someone(role: Role, side: Side) -> Actor:
    return Actor(f"{side.value}-{role.value}", role, SITE_OF[side])


@pytest.mark.parametrize("state", list(CaseState), ids=[s.value for s in CaseState])
def test_every_step_command_by_every_role_and_side(state: CaseState) -> None:
    held = joint_case_in(state)
    version = held.version
    for step_ in TRANSITIONS:
        name = STEP_EVENTS[step_].__name__
        for role in Role:
            for side in Side:
                want = expected(role, side, name, state)
                actor = someone(role, side)
                if want is None:
                    case = joint_case_in(state)
                    take(case, step_, actor)
                    assert case.state is TRANSITIONS[step_].target
                    assert case.shared_events()[-1].actor["role"] == role.value
                    continue
                with pytest.raises((NotPermitted, IllegalStep)) as refused:
                    take(held, step_, actor)
                assert refused.value.reason == want, (step_, role, side)
    assert held.version == version  # no refusal recorded anything


@pytest.mark.parametrize("state", list(CaseState), ids=[s.value for s in CaseState])
def test_rating_and_raising_issues_by_every_role_and_side(state: CaseState) -> None:
    for role in Role:
        for side in Side:
            actor = someone(role, side)
            for action, command in (
                ("CaseRated", lambda case, a=actor: case.rate(a, RatingLevel.SATISFIED, "", Party.HANDLING_PLACE,
                                                              site=a.site)),
                ("IssueRaised", lambda case, a=actor: case.raise_issue(a, IssueKind.OTHER, "x", site=a.site)),
            ):
                case = joint_case_in(state)
                version = case.version
                want = expected(role, side, action, state)
                if want is None:
                    command(case)
                    assert case.version == version + 1
                else:
                    with pytest.raises((NotPermitted, RuleViolation)) as refused:
                        command(case)
                    assert refused.value.reason == want, (action, role, side)
                    assert case.version == version


def test_a_rating_before_the_service_ended_is_refused_locally() -> None:
    case = case_in(CaseState.RESULT_IN_TRANSIT)
    with pytest.raises(RuleViolation) as early:
        case.rate(APPLICANT, RatingLevel.VERY_SATISFIED, "", Party.HANDLING_PLACE, site=RECEIVING)
    assert early.value.reason == "NOT_YET_RATEABLE" and not isinstance(early.value, NotPermitted)
    assert case.rating is None
    take(case, Step.CONFIRM_DELIVERY)
    case.rate(APPLICANT, RatingLevel.VERY_SATISFIED, "", Party.HANDLING_PLACE, site=RECEIVING)
    assert case.rating is not None and case.rating["score"] == 5


def rated_badly(about: Party) -> Case:
    case = joint_case_in(CaseState.DELIVERED)
    case.rate(APPLICANT, RatingLevel.VERY_DISSATISFIED, "太慢", about, site=RECEIVING)
    return case


TRACK_COMMANDS: dict[str, Callable[[Case, Actor], None]] = {
    "BadReviewCallbackMade": lambda case, a: case.record_callback(a, "已回访", site=a.site),
    "BadReviewClosed": lambda case, a: case.close_bad_review(a, RectificationOutcome.RECTIFIED, "已整改",
                                                             site=a.site),
    "RectificationFeedbackRecorded": lambda case, a: case.record_feedback(a, True, "", site=a.site),
    "ResponsibilityAssigned": lambda case, a: case.assign_responsibility(a, "Q1-410400", Party.COURIER, "",
                                                                         site=a.site),
    "IssueResolved": lambda case, a: case.resolve_issue(a, "Q1-410400", "已处理", site=a.site),
}


def ready_for(action: str, about: Party) -> Case:
    """A case where ``action``'s own preconditions hold, so only who is asking decides."""
    case = rated_badly(about)
    reviewed = RECEIVING if about is Party.RECEIVING_PLACE else HANDLING
    if action in ("BadReviewClosed", "RectificationFeedbackRecorded"):
        case.record_callback(someone(Role.SUPERVISOR, Side.RECEIVING if reviewed == RECEIVING else Side.HANDLING),
                             "已回访", site=reviewed)
    if action == "RectificationFeedbackRecorded":
        case.close_bad_review(someone(Role.SUPERVISOR, Side.RECEIVING if reviewed == RECEIVING else Side.HANDLING),
                              RectificationOutcome.EXPLAINED, "已解释", site=reviewed)
    case.raise_issue(CLERK, IssueKind.LOST_PARCEL, "丢件", site=RECEIVING)
    if action == "IssueResolved":
        case.assign_responsibility(SUPERVISOR, "Q1-410400", Party.COURIER, "", site=HANDLING)
    return case


@pytest.mark.parametrize("about", [Party.RECEIVING_PLACE, Party.HANDLING_PLACE])
@pytest.mark.parametrize("action", list(TRACK_COMMANDS))
def test_track_commands_by_every_role_and_side(action: str, about: Party) -> None:
    reviewed_sides = {Side.RECEIVING} if about is Party.RECEIVING_PLACE else {Side.HANDLING, Side.CO_HANDLING}
    for role in Role:
        for side in Side:
            case = ready_for(action, about)
            version = case.version
            want = expected(role, side, action, case.state)
            if want is None and action in ("BadReviewCallbackMade", "BadReviewClosed") and side not in reviewed_sides:
                want = "WRONG_SIDE"  # a bad review is handled by the place it is about
            if want is None:
                TRACK_COMMANDS[action](case, someone(role, side))
                assert case.version == version + 1
            else:
                with pytest.raises(NotPermitted) as refused:
                    TRACK_COMMANDS[action](case, someone(role, side))
                assert refused.value.reason == want, (role, side)
                assert case.version == version


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_a_receipt_needs_the_window_or_its_system(role: Role) -> None:
    a = hub(RECEIVING)
    request = receive_request(actor={"staff_id": "x", "role": role.value, "site": RECEIVING})
    if role in (Role.WINDOW_CLERK, Role.SYSTEM):
        assert a.receive(c.parse(c.ReceiveCase, request))[1]
        return
    with pytest.raises(NotPermitted) as refused:
        a.receive(c.parse(c.ReceiveCase, request))
    assert refused.value.reason == "WRONG_ROLE" and stored(a) == 0


# ---------------------------------------------------------------------- a partner's events at ingest
def forged(like: SharedEvent, type_: str, actor: Actor, data: dict[str, Any]) -> SharedEvent:
    """An event the partner's own site would never have let its staff record."""
    return dataclasses.replace(like, type=type_, actor=actor_data(actor), data=data)


def stored(h: Any) -> int:
    return int(h.recorder.max_notification_id() or 0)


def test_a_handling_step_sent_by_the_receiving_side_is_refused_whole_and_nothing_is_stored() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    relay(a, b)
    step(a, c.RaiseIssue, case.id, actor_data(CLERK), kind="dispute", description="争议")  # a valid seq 3
    issue = a.get_case(case.id).shared_events(RECEIVING)[-1]
    sign = forged(dataclasses.replace(issue, seq=4, lamport=issue.lamport + 1, event_id=str(uuid.uuid4())),
                  "CaseSignedIn", Actor("PDS-H", Role.HANDLER, RECEIVING), {"details": {}})
    before = stored(b)
    with pytest.raises(NotPermitted) as refused:
        CaseSharing(b).ingest(RECEIVING, [issue, sign])
    assert refused.value.reason == "WRONG_SIDE" and refused.value.metadata["side"] == "receiving"
    assert stored(b) == before and b.get_case(case.id).last_seq(RECEIVING) == 2  # the valid one neither

    as_clerk = dataclasses.replace(sign, seq=3, actor=actor_data(CLERK))
    with pytest.raises(NotPermitted) as by_role:
        CaseSharing(b).ingest(RECEIVING, [as_clerk])
    assert by_role.value.reason == "WRONG_ROLE" and stored(b) == before
    assert CaseSharing(b).ingest(RECEIVING, [issue])[0].stored_through == 3  # the valid event alone is fine


def test_a_receipt_from_a_partner_needs_the_window() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    received = a.get_case(case.id).shared_events()[0]
    by_applicant = dataclasses.replace(received, actor=actor_data(APPLICANT))
    with pytest.raises(NotPermitted) as refused:
        CaseSharing(b).ingest(RECEIVING, [by_applicant])
    assert refused.value.reason == "WRONG_ROLE" and stored(b) == 0


def delivered_between(a: Any, b: Any) -> Any:
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    relay(a, b)
    for command, fields in ((c.SignCase, {}), (c.AcceptCase, {"committed_days": 10}),
                            (c.DecideCase, {"outcome": "approved"}),
                            (c.DispatchResult, {"method": "electronic_licence", "licence_reference": "DZZZ-1"})):
        step(b, command, case.id, actor_data(HANDLER), **fields)
    relay(b, a)
    return case


def test_a_rating_before_delivery_is_refused_at_ingest_and_after_delivery_arrives() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    case = delivered_between(a, b)  # the result is on its way: not delivered yet
    with pytest.raises(RuleViolation) as locally:
        step(a, c.RateCase, case.id, actor_data(APPLICANT), score=5, about="handling_place")
    assert locally.value.reason == "NOT_YET_RATEABLE"
    last = a.get_case(case.id).shared_events(RECEIVING)[-1]
    early = forged(dataclasses.replace(last, seq=last.seq + 1, lamport=a.get_case(case.id).lamport + 1,
                                       event_id=str(uuid.uuid4())),
                   "CaseRated", APPLICANT, {"score": 5, "reason": "", "about": "handling_place"})
    before = stored(b)
    with pytest.raises(RuleViolation) as at_ingest:
        CaseSharing(b).ingest(RECEIVING, [early])
    assert at_ingest.value.reason == "NOT_YET_RATEABLE" and stored(b) == before
    assert b.get_case(case.id).rating is None

    step(a, c.ConfirmDelivery, case.id, actor_data(CLERK), received_by="王建国")
    step(a, c.RateCase, case.id, actor_data(APPLICANT), score=2, reason="慢", about="handling_place")
    relay(a, b)
    rating = b.get_case(case.id).rating
    assert rating is not None and rating["score"] == 2
    step(b, c.RecordCallback, case.id, actor_data(HANDLER), note="已回访")  # the reviewed place answers
    relay(b, a)
    assert a.get_case(case.id).rating["callback_done"]  # type: ignore[index]


def test_a_callback_from_the_place_not_reviewed_is_refused_at_ingest() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    case = delivered_between(a, b)
    step(a, c.ConfirmDelivery, case.id, actor_data(CLERK), received_by="王建国")
    step(a, c.RateCase, case.id, actor_data(APPLICANT), score=1, reason="态度差", about="receiving_place")
    relay(a, b)
    theirs = b.get_case(case.id)
    last = theirs.shared_events(HANDLING)[-1]
    after_last = dataclasses.replace(last, seq=last.seq + 1, lamport=theirs.lamport + 1, event_id=str(uuid.uuid4()))
    callback = forged(after_last, "BadReviewCallbackMade", HANDLER, {"note": "替收件地回访"})
    before = stored(a)
    with pytest.raises(NotPermitted) as refused:
        CaseSharing(a).ingest(HANDLING, [callback])
    assert refused.value.reason == "WRONG_SIDE" and stored(a) == before


def test_a_joint_cases_rating_is_left_to_the_fold_when_the_delivery_may_not_have_arrived() -> None:
    """Three sites: the co-handling site confirmed delivery and the receiving site rated; the handling
    site gets the rating first. Not refused: the delivery is in the sender's past but not here yet."""
    r = new_case(mode=Mode.JOINT, co_sites=[CO])
    h, j = Case.from_partner(r.shared_events()[0]), Case.from_partner(r.shared_events()[0])
    take(r, Step.FORWARD)
    for other in (h, j):
        other.ingest(r.shared_events(RECEIVING)[-1])
    co_handler = Actor("CO-1", Role.HANDLER, CO)
    for s in (Step.SIGN, Step.ACCEPT, Step.DECIDE, Step.DISPATCH, Step.CONFIRM_DELIVERY):
        j.take_step(s, co_handler, site=CO, **dict(DETAILS.get(s, {})))
    for event in j.shared_events(CO):
        r.ingest(event)
    assert r.state is CaseState.DELIVERED
    r.rate(APPLICANT, RatingLevel.SATISFIED, "", Party.HANDLING_PLACE, site=RECEIVING)
    h.ingest(r.shared_events(RECEIVING)[-1])  # before any of the co-handling site's events
    for event in j.shared_events(CO):
        h.ingest(event)
    assert h.state is CaseState.DELIVERED and h.rating == r.rating and h.conflicts == r.conflicts == []


def test_stored_events_are_facts_and_are_never_authorized_again() -> None:
    """A rating stored right after receipt (as the hub allowed before the table) still loads and folds."""
    case = new_case()
    case._record(Case.CaseRated, CLERK, RECEIVING, score=5, reason="", about="handling_place")
    app: Application[Any] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(case)
    again = app.repository.get(case.id)
    assert again.rating is not None and again.rating["score"] == 5 and again.state is CaseState.RECEIVED


# ---------------------------------------------------------------------- what the sender allowed, we accept
ONWARD = {Step.FORWARD, Step.SIGN, Step.SUBMIT_SUPPLEMENT, Step.ACCEPT, Step.RESUME, Step.END_SPECIAL, Step.DECIDE,
          Step.DISPATCH, Step.CONFIRM_DELIVERY, Step.ARCHIVE}


def acts(case: Case, site: str, forward: bool) -> list[Callable[[], None]]:
    """What the people at ``site`` might try (each refused or not by the case): main-track steps that
    move the case on, or (``forward`` False) the rest: endings, issues, ratings and bad reviews."""
    mine = Side.RECEIVING if site == RECEIVING else Side.HANDLING
    out: list[Callable[[], None]] = []
    for actor in (someone(role, mine) for role in Role):
        steps = [s for s in TRANSITIONS if (s in ONWARD) == forward]
        out += [lambda a=actor, s=s: case.take_step(s, a, site=site, **dict(DETAILS.get(s, {}))) for s in steps]
        if forward:
            continue
        out += [
            lambda a=actor: case.raise_issue(a, IssueKind.DISPUTE, "争议", site=site) and None,
            lambda a=actor: case.assign_responsibility(a, next(iter(case.issues), "Q0"), Party.COURIER, "", site=site),
            lambda a=actor: case.resolve_issue(a, next(iter(case.issues), "Q0"), "已处理", site=site),
            lambda a=actor: case.rate(a, RatingLevel.DISSATISFIED, "慢", Party.HANDLING_PLACE, site=site),
            lambda a=actor: case.record_callback(a, "已回访", site=site),
            lambda a=actor: case.close_bad_review(a, RectificationOutcome.RECTIFIED, "已整改", site=site),
            lambda a=actor: case.record_feedback(a, True, "", site=site),
        ]
    return out


def act(case: Case, site: str, choice: int) -> None:
    """Take one of the actions the case lets the site take, each equally likely (the first to succeed in
    an order drawn from ``choice``): mostly a step that moves the case on, one time in four anything else."""
    options = acts(case, site, forward=choice % 4 != 0)
    random.Random(choice).shuffle(options)
    for option in options:
        with contextlib.suppress(HubError):
            option()
            return


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["act-a", "act-b", "send-a", "send-b"]), st.integers(0, 400)),
                max_size=60))
def test_whatever_a_site_let_its_own_people_do_its_partner_accepts(moves: list[tuple[str, int]]) -> None:
    """Ingest never refuses an event its sender's own check allowed, whatever the interleaving."""
    a = new_case()
    b = Case.from_partner(a.shared_events()[0])
    sides, sent = {RECEIVING: a, HANDLING: b}, {RECEIVING: 1, HANDLING: 0}
    for move, n in [*moves, ("send-a", 10_000), ("send-b", 10_000), ("send-a", 10_000)]:
        if move.startswith("act"):
            site = RECEIVING if move == "act-a" else HANDLING
            act(sides[site], site, n)
            continue
        origin = RECEIVING if move == "send-a" else HANDLING
        target = sides[HANDLING if origin == RECEIVING else RECEIVING]
        for event in sides[origin].shared_events(origin)[sent[origin]:][: n if n >= 10_000 else n % 4 + 1]:
            target.ingest(event)  # raises if refused: the property
            sent[origin] += 1
    assert [e.event_id for e in a.shared_events()] == [e.event_id for e in b.shared_events()]
    assert a.state == b.state and a.rating == b.rating and a.conflicts == b.conflicts
