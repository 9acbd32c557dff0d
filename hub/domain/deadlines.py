"""Deadlines (监督管理): which clocks run on a case, who holds each, and whether it is due.

Clocks are derived, never stored: they are a pure function of the case's marks (when each step
happened), the working-day calendar and the policy. So a calendar notice loaded later, or a policy
change, re-evaluates every case without touching history.

Counting rules (行政许可法 art. 82; 民法典 art. 201):
- limits are in working days on the official calendar; the start day does not count;
- a working day counts only if the clock was running at the end of that (Asia/Shanghai) day, so
  supplements, suspensions and special procedures pause it;
- a due date in a year whose holiday notice is not loaded is provisional (Mon-Fri rule).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from typing import Any

from hub.domain.identifiers import LOCAL_TZ
from hub.domain.values import Party, ResultMethod
from hub.domain.workdays import WorkCalendar


@dataclass(frozen=True)
class DeadlinePolicy:
    """Limits in working days. Defaults marked (inferred) in DOMAIN.md are configurable per site."""

    forward_days: int = 1  # receipt -> transfer, "same day" practice (inferred)
    sign_in_days: int = 1  # transfer -> signed in at the handling place (inferred)
    supplement_notice_days: int = 5  # 行政许可法 art. 32: notify missing materials once within 5 days
    acceptance_days: int = 5  # supplement received -> accept / not accept (inferred, same rule)
    result_delivery_days: int = 10  # art. 44: deliver the result within 10 days of the decision
    rectification_days: int = 5  # bad review rectification (local rules say 5-15)
    issue_days: int = 5  # issue case resolution (inferred)
    warning_ratio: float = 0.2  # warn when this share of the limit (at least 1 day) is left


class ClockStatus(Enum):
    RUNNING = "running"
    WARNING = "warning"
    BREACHED = "breached"
    PAUSED = "paused"
    MET = "met"
    LATE = "late"


LABELS = {
    "forward": "收件流转",
    "sign_in": "办理地接件",
    "supplement_notice": "一次性告知补正",
    "supplement": "申请人补正",
    "acceptance": "补正后受理",
    "committed": "承诺办结",
    "result_delivery": "结果送达",
    "rectification": "差评整改",
    "issue": "问题件处理",
}


@dataclass(frozen=True)
class Clock:
    code: str
    holder: Party
    started_at: datetime
    limit_days: int | None
    status: ClockStatus
    due: date | None = None
    warn_from: date | None = None
    provisional: bool = False
    stopped_at: datetime | None = None
    subject: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.code]

    @property
    def is_open(self) -> bool:
        return self.status in (ClockStatus.RUNNING, ClockStatus.WARNING, ClockStatus.BREACHED, ClockStatus.PAUSED)


@dataclass
class _Track:
    code: str
    holder: Party
    started_at: datetime
    limit: int | None
    subject: str = ""
    pauses: list[tuple[date, date | None]] = field(default_factory=list)
    stopped_at: datetime | None = None


Mark = tuple[str, datetime, str, dict[str, Any]]

_CASE_CLOCKS = ("forward", "sign_in", "supplement_notice", "supplement", "acceptance", "committed")


def _local(at: datetime) -> date:
    return at.astimezone(LOCAL_TZ).date()


class _Tracker:
    """Walks a case's marks in order, starting, pausing and stopping clocks."""

    def __init__(self, policy: DeadlinePolicy) -> None:
        self.policy = policy
        self.tracks: list[_Track] = []

    def open(self, code: str, subject: str = "") -> _Track | None:
        for track in reversed(self.tracks):
            if track.code == code and track.subject == subject and track.stopped_at is None:
                return track
        return None

    def start(self, code: str, holder: Party, at: datetime, limit: int | None, subject: str = "") -> None:
        self.tracks.append(_Track(code, holder, at, limit, subject))

    def stop(self, at: datetime, *codes: str, subject: str = "") -> None:
        for code in codes:
            track = self.open(code, subject)
            if track is not None:
                track.stopped_at = at
                if track.pauses and track.pauses[-1][1] is None:
                    track.pauses[-1] = (track.pauses[-1][0], _local(at))

    def pause(self, at: datetime, code: str) -> None:
        track = self.open(code)
        if track is not None:
            track.pauses.append((_local(at), None))

    def resume(self, at: datetime, code: str) -> None:
        track = self.open(code)
        if track is not None and track.pauses and track.pauses[-1][1] is None:
            track.pauses[-1] = (track.pauses[-1][0], _local(at))

    def on(self, step: str, at: datetime, subject: str, data: dict[str, Any]) -> None:
        p = self.policy
        if step == "receive":
            self.start("forward", Party.RECEIVING_PLACE, at, p.forward_days)
        elif step == "forward":
            self.stop(at, "forward")
            self.start("sign_in", Party.HANDLING_PLACE, at, p.sign_in_days)
        elif step == "refuse_intake":
            self.stop(at, "forward")
        elif step == "sign":
            self.stop(at, "sign_in")
            self.start("supplement_notice", Party.HANDLING_PLACE, at, p.supplement_notice_days)
        elif step == "request_supplement":
            self.stop(at, "supplement_notice")
            self.start("supplement", Party.APPLICANT, at, None)
        elif step == "submit_supplement":
            self.stop(at, "supplement")
            self.start("acceptance", Party.HANDLING_PLACE, at, p.acceptance_days)
        elif step in ("reject", "return"):
            self.stop(at, "supplement_notice", "supplement", "acceptance")
        elif step == "accept":
            self.stop(at, "supplement_notice", "acceptance")
            self.start("committed", Party.HANDLING_PLACE, at, int(data.get("committed_days", 0)))
        elif step in ("suspend", "start_special"):
            self.pause(at, "committed")
        elif step in ("resume", "end_special"):
            self.resume(at, "committed")
        elif step == "decide":
            self.stop(at, "committed")
            self.start("result_delivery", Party.HANDLING_PLACE, at, p.result_delivery_days)
        elif step == "dispatch":
            track = self.open("result_delivery")
            if track is not None and data.get("method") != ResultMethod.ELECTRONIC_LICENCE.value:
                track.holder = Party.COURIER
        elif step == "confirm_delivery":
            self.stop(at, "result_delivery")
        elif step == "withdraw":
            self.stop(at, *_CASE_CLOCKS)
        elif step == "issue_raised":
            self.start("issue", Party(data["holder"]), at, p.issue_days, subject)
        elif step == "responsibility_assigned":
            track = self.open("issue", subject)
            if track is not None:
                track.holder = Party(data["holder"])
        elif step == "issue_resolved":
            self.stop(at, "issue", subject=subject)
        elif step == "bad_review":
            self.start("rectification", Party(data["holder"]), at, p.rectification_days, subject)
        elif step == "bad_review_closed":
            self.stop(at, "rectification", subject=subject)


