"""Rules each main-track step checks before it is recorded (beyond the state table and the site).

Rules run only when a command is taken at the origin site, never when events are replayed or
received from a partner: a stored or delivered event is a fact, not a request. A rule reads the
case's folded state and returns the details to record (a new dict: accepting fills in the item's
usual commitment when none is given); it never changes the case or its argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hub.domain.errors import RuleViolation
from hub.domain.lifecycle import Step
from hub.domain.values import Outcome, ResultMethod

Details = dict[str, Any]


class CaseFacts(Protocol):
    """What the rules read of a case (its folded state, case_state.CaseFold)."""

    @property
    def supplement_requested(self) -> bool: ...

    @property
    def item(self) -> dict[str, Any]: ...


Rule = Callable[[CaseFacts, Mapping[str, Any]], Details]
"""A step's rule: the details to record (a new dict), or a RuleViolation."""


def no_rule(case: CaseFacts, details: Mapping[str, Any]) -> Details:
    return dict(details)


def _require(details: Mapping[str, Any], key: str, message: str) -> None:
    value = details.get(key)
    if value is None or (isinstance(value, (str, list)) and not value):
        raise RuleViolation("DETAIL_REQUIRED", message, {"field": key})


def _requires(key: str, message: str) -> Rule:
    """The rule of a step whose only check is that one detail is given."""

    def rule(case: CaseFacts, details: Mapping[str, Any]) -> Details:
        _require(details, key, message)
        return dict(details)

    return rule


def _rule_request_supplement(case: CaseFacts, details: Mapping[str, Any]) -> Details:
    if case.supplement_requested:
        raise RuleViolation("SUPPLEMENT_ONCE", "补正材料须一次性告知，本件已告知过一次")
    _require(details, "missing_materials", "须列明全部需补正的材料")
    return dict(details)


def _rule_accept(case: CaseFacts, details: Mapping[str, Any]) -> Details:
    """The commitment may not exceed the legal limit; none given means the item's usual commitment."""
    days = details.get("committed_days")
    legal = int(case.item["legal_days"])
    if days is None:
        days = int(case.item["committed_days"])
    if not 0 <= int(days) <= legal:
        raise RuleViolation(
            "COMMITMENT_EXCEEDS_LEGAL_LIMIT",
            f"承诺办结时限 {days} 个工作日超过法定时限 {legal} 个工作日",
            {"committed_days": str(days), "legal_days": str(legal)},
        )
    return {**details, "committed_days": days}


def _rule_decide(case: CaseFacts, details: Mapping[str, Any]) -> Details:
    if details.get("outcome") == Outcome.DENIED.value:
        _require(details, "reason", "不予许可须说明理由")
    return dict(details)


def _rule_dispatch(case: CaseFacts, details: Mapping[str, Any]) -> Details:
    method = ResultMethod(details["method"])
    if method is ResultMethod.ELECTRONIC_LICENCE:
        _require(details, "licence_reference", "电子证照须填写证照编号")
    else:
        _require(details, "tracking_number", "邮寄送达须填写快递单号")
    return dict(details)


STEP_RULES: dict[Step, Rule] = {
    Step.REFUSE_INTAKE: _requires("reasons", "须说明不予接收的理由"),
    Step.REQUEST_SUPPLEMENT: _rule_request_supplement,
    Step.SUBMIT_SUPPLEMENT: _requires("materials", "须列明提交的补正材料"),
    Step.REJECT: _requires("reason", "不予受理须说明理由"),
    Step.RETURN: _requires("reason", "退件须说明理由"),
    Step.ACCEPT: _rule_accept,
    Step.SUSPEND: _requires("reason", "中止须说明理由"),
    Step.START_SPECIAL: _requires("kind", "须选择特别程序种类"),
    Step.DECIDE: _rule_decide,
    Step.DISPATCH: _rule_dispatch,
    Step.WITHDRAW: _requires("reason", "撤回须说明理由"),
}
