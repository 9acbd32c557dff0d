"""Clocks on real official calendars: holidays, make-up working weekends, pauses, provisional years."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from hub.domain.deadlines import ClockStatus, DeadlinePolicy, clocks, deemed_accepted
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.values import Party
from hub.domain.workdays import WorkCalendar, YearNotice

CAL = WorkCalendar()
POLICY = DeadlinePolicy()


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=LOCAL_TZ)


def mark(step: str, day: str, subject: str = "", **data: Any) -> tuple[str, datetime, str, dict[str, Any]]:
    return (step, at(day), subject, data)


def clock(code: str, marks: list[Any], as_of: str, calendar: WorkCalendar = CAL) -> Any:
    found = [c for c in clocks(marks, calendar, POLICY, at(as_of, 12)) if c.code == code]
    assert found, f"no {code} clock"
    return found[-1]


ACCEPTED_BEFORE_NATIONAL_DAY = [
    mark("receive", "2025-09-25"), mark("forward", "2025-09-25"), mark("sign", "2025-09-26"),
    mark("accept", "2025-09-30", committed_days=5),
]


def test_committed_deadline_across_national_day_counts_the_make_up_saturday() -> None:
    # Oct 1-8 2025 are holidays; Saturday Oct 11 is a make-up working day.
    c = clock("committed", ACCEPTED_BEFORE_NATIONAL_DAY, "2025-10-09")
    assert (c.due, c.holder, c.provisional) == (date(2025, 10, 14), Party.HANDLING_PLACE, False)
    assert c.status is ClockStatus.RUNNING and c.warn_from == date(2025, 10, 13)
    assert clock("committed", ACCEPTED_BEFORE_NATIONAL_DAY, "2025-10-13").status is ClockStatus.WARNING
    assert clock("committed", ACCEPTED_BEFORE_NATIONAL_DAY, "2025-10-14").status is ClockStatus.WARNING
    assert clock("committed", ACCEPTED_BEFORE_NATIONAL_DAY, "2025-10-15").status is ClockStatus.BREACHED


def test_supplement_notice_across_spring_festival_2025() -> None:
    # Signed in on Fri Jan 24 2025: Sun Jan 26 is a make-up working day (1st), Mon Jan 27 (2nd),
    # Jan 28 - Feb 4 are holidays, Feb 5, 6, 7 are the 3rd-5th; Sat Feb 8 would be the 6th (make-up).
    marks = [mark("receive", "2025-01-23"), mark("forward", "2025-01-23"), mark("sign", "2025-01-24")]
    c = clock("supplement_notice", marks, "2025-01-27")
    assert c.due == date(2025, 2, 7) and c.status is ClockStatus.RUNNING


def test_supplement_pauses_nothing_but_hands_the_clock_to_the_applicant() -> None:
    marks = [mark("receive", "2025-03-03"), mark("forward", "2025-03-03"), mark("sign", "2025-03-04"),
             mark("request_supplement", "2025-03-05")]
    notice = clock("supplement_notice", marks, "2025-03-20")
    assert notice.status is ClockStatus.MET
    waiting = clock("supplement", marks, "2025-03-20")
    assert (waiting.holder, waiting.due, waiting.status) == (Party.APPLICANT, None, ClockStatus.RUNNING)


def test_late_supplement_notice_means_deemed_accepted() -> None:
    marks = [mark("receive", "2025-03-03"), mark("forward", "2025-03-03"), mark("sign", "2025-03-04"),
             mark("request_supplement", "2025-03-17")]
    all_clocks = clocks(marks, CAL, POLICY, at("2025-03-20"))
    assert clock("supplement_notice", marks, "2025-03-20").status is ClockStatus.LATE
    assert deemed_accepted(all_clocks)


def test_suspension_pauses_the_committed_clock() -> None:
    marks = [*ACCEPTED_BEFORE_NATIONAL_DAY, mark("suspend", "2025-10-09"), mark("resume", "2025-10-13")]
    paused = clock("committed", marks[:-1], "2025-10-10")
    assert paused.status is ClockStatus.PAUSED and paused.due is None
    # Oct 9, 10, 11 (make-up) and 12 do not count: day 1 is Oct 13 ... day 5 is Oct 17.
    assert clock("committed", marks, "2025-10-13").due == date(2025, 10, 17)


def test_special_procedure_pauses_like_suspension() -> None:
    marks = [*ACCEPTED_BEFORE_NATIONAL_DAY, mark("start_special", "2025-10-09"), mark("end_special", "2025-10-13")]
    assert clock("committed", marks, "2025-10-13").due == date(2025, 10, 17)


def test_decision_stops_committed_and_starts_result_delivery_held_by_courier_after_dispatch() -> None:
    marks = [*ACCEPTED_BEFORE_NATIONAL_DAY, mark("decide", "2025-10-15"),
             mark("dispatch", "2025-10-16", method="courier_to_applicant")]
    assert clock("committed", marks, "2025-10-20").status is ClockStatus.LATE
    delivery = clock("result_delivery", marks, "2025-10-20")
    assert (delivery.holder, delivery.due) == (Party.COURIER, date(2025, 10, 29))


def test_deadline_into_an_unpublished_year_is_provisional_until_the_notice_is_loaded() -> None:
    marks = [mark("receive", "2026-12-14"), mark("forward", "2026-12-14"), mark("sign", "2026-12-15"),
             mark("accept", "2026-12-15", committed_days=20)]
    provisional = clock("committed", marks, "2026-12-16")
    assert provisional.provisional and provisional.due == date(2027, 1, 12)  # Mon-Fri rule
    notice = YearNotice(2027, frozenset(date(2027, 1, d) for d in (1, 4, 5)), frozenset(), "test notice, not real")
    official = clock("committed", marks, "2026-12-16", WorkCalendar([notice]))
    assert not official.provisional and official.due == date(2027, 1, 15)


def test_withdrawal_stops_case_clocks() -> None:
    marks = [mark("receive", "2025-03-03"), mark("forward", "2025-03-03"), mark("withdraw", "2025-03-04")]
    sign_in = clock("sign_in", marks, "2025-04-01")
    assert sign_in.status is ClockStatus.MET and not sign_in.is_open


def test_issue_and_rectification_clocks_follow_the_responsible_party() -> None:
    marks = [mark("receive", "2025-03-03"), mark("issue_raised", "2025-03-04", "Q1", holder="receiving_place"),
             mark("responsibility_assigned", "2025-03-05", "Q1", holder="courier"),
             mark("bad_review", "2025-03-06", "rating", holder="handling_place")]
    issue = clock("issue", marks, "2025-03-06")
    assert (issue.holder, issue.subject, issue.due) == (Party.COURIER, "Q1", date(2025, 3, 11))
    rectification = clock("rectification", marks, "2025-03-20")
    assert rectification.holder is Party.HANDLING_PLACE and rectification.status is ClockStatus.BREACHED


def test_as_of_the_past_ignores_later_marks() -> None:
    c = clock("committed", [*ACCEPTED_BEFORE_NATIONAL_DAY, mark("decide", "2025-10-10")], "2025-10-09")
    assert c.status is ClockStatus.RUNNING


@pytest.mark.parametrize("limit", [1, 2, 5, 20])
def test_warning_window_never_starts_after_the_due_date(limit: int) -> None:
    marks = [mark("receive", "2025-06-02"), mark("forward", "2025-06-02"), mark("sign", "2025-06-03"),
             mark("accept", "2025-06-03", committed_days=limit)]
    c = clock("committed", marks, "2025-06-03")
    assert c.warn_from is not None and c.due is not None and c.warn_from <= c.due
    assert c.due - c.warn_from < timedelta(days=limit + 10)
