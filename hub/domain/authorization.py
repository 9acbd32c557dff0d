"""Who may take which step, as data: for every action on a case, which role at which side, in which states.

One table, ``PERMISSIONS``, keyed by the stored event type the action records (``CaseForwarded``,
``CaseRated``), so a partner's event maps to its action directly. It is checked in two places and
nowhere else:

- a local command (``Case.take_step``, ``raise_issue``, ``rate``, ...): the actor's role, the side
  of the case the actor's site is on, and the case's state;
- a partner's event, before it is stored (``Case.ingest``, ``Case.from_partner``): the actor's role
  and the side of the sending site (the event's origin, which the partner's certificate vouches for).
  Role and side never change once a case is open, so they are checked strictly: a refused event is
  refused whole and nothing is stored. The *state* is not, as a rule: a partner acts on its own copy,
  concurrently with us, and the fold orders both sites' events by (Lamport, origin, seq) and lists a
  step that is illegal at its place as a conflict, identically on both sites (case_state.py). Refusing
  there would make the two sites' logs differ for good. State is checked at ingest only where a
  refusal is unambiguous: a rating of a two-site case (every event the sender could have seen is
  already here) with no service-ending event before it cannot have been legal at the sender.

Stored events are facts: replaying or refolding a case never consults this table.

Sides (the actor's site relative to the case): the receiving site (收件地), the handling site (办理地),
a co-handling site of a 多地联办 case (联办地), or outside the case. The *applicant channel* is the
role ``applicant`` at the receiving site (the window, its rating device, or the receiving site's
online service); a *supervisor* is the role ``supervisor`` at any of the case's sites. A role the
table does not name (an auditor, anything unknown) may do nothing.

The rules, and why:
- Receiving-side steps (收件, 收件不予接收, 流转) by the receiving window's clerks; handling-side steps
  (接件 through 归档) by handlers at the handling or a co-handling site: 谁办理谁负责, a step is
  attributed to the place accountable for it. Supervisors oversee and take no main-track step.
- Supplements come in through the receiving window (收受分离): a clerk for the applicant, or the
  applicant's own channel. The result's delivery is confirmed by whoever saw it delivered: the
  receiving window (pickup) or the handling place (courier, licence). Withdrawal is the applicant's
  right: asked at either place's staff or through the applicant channel.
- Issues (问题件) are raised and resolved by the staff or supervisors of any of the case's sites;
  responsibility is assigned by a supervisor only, since a place may not judge its own fault (the
  same reason 申诉复核 is not decided by the place reviewed).
- A rating (好差评) is the applicant's, given through the applicant channel or recorded by the
  receiving window's clerk at the rating device, and only once the service has ended:
  ``SERVICE_ENDED`` = the terminal states (refused at intake, not accepted, archived, withdrawn)
  and delivered (the result reached the applicant). Rating a decided case whose result is still on
  the way would rate half a service.
- A bad review is called back and closed by the place it is about (staff of that side, or its
  supervisor); the applicant's feedback on the rectification comes through the applicant channel or
  a supervisor, not from the place reviewed.
- ``system`` (the service account of a city's own window system) may do what that site's clerks
  and handlers may, and nothing that needs a person's judgement beyond that (assigning
  responsibility).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hub.domain.errors import IllegalStep, InvalidInput, NotPermitted, RuleViolation
from hub.domain.lifecycle import TERMINAL, TRANSITIONS, CaseState, Step
from hub.domain.values import LabelledEnum, Party, Role


class Side(LabelledEnum):
    """Where an actor's site stands in a case (accountability: 谁办理谁负责)."""

    RECEIVING = ("receiving", "收件地")
    HANDLING = ("handling", "办理地")
    CO_HANDLING = ("co_handling", "联办地")
    OUTSIDE = ("outside", "非本案参与地")


SERVICE_ENDED: frozenset[CaseState] = TERMINAL | {CaseState.DELIVERED}

WRONG_ROLE = "WRONG_ROLE"
WRONG_SIDE = "WRONG_SIDE"
NOT_YET_RATEABLE = "NOT_YET_RATEABLE"


