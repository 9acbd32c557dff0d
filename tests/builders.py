"""Test data builders: one place that knows how to make a valid request, actor or case."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hub.domain.authorization import PERMISSIONS, Side
from hub.domain.case import STEP_EVENTS, Case
from hub.domain.lifecycle import CaseState, Step
from hub.domain.values import (
    Actor,
    Applicant,
    ApplicantKind,
    IdType,
    IssueKind,
    Material,
    Mode,
    Party,
    RatingLevel,
    RectificationOutcome,
    Role,
    ServiceItem,
)

RECEIVING, HANDLING, OTHER = "410400", "320500", "330100"
CLERK = Actor("PDS-1", Role.WINDOW_CLERK, RECEIVING, "李敏")
HANDLER = Actor("SZ-1", Role.HANDLER, HANDLING, "周婷")
SUPERVISOR = Actor("SZ-SUP-1", Role.SUPERVISOR, HANDLING, "陈督")
APPLICANT = Actor("applicant", Role.APPLICANT, RECEIVING, "王建国")
OUTSIDER = Actor("HZ-1", Role.HANDLER, OTHER)
ID_NUMBER = "410402199003072416"
ITEM = ServiceItem(
    code="KSTB-006", name="企业职工基本养老保险关系转移接续", department="人力资源和社会保障局",
    modes=frozenset({Mode.PROXY, Mode.ONLINE, Mode.JOINT}), legal_days=20, committed_days=15,
)

# Details that satisfy each step's rules.
DETAILS: dict[Step, dict[str, Any]] = {
    Step.REFUSE_INTAKE: {"reasons": ["材料不齐且无法当场补正"]},
    Step.FORWARD: {"courier": "EMS", "tracking_number": "1173945026718"},
    Step.REQUEST_SUPPLEMENT: {"missing_materials": ["参保缴费凭证"], "note": ""},
    Step.SUBMIT_SUPPLEMENT: {"materials": [{"name": "参保缴费凭证", "copies": 1, "original_required": False}]},
    Step.REJECT: {"reason": "不属于本机关职权范围", "notice_number": ""},
    Step.RETURN: {"reason": "流转错误"},
    Step.ACCEPT: {"committed_days": 10},
    Step.SUSPEND: {"reason": "等待协查"},
    Step.START_SPECIAL: {"kind": "expert_review", "reason": ""},
    Step.END_SPECIAL: {"conclusion": "通过"},
    Step.DECIDE: {"outcome": "approved", "reason": "", "decision_number": ""},
    Step.DISPATCH: {"method": "courier_to_applicant", "tracking_number": "EMS1", "courier": "EMS",
                    "licence_reference": ""},
    Step.CONFIRM_DELIVERY: {"received_by": "王建国"},
    Step.WITHDRAW: {"reason": "申请人主动撤回"},
}

# A path of steps from a new case to each state.
PATHS: dict[CaseState, list[Step]] = {
    CaseState.RECEIVED: [],
    CaseState.REFUSED_AT_INTAKE: [Step.REFUSE_INTAKE],
    CaseState.FORWARDED: [Step.FORWARD],
    CaseState.PENDING_ACCEPTANCE: [Step.FORWARD, Step.SIGN],
    CaseState.AWAITING_SUPPLEMENT: [Step.FORWARD, Step.SIGN, Step.REQUEST_SUPPLEMENT],
    CaseState.NOT_ACCEPTED: [Step.FORWARD, Step.SIGN, Step.REJECT],
    CaseState.RETURNED_TO_INTAKE: [Step.FORWARD, Step.SIGN, Step.RETURN],
    CaseState.IN_REVIEW: [Step.FORWARD, Step.SIGN, Step.ACCEPT],
    CaseState.SUSPENDED: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.SUSPEND],
    CaseState.SPECIAL_PROCEDURE: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.START_SPECIAL],
    CaseState.DECIDED: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.DECIDE],
    CaseState.RESULT_IN_TRANSIT: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.DECIDE, Step.DISPATCH],
    CaseState.DELIVERED: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.DECIDE, Step.DISPATCH, Step.CONFIRM_DELIVERY],
    CaseState.ARCHIVED: [Step.FORWARD, Step.SIGN, Step.ACCEPT, Step.DECIDE, Step.DISPATCH, Step.CONFIRM_DELIVERY,
                         Step.ARCHIVE],
    CaseState.WITHDRAWN: [Step.WITHDRAW],
}


def actor_for(step: Step) -> Actor:
    """The receiving window's clerk if it may take ``step``, else the handling site's handler."""
    return CLERK if (CLERK.role, Side.RECEIVING) in PERMISSIONS[STEP_EVENTS[step].__name__].who else HANDLER


def new_case(case_id: UUID | None = None, mode: Mode = Mode.PROXY, co_sites: list[str] | None = None) -> Case:
    from hub.domain.identifiers import new_case_id

    return Case.receive(
        case_id=case_id or new_case_id(), case_number="41040020261129000000001", request_id="r-1", item=ITEM,
        mode=mode, handling_site=HANDLING, co_handling_sites=co_sites or [],
        applicant=Applicant(ApplicantKind.PERSON, "王建国", IdType.RESIDENT_ID, ID_NUMBER, "13837512345", "平顶山市"),
        materials=[Material("居民身份证")], applicant_consent=True, identity_verified=True, note="", actor=CLERK,
    )


def take(case: Case, step: Step, actor: Actor | None = None) -> None:
    """Take ``step`` at the actor's own site."""
    actor = actor or actor_for(step)
    case.take_step(step, actor, site=actor.site, **dict(DETAILS.get(step, {})))


