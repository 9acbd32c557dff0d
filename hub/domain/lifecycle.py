"""The case state machine as data: which step is allowed from which state, and where it leads.

Keeping the table apart from the aggregate makes the rules reviewable in one screen and lets the
tests walk every (state, step) pair. Who may take a step (role and side) is authorization.py's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.domain.errors import IllegalStep
from hub.domain.values import LabelledEnum


class CaseState(LabelledEnum):
    RECEIVED = ("received", "已收件")
    REFUSED_AT_INTAKE = ("refused_at_intake", "收件不予接收")
    FORWARDED = ("forwarded", "已流转")
    PENDING_ACCEPTANCE = ("pending_acceptance", "待受理")
    AWAITING_SUPPLEMENT = ("awaiting_supplement", "待补正")
    NOT_ACCEPTED = ("not_accepted", "不予受理")
    RETURNED_TO_INTAKE = ("returned_to_intake", "已退件")
    IN_REVIEW = ("in_review", "审查中")
    SUSPENDED = ("suspended", "已中止")
    SPECIAL_PROCEDURE = ("special_procedure", "特别程序中")
    DECIDED = ("decided", "已办结")
    RESULT_IN_TRANSIT = ("result_in_transit", "结果送达中")
    DELIVERED = ("delivered", "已送达")
    ARCHIVED = ("archived", "已归档")
    WITHDRAWN = ("withdrawn", "已撤回")


TERMINAL: frozenset[CaseState] = frozenset(
    {CaseState.REFUSED_AT_INTAKE, CaseState.NOT_ACCEPTED, CaseState.ARCHIVED, CaseState.WITHDRAWN}
)


class Step(LabelledEnum):
    RECEIVE = ("receive", "收件")
    REFUSE_INTAKE = ("refuse_intake", "收件不予接收")
    FORWARD = ("forward", "流转")
    SIGN = ("sign", "接件")
    REQUEST_SUPPLEMENT = ("request_supplement", "一次性告知补正")
    SUBMIT_SUPPLEMENT = ("submit_supplement", "提交补正材料")
    REJECT = ("reject", "不予受理")
    RETURN = ("return", "退件")
    ACCEPT = ("accept", "受理")
    SUSPEND = ("suspend", "中止")
    RESUME = ("resume", "恢复")
    START_SPECIAL = ("start_special", "启动特别程序")
    END_SPECIAL = ("end_special", "特别程序结束")
    DECIDE = ("decide", "办结")
    DISPATCH = ("dispatch", "出件")
    CONFIRM_DELIVERY = ("confirm_delivery", "送达")
    ARCHIVE = ("archive", "归档")
    WITHDRAW = ("withdraw", "撤回")


@dataclass(frozen=True)
class Transition:
    sources: frozenset[CaseState]
    target: CaseState


def _t(sources: set[CaseState], target: CaseState) -> Transition:
    return Transition(frozenset(sources), target)


S = CaseState
# Withdrawal is allowed until a decision exists: after that the decision stands and only
# revocation (a different procedure) could undo it, so DOMAIN.md's "any non-terminal state" is
# narrowed on purpose.
WITHDRAWABLE = {
    S.RECEIVED, S.FORWARDED, S.PENDING_ACCEPTANCE, S.AWAITING_SUPPLEMENT, S.RETURNED_TO_INTAKE,
    S.IN_REVIEW, S.SUSPENDED, S.SPECIAL_PROCEDURE,
}

TRANSITIONS: dict[Step, Transition] = {
    Step.REFUSE_INTAKE: _t({S.RECEIVED, S.RETURNED_TO_INTAKE}, S.REFUSED_AT_INTAKE),
    Step.FORWARD: _t({S.RECEIVED, S.RETURNED_TO_INTAKE}, S.FORWARDED),
    Step.SIGN: _t({S.FORWARDED}, S.PENDING_ACCEPTANCE),
    Step.REQUEST_SUPPLEMENT: _t({S.PENDING_ACCEPTANCE}, S.AWAITING_SUPPLEMENT),
    Step.SUBMIT_SUPPLEMENT: _t({S.AWAITING_SUPPLEMENT}, S.PENDING_ACCEPTANCE),
    Step.REJECT: _t({S.PENDING_ACCEPTANCE, S.AWAITING_SUPPLEMENT}, S.NOT_ACCEPTED),
    Step.RETURN: _t({S.PENDING_ACCEPTANCE}, S.RETURNED_TO_INTAKE),
    Step.ACCEPT: _t({S.PENDING_ACCEPTANCE}, S.IN_REVIEW),
    Step.SUSPEND: _t({S.IN_REVIEW}, S.SUSPENDED),
    Step.RESUME: _t({S.SUSPENDED}, S.IN_REVIEW),
    Step.START_SPECIAL: _t({S.IN_REVIEW}, S.SPECIAL_PROCEDURE),
    Step.END_SPECIAL: _t({S.SPECIAL_PROCEDURE}, S.IN_REVIEW),
    Step.DECIDE: _t({S.IN_REVIEW}, S.DECIDED),
    Step.DISPATCH: _t({S.DECIDED}, S.RESULT_IN_TRANSIT),
    Step.CONFIRM_DELIVERY: _t({S.RESULT_IN_TRANSIT}, S.DELIVERED),
    Step.ARCHIVE: _t({S.DELIVERED}, S.ARCHIVED),
    Step.WITHDRAW: _t(WITHDRAWABLE, S.WITHDRAWN),
}


def next_state(state: CaseState, step: Step) -> CaseState:
    """The state after ``step``, or IllegalStep naming both if the table forbids it."""
    transition = TRANSITIONS.get(step)
    if transition is None or state not in transition.sources:
        raise IllegalStep(state.value, state.label, step.value, step.label)
    return transition.target