@dataclass(frozen=True)
class Permission:
    """Who may take one action: (role, side) pairs, and the states it may be taken from.

    ``states`` None: any state (a case's receipt has none yet). A main-track ``step`` takes its states
    from the lifecycle table and is refused there with ILLEGAL_STEP; another action with ``states``
    is refused with ``state_reason``. ``reviewed_place_only``: besides the pairs, the actor must be on
    the side of the place a bad review is about (``check_reviewed_place``).
    """

    label: str
    who: frozenset[tuple[Role, Side]]
    states: frozenset[CaseState] | None = None
    step: Step | None = None
    state_reason: str = ""
    reviewed_place_only: bool = False

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(role for role, _side in self.who)


R, H, J = Side.RECEIVING, Side.HANDLING, Side.CO_HANDLING
CASE_SIDES = (R, H, J)
HANDLING_SIDES = (H, J)
CLERK, HANDLER, SUPERVISOR, APPLICANT, SYSTEM = (
    Role.WINDOW_CLERK, Role.HANDLER, Role.SUPERVISOR, Role.APPLICANT, Role.SYSTEM)


def who(*grants: tuple[Role, Iterable[Side]]) -> frozenset[tuple[Role, Side]]:
    """The (role, side) pairs granted; a site's window system gets what its clerks and handlers get."""
    pairs = {(role, side) for role, sides in grants for side in sides}
    pairs |= {(SYSTEM, side) for role, side in pairs if role in (CLERK, HANDLER)}
    return frozenset(pairs)


WINDOW = who((CLERK, [R]))
HANDLING_DESK = who((HANDLER, HANDLING_SIDES))
CASE_STAFF = who((CLERK, [R]), (HANDLER, HANDLING_SIDES), (SUPERVISOR, CASE_SIDES))


def _step(step: Step, pairs: frozenset[tuple[Role, Side]]) -> Permission:
    return Permission(step.label, pairs, TRANSITIONS[step].sources, step)


PERMISSIONS: dict[str, Permission] = {
    "CaseReceived": Permission("收件", WINDOW),
    "IntakeRefused": _step(Step.REFUSE_INTAKE, WINDOW),
    "CaseForwarded": _step(Step.FORWARD, WINDOW),
    "CaseSignedIn": _step(Step.SIGN, HANDLING_DESK),
    "SupplementRequested": _step(Step.REQUEST_SUPPLEMENT, HANDLING_DESK),
    "SupplementSubmitted": _step(Step.SUBMIT_SUPPLEMENT, who((CLERK, [R]), (APPLICANT, [R]))),
    "CaseNotAccepted": _step(Step.REJECT, HANDLING_DESK),
    "CaseReturned": _step(Step.RETURN, HANDLING_DESK),
    "CaseAccepted": _step(Step.ACCEPT, HANDLING_DESK),
    "CaseSuspended": _step(Step.SUSPEND, HANDLING_DESK),
    "CaseResumed": _step(Step.RESUME, HANDLING_DESK),
    "SpecialProcedureStarted": _step(Step.START_SPECIAL, HANDLING_DESK),
    "SpecialProcedureEnded": _step(Step.END_SPECIAL, HANDLING_DESK),
    "CaseDecided": _step(Step.DECIDE, HANDLING_DESK),
    "ResultDispatched": _step(Step.DISPATCH, HANDLING_DESK),
    "ResultDelivered": _step(Step.CONFIRM_DELIVERY, who((CLERK, [R]), (HANDLER, HANDLING_SIDES))),
    "CaseArchived": _step(Step.ARCHIVE, HANDLING_DESK),
    "CaseWithdrawn": _step(Step.WITHDRAW, who((CLERK, [R]), (HANDLER, HANDLING_SIDES), (APPLICANT, [R]))),
    "IssueRaised": Permission("登记问题件", CASE_STAFF),
    "ResponsibilityAssigned": Permission("责任认定", who((SUPERVISOR, CASE_SIDES))),
    "IssueResolved": Permission("问题件办结", CASE_STAFF),
    "CaseRated": Permission("评价", who((APPLICANT, [R]), (CLERK, [R])), SERVICE_ENDED,
                            state_reason=NOT_YET_RATEABLE),
    "BadReviewCallbackMade": Permission("差评回访", CASE_STAFF, reviewed_place_only=True),
    "BadReviewClosed": Permission("差评处理", CASE_STAFF, reviewed_place_only=True),
    "RectificationFeedbackRecorded": Permission(
        "整改反馈", who((APPLICANT, [R]), (CLERK, [R]), (SUPERVISOR, CASE_SIDES))),
}

