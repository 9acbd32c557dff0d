"""The Case aggregate: one application for one item, shared by the sites that take part in it.

Commands (public methods) check the rules and then record exactly one event; an event's effect
is computed by folding (case_state.py), so replaying stored events, or receiving a partner's
events, never re-runs a rule. Event payloads are JSON primitives on purpose: they are the stored
schema, the wire data and the audit trail.

Every event carries its shared identity (origin site, seq per (case, origin), Lamport clock,
event id; see shared.py) and ``actor`` (staff id, role, site); the library stamps the time, or
keeps the origin's time for an event received from a partner.

Topics are explicit (``tongban.case:<Name>``), so classes can move without breaking stored history.
To change an event's shape, bump ``class_version`` and add ``upcast_vN_vN+1`` (docs/events.md).
Version 2 added the shared identity; v1 events (one site held the whole case) get it derived.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic, resolve_topic
from uuid6 import uuid7

from hub.domain.authorization import (
    NOT_YET_RATEABLE,
    SERVICE_ENDING,
    Side,
    authorize,
    check_reviewed_place,
    side_of,
)
from hub.domain.case_state import CaseFold, receipt_sites
from hub.domain.errors import RuleViolation
from hub.domain.lifecycle import Step
from hub.domain.shared import SharedEvent
from hub.domain.step_rules import STEP_RULES, no_rule
from hub.domain.values import (
    Actor,
    Applicant,
    IssueKind,
    Material,
    Mode,
    Party,
    RatingLevel,
    RectificationOutcome,
    Role,
    ServiceItem,
)

CASE_TOPIC_PREFIX = "tongban.case:"  # every stored case event's topic starts so: how the log is filtered
JOINT_LEGAL_DAYS = 45  # 多地联办: 45 working days (+15 extension) per DOMAIN.md
_PLACES = frozenset(p.value for p in Party)
_LEGACY_IDS = uuid5(NAMESPACE_URL, "urn:tongban:legacy-event")
_NOT_DATA = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "origin", "seq", "lamport",
     "event_id", "actor"}
)


def actor_data(actor: Actor) -> dict[str, str]:
    return {"staff_id": actor.staff_id, "role": actor.role.value, "site": actor.site, "name": actor.name}


def actor_from(data: dict[str, str]) -> Actor:
    return Actor(data["staff_id"], Role(data["role"]), data["site"], data.get("name", ""))


class Case(CaseFold, Aggregate):
    TOPIC = "tongban.case:Case"

    class Event(Aggregate.Event):
        """Base of every case event: carries the shared identity and the actor."""

        TOPIC = "tongban.case:Case.Event"
        class_version = 2
        origin: str
        seq: int
        lamport: int
        event_id: str
        actor: dict[str, str]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # v1 had no shared identity: mark it for derivation when the case is folded.
            state.update(origin="", seq=0, lamport=0, event_id="")

        def apply(self, aggregate: Any) -> None:
            aggregate._absorb(aggregate._shared(self), self.originator_version)

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.case:Case.Created"

    class CaseReceived(Created):
        TOPIC = "tongban.case:CaseReceived"
        case_number: str
        request_id: str
        item: dict[str, Any]
        mode: str
        receiving_site: str
        handling_site: str
        co_handling_sites: list[str]
        applicant: dict[str, str]
        materials: list[dict[str, Any]]
        note: str
        route: dict[str, Any]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(origin="", seq=0, lamport=0, event_id="", route={})

    class StepTaken(Event):
        """Base of the main-track facts: each subclass is one named, stored event type."""

        TOPIC = "tongban.case:StepTaken"
        STEP: ClassVar[Step]
        details: dict[str, Any]

    # The main-track facts. Stored event names: never rename one (see the module doc).
    class IntakeRefused(StepTaken):
        TOPIC = "tongban.case:IntakeRefused"
        STEP = Step.REFUSE_INTAKE

    class CaseForwarded(StepTaken):
        TOPIC = "tongban.case:CaseForwarded"
        STEP = Step.FORWARD

    class CaseSignedIn(StepTaken):
        TOPIC = "tongban.case:CaseSignedIn"
        STEP = Step.SIGN

    class SupplementRequested(StepTaken):
        TOPIC = "tongban.case:SupplementRequested"
        STEP = Step.REQUEST_SUPPLEMENT

    class SupplementSubmitted(StepTaken):
        TOPIC = "tongban.case:SupplementSubmitted"
        STEP = Step.SUBMIT_SUPPLEMENT

    class CaseNotAccepted(StepTaken):
        TOPIC = "tongban.case:CaseNotAccepted"
        STEP = Step.REJECT

    class CaseReturned(StepTaken):
        TOPIC = "tongban.case:CaseReturned"
        STEP = Step.RETURN

    class CaseAccepted(StepTaken):
        TOPIC = "tongban.case:CaseAccepted"
        STEP = Step.ACCEPT

    class CaseSuspended(StepTaken):
        TOPIC = "tongban.case:CaseSuspended"
        STEP = Step.SUSPEND

    class CaseResumed(StepTaken):
        TOPIC = "tongban.case:CaseResumed"
        STEP = Step.RESUME

    class SpecialProcedureStarted(StepTaken):
        TOPIC = "tongban.case:SpecialProcedureStarted"
        STEP = Step.START_SPECIAL

    class SpecialProcedureEnded(StepTaken):
        TOPIC = "tongban.case:SpecialProcedureEnded"
        STEP = Step.END_SPECIAL

    class CaseDecided(StepTaken):
        TOPIC = "tongban.case:CaseDecided"
        STEP = Step.DECIDE

    class ResultDispatched(StepTaken):
        TOPIC = "tongban.case:ResultDispatched"
        STEP = Step.DISPATCH

    class ResultDelivered(StepTaken):
        TOPIC = "tongban.case:ResultDelivered"
        STEP = Step.CONFIRM_DELIVERY

    class CaseArchived(StepTaken):
        TOPIC = "tongban.case:CaseArchived"
        STEP = Step.ARCHIVE

    class CaseWithdrawn(StepTaken):
        TOPIC = "tongban.case:CaseWithdrawn"
        STEP = Step.WITHDRAW

    class IssueRaised(Event):
        TOPIC = "tongban.case:IssueRaised"
        issue_id: str
        kind: str
        description: str

    class ResponsibilityAssigned(Event):
        TOPIC = "tongban.case:ResponsibilityAssigned"
        issue_id: str
        party: str
        note: str

    class IssueResolved(Event):
        TOPIC = "tongban.case:IssueResolved"
        issue_id: str
        resolution: str

    class CaseRated(Event):
        TOPIC = "tongban.case:CaseRated"
        score: int
        reason: str
        about: str

    class BadReviewCallbackMade(Event):
        TOPIC = "tongban.case:BadReviewCallbackMade"
        note: str

    class BadReviewClosed(Event):
        TOPIC = "tongban.case:BadReviewClosed"
        outcome: str
        note: str

    class RectificationFeedbackRecorded(Event):
        TOPIC = "tongban.case:RectificationFeedbackRecorded"
        satisfied: bool
        note: str

    def __init__(self) -> None:
        self._reset()

    def _step_of(self, event_type: str) -> Step:
        return STEP_OF_TYPE[event_type]

    # ------------------------------------------------------------------ shared identity
    def _shared(self, event: Case.Event) -> SharedEvent:
        """The event's shared form; v1 events get their identity derived deterministically."""
        shared = shared_form(event)
        if shared is not None:
            return shared
        data = {k: v for k, v in vars(event).items() if k not in _NOT_DATA}
        # v1: everything was recorded by one site, the receiving site
        origin = data["receiving_site"] if isinstance(event, Case.CaseReceived) else self.receiving_site
        seq = self.last_seq(origin) + 1 if hasattr(self, "chains") else 1
        lamport = (self.lamport if hasattr(self, "lamport") else 0) + 1
        event_id = str(uuid5(_LEGACY_IDS, f"{self.id}/{origin}/{seq}"))
        return SharedEvent(
            case_id=event.originator_id, origin=origin, seq=seq, lamport=lamport, event_id=event_id,
            type=type(event).__name__, type_version=type(event).class_version, occurred_at=event.timestamp,
            actor=dict(event.actor), data=data,
        )

    def _identity(self, origin: str) -> dict[str, Any]:
        return {
            "origin": origin,
            "seq": self.last_seq(origin) + 1,
            "lamport": self.lamport + 1,
            "event_id": str(uuid7()),
        }

    def _record(self, event_class: type[Case.Event], actor: Actor, site: str, **data: Any) -> None:
        """Record a new event originated at ``site`` (the site recording it, which need not be the actor's)."""
        self.trigger_event(event_class, actor=actor_data(actor), **self._identity(site), **data)

    def ingest(self, shared: SharedEvent) -> None:
        """Record an event a partner site originated, exactly as it was (its time, actor and identity),
        once ``admit`` has checked its sender may take that step."""
        self.admit(shared)
        self.trigger_event(EVENT_TYPES[shared.type], timestamp=shared.occurred_at, **_fields(shared))

    @classmethod
    def from_partner(cls, shared: SharedEvent) -> Case:
        """Open the local copy of a case from the receiving site's CaseReceived (checked like ``admit``)."""
        receiving, handling, *co_handling = receipt_sites(shared.data)
        side = side_of(shared.origin, receiving, handling, co_handling)
        authorize("CaseReceived", shared.actor.get("role", ""), side, None)
        return cls._create(Case.CaseReceived, id=shared.case_id, timestamp=shared.occurred_at, **_fields(shared))

    def admit(self, shared: SharedEvent) -> None:
        """Refuse (NotPermitted, nothing applied) a partner's event for a step its sender may not take.

        The sender's side comes from the event's origin, the site the partner's certificate vouches
        for. Role and side are checked strictly; the state is left to the fold (a concurrent step is a
        conflict, listed on both sites), except where a refusal is unambiguous: a rating of a two-site
        case with no service-ending event before it, since every event the sender could have seen is
        here (authorization.py).
        """
        if shared.type == "CaseReceived":
            raise RuleViolation("ALREADY_RECEIVED", "办件已收件")
        previous = self.shared_events(shared.origin)[shared.seq - 2] if shared.seq > 1 else None
        floor = max(previous.lamport if previous is not None else 0, 1)  # 1: the receipt, which it answers
        if shared.lamport <= floor:
            # An origin's clock only grows: an event at or below its own previous one (or at the receipt's)
            # cannot have seen what it follows, and would be folded before it (or win a conflict it lost).
            raise RuleViolation("OUT_OF_ORDER", f"事件的逻辑时钟 {shared.lamport} 不大于其来源上一事件的 {floor}",
                                {"event_id": shared.event_id, "lamport": str(shared.lamport), "floor": str(floor)})
        side = self.side_of(shared.origin)
        authorize(shared.type, shared.actor.get("role", ""), side, None)
        if shared.type == "CaseAccepted":  # the step's own rule, on what the partner says it committed to
            days, legal = shared.data.get("details", {}).get("committed_days"), int(self.item["legal_days"])
            if isinstance(days, int) and days > legal:
                raise RuleViolation("COMMITMENT_EXCEEDS_LEGAL_LIMIT",
                                    f"承诺办结时限 {days} 个工作日超过法定时限 {legal} 个工作日",
                                    {"committed_days": str(days), "legal_days": str(legal)})
        if shared.type == "CaseRated" and len(set(self.sites)) == 2 and not any(
            e.shared.type in SERVICE_ENDING and e.shared.key < shared.key for e in self.log
        ):
            raise RuleViolation(NOT_YET_RATEABLE, "服务尚未结束，暂不能评价（评价前无办结送达、不予受理或撤回）",
                                {"action": shared.type, "event_id": shared.event_id})
        about = str(self.rating.get("about")) if self.rating is not None else ""
        if about in _PLACES:
            check_reviewed_place(shared.type, side, Party(about))

    # ------------------------------------------------------------------ receipt
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
        route: dict[str, Any] | None = None,
    ) -> Case:
        """Open a case at the receiving window (收件). The receiving site is the actor's site."""
        authorize("CaseReceived", actor.role, Side.RECEIVING, None)
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
        return cls._create(
            Case.CaseReceived,
            id=case_id,
            origin=actor.site, seq=1, lamport=1, event_id=str(uuid7()),
            actor=actor_data(actor),
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
            route=dict(route or {}),
        )

    # ------------------------------------------------------------------ checks
    def side_of(self, site: str) -> Side:
        """Which side of this case ``site`` is on (receiving, handling, co-handling, outside)."""
        return side_of(site, self.receiving_site, self.handling_site, self.co_handling_sites)

    def _authorize(self, action: str, actor: Actor) -> None:
        """The actor's role, at its site's side of the case, may take ``action`` in the case's state."""
        authorize(action, actor.role, self.side_of(actor.site), self.state)

    # ------------------------------------------------------------------ main track
    def take_step(self, step: Step, actor: Actor, *, site: str, **details: Any) -> None:
        """Take a main-track step after checking who may (role, side and state: authorization.py) and the
        step's rules.

        Here and in every command below, ``site`` is the site recording the event (its origin).
        """
        if step is Step.RECEIVE:
            raise RuleViolation("ALREADY_RECEIVED", "办件已收件")
        self._authorize(STEP_EVENTS[step].__name__, actor)
        recorded = STEP_RULES.get(step, no_rule)(self, details)
        self._record(STEP_EVENTS[step], actor, site, details=recorded)

    # ------------------------------------------------------------------ issues (问题件)
    def raise_issue(self, actor: Actor, kind: IssueKind, description: str, *, site: str) -> str:
        self._authorize("IssueRaised", actor)
        raised_here = sum(1 for i in self.issues if i.endswith(f"-{site}")) + 1
        issue_id = f"Q{raised_here}-{site}"  # unique even when two sites raise issues at once
        self._record(Case.IssueRaised, actor, site, issue_id=issue_id, kind=kind.value, description=description)
        return issue_id

    def assign_responsibility(self, actor: Actor, issue_id: str, party: Party, note: str, *, site: str) -> None:
        self._authorize("ResponsibilityAssigned", actor)
        issue = self._open_issue(issue_id)
        if issue["responsible"] == party.value:
            raise RuleViolation("ALREADY_ASSIGNED", f"问题件 {issue_id} 已认定由{party.label}负责")
        self._record(Case.ResponsibilityAssigned, actor, site, issue_id=issue_id, party=party.value, note=note)

    def resolve_issue(self, actor: Actor, issue_id: str, resolution: str, *, site: str) -> None:
        self._authorize("IssueResolved", actor)
        issue = self._open_issue(issue_id)
        if issue["responsible"] is None:
            raise RuleViolation("RESPONSIBILITY_FIRST", f"问题件 {issue_id} 须先认定责任方再办结")
        self._record(Case.IssueResolved, actor, site, issue_id=issue_id, resolution=resolution)

    def _open_issue(self, issue_id: str) -> dict[str, Any]:
        issue = self.issues.get(issue_id)
        if issue is None:
            raise RuleViolation("NO_SUCH_ISSUE", f"办件没有问题件 {issue_id}", {"issue_id": issue_id})
        if issue["resolved"]:
            raise RuleViolation("ISSUE_RESOLVED", f"问题件 {issue_id} 已办结", {"issue_id": issue_id})
        return issue

    # ------------------------------------------------------------------ rating (好差评)
    def rate(self, actor: Actor, level: RatingLevel, reason: str, about: Party, *, site: str) -> None:
        self._authorize("CaseRated", actor)
        if self.rating is not None:
            raise RuleViolation("ALREADY_RATED", "该办件已评价，一件一评")
        if level.score < 3 and not reason.strip():
            raise RuleViolation("REASON_REQUIRED", "「不满意」「非常不满意」须填写理由")
        if about not in (Party.RECEIVING_PLACE, Party.HANDLING_PLACE):
            raise RuleViolation("RATE_A_PLACE", "评价对象须为收件地或办理地")
        self._record(Case.CaseRated, actor, site, score=level.score, reason=reason, about=about.value)

    def record_callback(self, actor: Actor, note: str, *, site: str) -> None:
        review = self._bad_review("BadReviewCallbackMade", actor)
        if review["callback_done"]:
            raise RuleViolation("CALLBACK_DONE", "差评已回访")
        self._record(Case.BadReviewCallbackMade, actor, site, note=note)

    def close_bad_review(self, actor: Actor, outcome: RectificationOutcome, note: str, *, site: str) -> None:
        review = self._bad_review("BadReviewClosed", actor)
        if not review["callback_done"]:
            raise RuleViolation("CALLBACK_FIRST", "差评须先回访申请人，再整改、解释或申诉")
        if review["outcome"] is not None:
            raise RuleViolation("REVIEW_CLOSED", "差评已处理完毕")
        if not note.strip():
            raise RuleViolation("NOTE_REQUIRED", "须说明整改、解释或申诉情况")
        self._record(Case.BadReviewClosed, actor, site, outcome=outcome.value, note=note)

    def record_feedback(self, actor: Actor, satisfied: bool, note: str, *, site: str) -> None:
        review = self._bad_review("RectificationFeedbackRecorded", actor)
        if review["outcome"] is None:
            raise RuleViolation("NOT_CLOSED_YET", "差评尚未整改、解释或申诉，不能登记反馈")
        if review["feedback"] is not None:
            raise RuleViolation("FEEDBACK_RECORDED", "已登记申请人反馈")
        self._record(Case.RectificationFeedbackRecorded, actor, site, satisfied=satisfied, note=note)

    def _bad_review(self, action: str, actor: Actor) -> dict[str, Any]:
        """The open bad review, once the actor may take ``action`` on it: callback and closing only at
        the place it is about (谁办理谁负责)."""
        self._authorize(action, actor)
        if self.rating is None or not self.rating["bad_review"]:
            raise RuleViolation("NO_BAD_REVIEW", "该办件没有待处理的差评")
        check_reviewed_place(action, self.side_of(actor.site), Party(self.rating["about"]))
        return self.rating