def _paused_on(pauses: Sequence[tuple[date, date | None]]) -> Any:
    def skip(day: date) -> bool:
        return any(start <= day and (end is None or day < end) for start, end in pauses)

    return skip


def _evaluate(track: _Track, calendar: WorkCalendar, policy: DeadlinePolicy, today: date) -> Clock:
    base = Clock(track.code, track.holder, track.started_at, track.limit, ClockStatus.RUNNING,
                 stopped_at=track.stopped_at, subject=track.subject)
    paused_now = track.stopped_at is None and bool(track.pauses) and track.pauses[-1][1] is None
    if track.limit is None or paused_now:
        status = ClockStatus.PAUSED if paused_now else ClockStatus.RUNNING
        if track.stopped_at is not None:
            status = ClockStatus.MET
        return replace(base, status=status)
    start = _local(track.started_at)
    skip = _paused_on(track.pauses)
    due = calendar.add_workdays(start, track.limit, skip)
    margin = max(1, math.ceil(track.limit * policy.warning_ratio))
    warn = due if track.limit <= margin else calendar.add_workdays(start, track.limit - margin, skip)
    clock = replace(base, due=due.day, warn_from=warn.day, provisional=due.provisional or warn.provisional)
    if track.stopped_at is not None:
        return replace(clock, status=ClockStatus.MET if _local(track.stopped_at) <= due.day else ClockStatus.LATE)
    if today > due.day:
        return replace(clock, status=ClockStatus.BREACHED)
    if today >= warn.day:
        return replace(clock, status=ClockStatus.WARNING)
    return clock


def clocks(
    marks: Iterable[Mark],
    calendar: WorkCalendar,
    policy: DeadlinePolicy,
    as_of: datetime,
) -> list[Clock]:
    """Every clock the case has had, oldest first, evaluated as of ``as_of``.

    Marks after ``as_of`` are ignored, so "as of" a past time shows what was true then.
    """
    tracker = _Tracker(policy)
    for step, at, subject, data in marks:
        if at <= as_of:
            tracker.on(step, at, subject, data)
    today = _local(as_of)
    return [_evaluate(track, calendar, policy, today) for track in tracker.tracks]


def deemed_accepted(case_clocks: Iterable[Clock]) -> bool:
    """Missing materials not notified within 5 days: the application counts as accepted (art. 32)."""
    return any(
        c.code == "supplement_notice" and c.status in (ClockStatus.BREACHED, ClockStatus.LATE) for c in case_clocks
    )
