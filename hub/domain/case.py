"""The Case aggregate: one application for one item, as a stream of past-tense facts.

Commands (public methods) check the rules and then trigger exactly one event; the event's body
only mutates state, so replaying stored events never re-runs a rule. Event payloads are JSON
primitives on purpose: they are the stored schema and the audit trail, so no Python class leaks
into them. Every event carries ``actor`` (staff id, role, site); the library stamps the time.

Event topics are explicit (``tongban.case:<Name>``) so classes can move without breaking stored
history. To change an event's shape, bump its ``class_version`` and add ``upcast_vN_vN+1``; the
recorded history under tests/fixtures must keep loading (tests/integration/test_recorded_history.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import register_topic

from hub.domain.errors import RuleViolation
from hub.domain.lifecycle import TERMINAL, TRANSITIONS, CaseState, Side, Step, next_state
from hub.domain.values import (
    Actor,
    Applicant,
    IssueKind,
    Material,
    Mode,
    Outcome,
    Party,
    RatingLevel,
    RectificationOutcome,
    ResultMethod,
    Role,
    ServiceItem,
)

JOINT_LEGAL_DAYS = 45  # 多地联办: 45 working days (+15 extension) per DOMAIN.md


def actor_data(actor: Actor) -> dict[str, str]:
    return {"staff_id": actor.staff_id, "role": actor.role.value, "site": actor.site, "name": actor.name}


def actor_from(data: dict[str, str]) -> Actor:
    return Actor(data["staff_id"], Role(data["role"]), data["site"], data.get("name", ""))


class Case(Aggregate):
    TOPIC = "tongban.case:Case"

    class Event(Aggregate.Event):
        TOPIC = "tongban.case:Case.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.case:Case.Created"

    # ------------------------------------------------------------------ receipt
    @event("CaseReceived", topic="tongban.case:CaseReceived")
    def __init__(
        self,
        *,
        id: UUID,
        case_number: str,
        request_id: str,
        item: dict[str, Any],
        mode: str,
        receiving_site: str,
        handling_site: str,
        co_handling_sites: list[str],
        applicant: dict[str, str],
        materials: list[dict[str, Any]],
        note: str,
        actor: dict[str, str],
    ) -> None:
        self.case_number = case_number
        self.request_id = request_id
        self.item = item
        self.mode = Mode(mode)
        self.receiving_site = receiving_site
        self.handling_site = handling_site
        self.co_handling_sites = list(co_handling_sites)
        self.applicant = applicant
        self.materials = list(materials)
        self.note = note
        self.state = CaseState.RECEIVED
        self.committed_days: int | None = None
        self.outcome: Outcome | None = None
        self.result: dict[str, str] = {}
        self.supplement_requested = False
        self.issues: dict[str, dict[str, Any]] = {}
        self.rating: dict[str, Any] | None = None
        self.marks: list[tuple[str, datetime, str, dict[str, Any]]] = []
        self._mark(Step.RECEIVE.value, "", {})

    @classmethod
    def receive(
        cls,
        *,
        case_id: UUID,
        case_number: str,
        request_id: str,
        item: ServiceItem,
        mode: Mode,
        handling_site: str,
        co_handling_sites: list[str],
        applicant: Applicant,
        materials: list[Material],
        applicant_consent: bool,
        identity_verified: bool,
        note: str,
        actor: Actor,
    ) -> Case:
        """Open a case at the receiving window (收件). The receiving site is the actor's site."""
        if mode not in item.modes:
            raise RuleViolation(
                "MODE_NOT_OFFERED",
                f"事项「{item.name}」不支持「{mode.label}」模式",
                {"item": item.code, "mode": mode.value},
            )
        if not applicant_consent:
            raise RuleViolation("CONSENT_REQUIRED", "须取得申请人授权同意后方可代收")
        if not identity_verified:
            raise RuleViolation("IDENTITY_NOT_VERIFIED", "须完成申请人身份核验后方可收件")
        if mode is Mode.JOINT and not co_handling_sites:
            raise RuleViolation("JOINT_NEEDS_PARTNERS", "多地联办须指定至少一个联办地")
        if mode is not Mode.JOINT and co_handling_sites:
            raise RuleViolation("NOT_JOINT", "只有多地联办可以指定联办地")
        if handling_site in co_handling_sites:
            raise RuleViolation("DUPLICATE_SITE", "联办地不能与办理地相同")
        return cls(
            id=case_id,
            case_number=case_number,
            request_id=request_id,
            item={
                "code": item.code,
                "name": item.name,
                "department": item.department,
                "legal_days": JOINT_LEGAL_DAYS if mode is Mode.JOINT else item.legal_days,
                "committed_days": item.committed_days,
                "case_type": item.case_type.value,
            },
            mode=mode.value,
            receiving_site=actor.site,
            handling_site=handling_site,
            co_handling_sites=co_handling_sites,
            applicant=asdict(applicant) | {"kind": applicant.kind.value, "id_type": applicant.id_type.value},
            materials=[asdict(m) for m in materials],
            note=note,
            actor=actor_data(actor),
        )

    # ------------------------------------------------------------------ helpers
    def _mark(self, step: str, subject: str, data: dict[str, Any]) -> None:
        """Remember when a step happened: the clocks in deadlines.py are derived from these marks."""
        self.marks.append((step, self.modified_on, subject, data))

    def _advance(self, step: Step) -> None:
        self.state = next_state(self.state, step)

    @property
    def handling_sites(self) -> tuple[str, ...]:
        return (self.handling_site, *self.co_handling_sites)

    @property
    def sites(self) -> tuple[str, ...]:
        return (self.receiving_site, *self.handling_sites)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    def _check(self, step: Step, actor: Actor) -> None:
        """The state table allows the step, and the actor's site is the one accountable for it."""
        next_state(self.state, step)
        side = TRANSITIONS[step].side
        self._check_site(actor, side, step.label)

    def _check_site(self, actor: Actor, side: Side, what: str) -> None:
        allowed = {
            Side.RECEIVING: (self.receiving_site,),
            Side.HANDLING: self.handling_sites,
            Side.EITHER: self.sites,
        }[side]
        if actor.site not in allowed:
            raise RuleViolation(
                "WRONG_SITE",
                f"「{what}」须由{'、'.join(allowed)}的工作人员办理，当前操作人属于 {actor.site}",
                {"actor_site": actor.site, "allowed": ",".join(allowed)},
            )

    # ------------------------------------------------------------------ main track
    class StepTaken(Event):
        """Base of the main-track facts: each subclass is one named, stored event type."""

        TOPIC = "tongban.case:StepTaken"
        STEP: ClassVar[Step]
        details: dict[str, Any]
        actor: dict[str, str]

        def apply(self, aggregate: Any) -> None:
            aggregate._apply_step(self.STEP, self.details)

    def _apply_step(self, step: Step, details: dict[str, Any]) -> None:
        self._advance(step)
        if step is Step.REQUEST_SUPPLEMENT:
            self.supplement_requested = True
        elif step is Step.SUBMIT_SUPPLEMENT:
            self.materials.extend(details.get("materials", []))
        elif step is Step.ACCEPT:
            self.committed_days = int(details["committed_days"])
        elif step is Step.DECIDE:
            self.outcome = Outcome(details["outcome"])
        elif step is Step.DISPATCH:
            self.result = {k: str(v) for k, v in details.items()}
        self._mark(step.value, "", details)

    def take_step(self, step: Step, actor: Actor, **details: Any) -> None:
        """Take a main-track step after checking the state table, the actor's site and the step's rules."""
        if step is Step.RECEIVE:
            raise RuleViolation("ALREADY_RECEIVED", "办件已收件")
        self._check(step, actor)
        _STEP_RULES.get(step, _no_rule)(self, details)
        self.trigger_event(STEP_EVENTS[step], details=details, actor=actor_data(actor))

    # ------------------------------------------------------------------ issues (问题件)
    @event("IssueRaised", topic="tongban.case:IssueRaised")
    def _issue_raised(self, issue_id: str, kind: str, description: str, actor: dict[str, str]) -> None:
        side = Party.RECEIVING_PLACE if actor["site"] == self.receiving_site else Party.HANDLING_PLACE
        self.issues[issue_id] = {
            "kind": kind, "description": description, "responsible": None, "raised_by_party": side.value,
            "resolved": False, "resolution": "", "raised_at": self.modified_on,
        }
        self._mark("issue_raised", issue_id, {"holder": side.value})

    @event("ResponsibilityAssigned", topic="tongban.case:ResponsibilityAssigned")
    def _responsibility_assigned(self, issue_id: str, party: str, note: str, actor: dict[str, str]) -> None:
        self.issues[issue_id]["responsible"] = party
        self._mark("responsibility_assigned", issue_id, {"holder": party})

    @event("IssueResolved", topic="tongban.case:IssueResolved")
    def _issue_resolved(self, issue_id: str, resolution: str, actor: dict[str, str]) -> None:
        self.issues[issue_id].update(resolved=True, resolution=resolution)
        self._mark("issue_resolved", issue_id, {})

    def raise_issue(self, actor: Actor, kind: IssueKind, description: str) -> str:
        self._check_site(actor, Side.EITHER, "登记问题件")
        issue_id = f"Q{len(self.issues) + 1}"
        self._issue_raised(issue_id=issue_id, kind=kind.value, description=description, actor=actor_data(actor))
        return issue_id

    def assign_responsibility(self, actor: Actor, issue_id: str, party: Party, note: str) -> None:
        self._check_site(actor, Side.EITHER, "责任认定")
        issue = self._open_issue(issue_id)
        if issue["responsible"] == party.value:
            raise RuleViolation("ALREADY_ASSIGNED", f"问题件 {issue_id} 已认定由{party.label}负责")
        self._responsibility_assigned(issue_id=issue_id, party=party.value, note=note, actor=actor_data(actor))

    def resolve_issue(self, actor: Actor, issue_id: str, resolution: str) -> None:
        self._check_site(actor, Side.EITHER, "问题件办结")
        issue = self._open_issue(issue_id)
        if issue["responsible"] is None:
            raise RuleViolation("RESPONSIBILITY_FIRST", f"问题件 {issue_id} 须先认定责任方再办结")
        self._issue_resolved(issue_id=issue_id, resolution=resolution, actor=actor_data(actor))

    def _open_issue(self, issue_id: str) -> dict[str, Any]:
        issue = self.issues.get(issue_id)
        if issue is None:
            raise RuleViolation("NO_SUCH_ISSUE", f"办件没有问题件 {issue_id}", {"issue_id": issue_id})
        if issue["resolved"]:
            raise RuleViolation("ISSUE_RESOLVED", f"问题件 {issue_id} 已办结", {"issue_id": issue_id})
        return issue

    # ------------------------------------------------------------------ rating (好差评)
    @event("CaseRated", topic="tongban.case:CaseRated")
    def _rated(self, score: int, reason: str, about: str, actor: dict[str, str]) -> None:
        bad = score < 3
        self.rating = {
            "score": score, "reason": reason, "about": about, "bad_review": bad,
            "callback_done": False, "outcome": None, "feedback": None,
        }
        if bad:
            self._mark("bad_review", "rating", {"holder": about})

    @event("BadReviewCallbackMade", topic="tongban.case:BadReviewCallbackMade")
    def _callback_made(self, note: str, actor: dict[str, str]) -> None:
        assert self.rating is not None
        self.rating["callback_done"] = True

    @event("BadReviewClosed", topic="tongban.case:BadReviewClosed")
    def _bad_review_closed(self, outcome: str, note: str, actor: dict[str, str]) -> None:
        assert self.rating is not None
        self.rating["outcome"] = outcome
        self._mark("bad_review_closed", "rating", {})

    @event("RectificationFeedbackRecorded", topic="tongban.case:RectificationFeedbackRecorded")
    def _feedback_recorded(self, satisfied: bool, note: str, actor: dict[str, str]) -> None:
        assert self.rating is not None
        self.rating["feedback"] = {"satisfied": satisfied, "note": note}

    def rate(self, actor: Actor, level: RatingLevel, reason: str, about: Party) -> None:
        self._check_site(actor, Side.EITHER, "评价")
        if self.rating is not None:
            raise RuleViolation("ALREADY_RATED", "该办件已评价，一件一评")
        if level.score < 3 and not reason.strip():
            raise RuleViolation("REASON_REQUIRED", "「不满意」「非常不满意」须填写理由")
        if about not in (Party.RECEIVING_PLACE, Party.HANDLING_PLACE):
            raise RuleViolation("RATE_A_PLACE", "评价对象须为收件地或办理地")
        self._rated(score=level.score, reason=reason, about=about.value, actor=actor_data(actor))

    def record_callback(self, actor: Actor, note: str) -> None:
        review = self._bad_review(actor)
        if review["callback_done"]:
            raise RuleViolation("CALLBACK_DONE", "差评已回访")
        self._callback_made(note=note, actor=actor_data(actor))

    def close_bad_review(self, actor: Actor, outcome: RectificationOutcome, note: str) -> None:
        review = self._bad_review(actor)
        if not review["callback_done"]:
            raise RuleViolation("CALLBACK_FIRST", "差评须先回访申请人，再整改、解释或申诉")
        if review["outcome"] is not None:
            raise RuleViolation("REVIEW_CLOSED", "差评已处理完毕")
        if not note.strip():
            raise RuleViolation("NOTE_REQUIRED", "须说明整改、解释或申诉情况")
        self._bad_review_closed(outcome=outcome.value, note=note, actor=actor_data(actor))

    def record_feedback(self, actor: Actor, satisfied: bool, note: str) -> None:
        review = self._bad_review(actor, anyone=True)
        if review["outcome"] is None:
            raise RuleViolation("NOT_CLOSED_YET", "差评尚未整改、解释或申诉，不能登记反馈")
        if review["feedback"] is not None:
            raise RuleViolation("FEEDBACK_RECORDED", "已登记申请人反馈")
        self._feedback_recorded(satisfied=satisfied, note=note, actor=actor_data(actor))

    def _bad_review(self, actor: Actor, anyone: bool = False) -> dict[str, Any]:
        """The open bad review; only the place it is about handles it (谁办理谁负责)."""
        if self.rating is None or not self.rating["bad_review"]:
            raise RuleViolation("NO_BAD_REVIEW", "该办件没有待处理的差评")
        about = Party(self.rating["about"])
        side = Side.RECEIVING if about is Party.RECEIVING_PLACE else Side.HANDLING
        self._check_site(actor, Side.EITHER if anyone else side, "差评处理")
        return self.rating