class CaseSnapshot(Snapshot):
    """A case at one version, kept as its log: each shared event with its local version.

    Restoring folds the log again, so a restored case is exactly what its events give (the same
    state, chains, marks and conflicts) and the snapshot has no derived state of its own to
    transcode, or to upcast when the fold changes. Only JSON-able values are stored.
    """

    TOPIC = "tongban.case:Case.Snapshot"

    @classmethod
    def take(cls, aggregate: Any) -> CaseSnapshot:
        state = {
            "created_on": aggregate.created_on,
            "modified_on": aggregate.modified_on,
            "log": [{"version": entry.version, **asdict(entry.shared)} for entry in aggregate.log],
        }
        return cls(originator_id=aggregate.id, originator_version=aggregate.version,
                   timestamp=cls.create_timestamp(), topic=get_topic(type(aggregate)), state=state)

    def mutate(self, _: Any) -> Case:
        case: Case = object.__new__(resolve_topic(self.topic))
        vars(case).update(_id=self.originator_id, _version=self.originator_version, _pending_events=[],
                          _created_on=self.state["created_on"], _modified_on=self.state["modified_on"])
        case._reset()
        for stored in self.state["log"]:
            fields = dict(stored)
            version = fields.pop("version")
            case._absorb(SharedEvent(**fields), version)
        return case