def case_in(state: CaseState) -> Case:
    case = new_case()
    for step in PATHS[state]:
        take(case, step)
    assert case.state is state
    return case


def receive_request(request_id: str = "req-1", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": request_id,
        "actor": {"staff_id": CLERK.staff_id, "role": "window_clerk", "site": RECEIVING, "name": CLERK.name},
        "item_code": "KSTB-006",
        "mode": "proxy",
        "handling_site": HANDLING,
        "applicant": {"kind": "person", "name": "王建国", "id_type": "111", "id_number": ID_NUMBER,
                      "phone": "13837512345", "address": "平顶山市新华区建设路 18 号"},
        "materials": [{"name": "居民身份证"}],
        "applicant_consent": True,
        "identity_verified": True,
    }
    data.update(changes)
    return data


def actor_data(actor: Actor) -> dict[str, str]:
    return {"staff_id": actor.staff_id, "role": actor.role.value, "site": actor.site, "name": actor.name}


# Every action a case can be asked to take, legal or not in its state: for property tests.
ACTIONS: list[tuple[str, Any]] = [(f"step:{s.value}", s) for s in Step if s is not Step.RECEIVE] + [
    ("issue", lambda c: c.raise_issue(CLERK, IssueKind.OVERDUE, "超期", site=RECEIVING)),
    ("assign", lambda c: c.assign_responsibility(SUPERVISOR, f"Q{max(len(c.issues), 1)}", Party.HANDLING_PLACE,
                                                   "", site=HANDLING)),
    ("resolve", lambda c: c.resolve_issue(HANDLER, f"Q{max(len(c.issues), 1)}", "已处理", site=HANDLING)),
    ("rate-bad", lambda c: c.rate(CLERK, RatingLevel.DISSATISFIED, "慢", Party.HANDLING_PLACE, site=RECEIVING)),
    ("rate-good", lambda c: c.rate(CLERK, RatingLevel.VERY_SATISFIED, "", Party.RECEIVING_PLACE, site=RECEIVING)),
    ("callback", lambda c: c.record_callback(HANDLER, "已回访", site=HANDLING)),
    ("close", lambda c: c.close_bad_review(HANDLER, RectificationOutcome.RECTIFIED, "已整改", site=HANDLING)),
    ("feedback", lambda c: c.record_feedback(CLERK, True, "", site=RECEIVING)),
]