# ---------------------------------------------------------------------- per-step rules
def _no_rule(case: Case, details: dict[str, Any]) -> None:
    return None


def _require(details: dict[str, Any], key: str, message: str) -> None:
    value = details.get(key)
    if value is None or (isinstance(value, (str, list)) and not value):
        raise RuleViolation("DETAIL_REQUIRED", message, {"field": key})


def _rule_request_supplement(case: Case, details: dict[str, Any]) -> None:
    if case.supplement_requested:
        raise RuleViolation("SUPPLEMENT_ONCE", "补正材料须一次性告知，本件已告知过一次")
    _require(details, "missing_materials", "须列明全部需补正的材料")


def _rule_accept(case: Case, details: dict[str, Any]) -> None:
    days = details.get("committed_days")
    legal = int(case.item["legal_days"])
    if days is None:
        details["committed_days"] = days = int(case.item["committed_days"])
    if not 0 <= int(days) <= legal:
        raise RuleViolation(
            "COMMITMENT_EXCEEDS_LEGAL_LIMIT",
            f"承诺办结时限 {days} 个工作日超过法定时限 {legal} 个工作日",
            {"committed_days": str(days), "legal_days": str(legal)},
        )


def _rule_decide(case: Case, details: dict[str, Any]) -> None:
    if details.get("outcome") == Outcome.DENIED.value:
        _require(details, "reason", "不予许可须说明理由")