Case.Snapshot = CaseSnapshot


def shared_form(event: Case.Event) -> SharedEvent | None:
    """A stored event's shared form without its case, or None for a v1 event (whose identity is
    derived from the case's earlier events: load the case and read its log instead)."""
    if not event.origin:
        return None
    return SharedEvent(
        case_id=event.originator_id, origin=event.origin, seq=event.seq, lamport=event.lamport,
        event_id=event.event_id, type=type(event).__name__, type_version=type(event).class_version,
        occurred_at=event.timestamp, actor=dict(event.actor),
        data={k: v for k, v in vars(event).items() if k not in _NOT_DATA},
    )


def _fields(shared: SharedEvent) -> dict[str, Any]:
    return {
        "origin": shared.origin, "seq": shared.seq, "lamport": shared.lamport, "event_id": shared.event_id,
        "actor": dict(shared.actor), **shared.data,
    }


# Main-track step -> its event class; and an event type's name -> the step it records.
STEP_EVENTS: dict[Step, type[Case.StepTaken]] = {
    cls.STEP: cls
    for cls in (
        Case.IntakeRefused, Case.CaseForwarded, Case.CaseSignedIn, Case.SupplementRequested,
        Case.SupplementSubmitted, Case.CaseNotAccepted, Case.CaseReturned, Case.CaseAccepted, Case.CaseSuspended,
        Case.CaseResumed, Case.SpecialProcedureStarted, Case.SpecialProcedureEnded, Case.CaseDecided,
        Case.ResultDispatched, Case.ResultDelivered, Case.CaseArchived, Case.CaseWithdrawn,
    )
}
STEP_OF_TYPE: dict[str, Step] = {cls.__name__: step for step, cls in STEP_EVENTS.items()}

_TRACK_EVENTS: tuple[type[Case.Event], ...] = (
    Case.CaseReceived, Case.IssueRaised, Case.ResponsibilityAssigned, Case.IssueResolved, Case.CaseRated,
    Case.BadReviewCallbackMade, Case.BadReviewClosed, Case.RectificationFeedbackRecorded,
)
# Wire type name -> event class, for events received from partners.
EVENT_TYPES: dict[str, type[Case.Event]] = {cls.__name__: cls for cls in (*_TRACK_EVENTS, *STEP_EVENTS.values())}