# The event types whose step ends the service (what a rating must come after).
SERVICE_ENDING: frozenset[str] = frozenset(
    name for name, p in PERMISSIONS.items() if p.step is not None and TRANSITIONS[p.step].target in SERVICE_ENDED
)


def side_of(site: str, receiving_site: str, handling_site: str, co_handling_sites: Iterable[str]) -> Side:
    """Which side of a case ``site`` is on."""
    if site == receiving_site:
        return Side.RECEIVING
    if site == handling_site:
        return Side.HANDLING
    if site in co_handling_sites:
        return Side.CO_HANDLING
    return Side.OUTSIDE


def permission(action: str) -> Permission:
    """The table's entry for an event type; an unknown type is bad input, not a crash."""
    found = PERMISSIONS.get(action)
    if found is None:
        raise InvalidInput.one("type", f"未知的事件类型 {action}")
    return found


def authorize(action: str, actor_role: Role | str, side: Side, state: CaseState | None) -> None:
    """Raise unless ``actor_role`` at ``side`` may take ``action`` from ``state`` (None: skip the state).

    Wrong role (NotPermitted WRONG_ROLE) is checked first, then wrong side (WRONG_SIDE), then the
    state: ILLEGAL_STEP for a main-track step, the action's own reason (NOT_YET_RATEABLE) otherwise.
    """
    rule = permission(action)
    role = _role(actor_role)
    meta = {"action": action, "role": role.value if role is not None else str(actor_role), "side": side.value}
    if role is None or role not in rule.roles:
        allowed = "、".join(r.label for r in Role if r in rule.roles)
        shown = role.label if role is not None else str(actor_role)
        raise NotPermitted(f"「{rule.label}」不能由{shown}办理（可办理：{allowed}）", WRONG_ROLE, meta)
    if (role, side) not in rule.who:
        allowed = "、".join(s.label for s in Side if (role, s) in rule.who)
        raise NotPermitted(
            f"「{rule.label}」须由{allowed}的{role.label}办理，当前操作人属于{side.label}", WRONG_SIDE, meta)
    if state is None or rule.states is None or state in rule.states:
        return
    if rule.step is not None:
        raise IllegalStep(state.value, state.label, rule.step.value, rule.step.label)
    raise RuleViolation(
        rule.state_reason, f"服务尚未结束（当前状态「{state.label}」），暂不能{rule.label}",
        {"action": action, "state": state.value},
    )


def check_reviewed_place(action: str, side: Side, about: Party) -> None:
    """A bad review is handled by the place it is about (谁办理谁负责): NotPermitted WRONG_SIDE otherwise."""
    rule = permission(action)
    if not rule.reviewed_place_only:
        return
    sides = (Side.RECEIVING,) if about is Party.RECEIVING_PLACE else HANDLING_SIDES
    if side not in sides:
        raise NotPermitted(
            f"该差评针对{about.label}，「{rule.label}」须由{'、'.join(s.label for s in sides)}办理，"
            f"当前操作人属于{side.label}",
            WRONG_SIDE, {"action": action, "side": side.value, "about": about.value},
        )


__all__ = [
    "NOT_YET_RATEABLE", "PERMISSIONS", "SERVICE_ENDED", "SERVICE_ENDING", "WRONG_ROLE", "WRONG_SIDE", "Permission",
    "Side", "authorize", "check_reviewed_place", "permission", "side_of",
]


def _role(value: Role | str) -> Role | None:
    """The role named, or None for anything else (a partner's data is not trusted to be a string)."""
    try:
        return Role(value)
    except (ValueError, TypeError):
        return None