def _rule_dispatch(case: Case, details: dict[str, Any]) -> None:
    method = ResultMethod(details["method"])
    if method is ResultMethod.ELECTRONIC_LICENCE:
        _require(details, "licence_reference", "电子证照须填写证照编号")
    else:
        _require(details, "tracking_number", "邮寄送达须填写快递单号")


_STEP_RULES: dict[Step, Callable[[Case, dict[str, Any]], None]] = {
    Step.REFUSE_INTAKE: lambda c, d: _require(d, "reasons", "须说明不予接收的理由"),
    Step.REQUEST_SUPPLEMENT: _rule_request_supplement,
    Step.SUBMIT_SUPPLEMENT: lambda c, d: _require(d, "materials", "须列明提交的补正材料"),
    Step.REJECT: lambda c, d: _require(d, "reason", "不予受理须说明理由"),
    Step.RETURN: lambda c, d: _require(d, "reason", "退件须说明理由"),
    Step.ACCEPT: _rule_accept,
    Step.SUSPEND: lambda c, d: _require(d, "reason", "中止须说明理由"),
    Step.START_SPECIAL: lambda c, d: _require(d, "kind", "须选择特别程序种类"),
    Step.DECIDE: _rule_decide,
    Step.DISPATCH: _rule_dispatch,
    Step.WITHDRAW: lambda c, d: _require(d, "reason", "撤回须说明理由"),
}


