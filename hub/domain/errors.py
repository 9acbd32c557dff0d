"""The hub's error types. One root, typed subclasses; adapters map each class to a status once.

Messages are Chinese first because window staff read them; ``reason`` codes are stable English
identifiers for programs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    reason: str = "HUB_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {}  # facts for programs (ids, states), shown with the reason code


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: a dotted path into the request and what is wrong with it."""

    field: str
    description: str


class InvalidInput(HubError):
    """The request itself is malformed; nothing was attempted."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(f"请求不合法 ({summary})")

    @classmethod
    def one(cls, field: str, description: str) -> InvalidInput:
        return cls([FieldViolation(field, description)])


class RuleViolation(HubError):
    """A well-formed request that the case's rules forbid (maps to FAILED_PRECONDITION)."""

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})


class IllegalStep(RuleViolation):
    """The step is not allowed from the case's current state."""

    def __init__(self, state: str, state_label: str, step: str, step_label: str) -> None:
        super().__init__(
            "ILLEGAL_STEP",
            f"案件当前状态为「{state_label}」，不能执行「{step_label}」",
            {"state": state, "step": step},
        )
        self.state = state
        self.step = step


class NotPermitted(HubError):
    """The caller may not do this at all (maps to PERMISSION_DENIED).

    ``reason`` (a stable code such as ``WRONG_ROLE``) and ``metadata`` are optional: without them the
    class's own reason stands, so ``NotPermitted(message)`` and subclasses keep working.
    """

    reason = "NOT_PERMITTED"

    def __init__(self, message: str, reason: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})


class CaseNotFound(HubError):
    reason = "CASE_NOT_FOUND"

    def __init__(self, case_id: str) -> None:
        super().__init__(f"未找到办件 {case_id}")
        self.case_id = case_id


class ConcurrentUpdate(HubError):
    """Someone else changed the case first; re-read and retry."""

    reason = "CONCURRENT_UPDATE"

    def __init__(self, case_id: str, expected: int | None, actual: int | None) -> None:
        detail = f"（期望版本 {expected}，当前版本 {actual}）" if expected is not None else ""
        super().__init__(f"办件 {case_id} 已被他人更新{detail}，请刷新后重试")
        self.case_id = case_id
        self.expected = expected
        self.actual = actual
