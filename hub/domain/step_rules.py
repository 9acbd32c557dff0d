"""Rules each main-track step checks before it is recorded (beyond the state table and the site).

Rules run only when a command is taken at the origin site, never when events are replayed or
received from a partner: a stored or delivered event is a fact, not a request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.domain.errors import RuleViolation
from hub.domain.lifecycle import Step
from hub.domain.values import Outcome, ResultMethod


def no_rule(case: Any, details: dict[str, Any]) -> None:
    return None


def _require(details: dict[str, Any], key: str, message: str) -> None:
    value = details.get(key)
    if value is None or (isinstance(value, (str, list)) and not value):
        raise RuleViolation("DETAIL_REQUIRED", message, {"field": key})


def _rule_request_supplement(case: Any, details: dict[str, Any]) -> None:
    if case.supplement_requested:
        raise RuleViolation("SUPPLEMENT_ONCE", "补正材料须一次性告知，本件已告知过一次")
    _require(details, "missing_materials", "须列明全部需补正的材料")


def _rule_accept(case: Any, details: dict[str, Any]) -> None:
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


def _rule_decide(case: Any, details: dict[str, Any]) -> None:
    if details.get("outcome") == Outcome.DENIED.value:
        _require(details, "reason", "不予许可须说明理由")


def _rule_dispatch(case: Any, details: dict[str, Any]) -> None:
    method = ResultMethod(details["method"])
    if method is ResultMethod.ELECTRONIC_LICENCE:
        _require(details, "licence_reference", "电子证照须填写证照编号")
    else:
        _require(details, "tracking_number", "邮寄送达须填写快递单号")


STEP_RULES: dict[Step, Callable[[Any, dict[str, Any]], None]] = {
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