def _step_event(name: str, step: Step) -> type[Case.StepTaken]:
    topic = f"tongban.case:{name}"
    cls: type[Case.StepTaken] = type(name, (Case.StepTaken,), {"TOPIC": topic, "STEP": step, "__module__": __name__})
    cls.__qualname__ = f"Case.{name}"
    setattr(Case, name, cls)
    register_topic(topic, cls)
    return cls


# Stored event names: past-tense facts in the business's words. Never rename one; see module doc.
STEP_EVENTS: dict[Step, type[Case.StepTaken]] = {
    step: _step_event(name, step)
    for name, step in [
        ("IntakeRefused", Step.REFUSE_INTAKE),
        ("CaseForwarded", Step.FORWARD),
        ("CaseSignedIn", Step.SIGN),
        ("SupplementRequested", Step.REQUEST_SUPPLEMENT),
        ("SupplementSubmitted", Step.SUBMIT_SUPPLEMENT),
        ("CaseNotAccepted", Step.REJECT),
        ("CaseReturned", Step.RETURN),
        ("CaseAccepted", Step.ACCEPT),
        ("CaseSuspended", Step.SUSPEND),
        ("CaseResumed", Step.RESUME),
        ("SpecialProcedureStarted", Step.START_SPECIAL),
        ("SpecialProcedureEnded", Step.END_SPECIAL),
        ("CaseDecided", Step.DECIDE),
        ("ResultDispatched", Step.DISPATCH),
        ("ResultDelivered", Step.CONFIRM_DELIVERY),
        ("CaseArchived", Step.ARCHIVE),
        ("CaseWithdrawn", Step.WITHDRAW),
    ]
}
