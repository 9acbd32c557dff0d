"""Working-day arithmetic against the official calendars shipped in chinese-calendar 1.11.0.

Every expected date below was checked against ``chinese_calendar.is_workday`` day by day. Notices for
2027 in this file are invented test data, not the real 2027 notice.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.workdays import CalendarError, WorkCalendar, WorkdayCount, YearNotice

CAL = WorkCalendar()


def _span(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=i) for i in range((last - first).days + 1))


# Invented 2027 notice: 1-5 Jan off, Saturday 9 Jan a make-up working day.
NOTICE_2027 = YearNotice(
    year=2027,
    holidays=_span(date(2027, 1, 1), date(2027, 1, 5)),
    makeup_workdays=frozenset({date(2027, 1, 9)}),
    source="test notice 2027 (invented)",
)


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        # Spring Festival 2025: 28 Jan - 4 Feb off; Sun 26 Jan and Sat 8 Feb are make-up working days.
        (date(2025, 1, 24), 1, date(2025, 1, 26)),
        (date(2025, 1, 24), 5, date(2025, 2, 7)),
        (date(2025, 1, 24), 6, date(2025, 2, 8)),
        # Spring Festival 2026: 15-23 Feb off; Sat 14 Feb and Sat 28 Feb are make-up working days.
        (date(2026, 2, 13), 1, date(2026, 2, 14)),
        (date(2026, 2, 13), 5, date(2026, 2, 27)),
        (date(2026, 2, 13), 20, date(2026, 3, 19)),
        # National Day 2025: 1-8 Oct off; Sun 28 Sep and Sat 11 Oct are make-up working days.
        (date(2025, 9, 26), 1, date(2025, 9, 28)),
        (date(2025, 9, 26), 5, date(2025, 10, 10)),
        (date(2025, 9, 26), 6, date(2025, 10, 11)),
        (date(2025, 9, 26), 7, date(2025, 10, 13)),
        (date(2025, 9, 30), 5, date(2025, 10, 14)),
        (date(2025, 9, 30), 20, date(2025, 11, 4)),
        # Mid-Autumn + National Day 2026 (25-27 Sep, 1-7 Oct off).
        (date(2026, 9, 24), 5, date(2026, 10, 9)),
        # The start day never counts, even when it is a working day.
        (date(2025, 3, 3), 1, date(2025, 3, 4)),
        (date(2025, 3, 3), 0, date(2025, 3, 3)),
    ],
)
def test_official_deadlines(start: date, n: int, expected: date) -> None:
    assert CAL.add_workdays(start, n) == WorkdayCount(expected, provisional=False)
    assert CAL.count_workdays(start, expected) == (n, False)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 1, 26), True),  # Sunday, make-up
        (date(2025, 1, 28), False),  # Tuesday, Spring Festival
        (date(2025, 10, 8), False),  # Wednesday, National Day
        (date(2025, 10, 11), True),  # Saturday, make-up
        (date(2026, 2, 28), True),  # Saturday, make-up
        (date(2026, 3, 2), True),  # ordinary Monday
        (date(2026, 3, 7), False),  # ordinary Saturday
    ],
)
def test_is_workday_official(day: date, expected: bool) -> None:
    assert CAL.is_workday(day) == (expected, False)


def test_packaged_years_are_official_and_others_provisional() -> None:
    assert CAL.is_official(2004)
    assert CAL.is_official(2026)
    assert not CAL.is_official(2003)
    assert not CAL.is_official(2027)
    assert CAL.is_workday(date(2027, 1, 1)) == (True, True)  # Friday, Mon-Fri rule
    assert CAL.is_workday(date(2027, 1, 2)) == (False, True)  # Saturday
    assert CAL.is_workday(date(2003, 6, 2)) == (True, True)


def test_deadline_into_unpublished_year_is_provisional_mon_to_fri() -> None:
    # 12 working days remain in Dec 2026; then Fri 1 Jan, 4-8 Jan, 11-12 Jan under Mon-Fri.
    assert CAL.add_workdays(date(2026, 12, 15), 20) == WorkdayCount(date(2027, 1, 12), provisional=True)
    assert CAL.count_workdays(date(2026, 12, 15), date(2027, 1, 12)) == (20, True)
    # Staying inside 2026 is official even from the same start.
    assert CAL.add_workdays(date(2026, 12, 15), 12) == WorkdayCount(date(2026, 12, 31), provisional=False)
    assert CAL.add_workdays(date(2026, 12, 30), 5) == WorkdayCount(date(2027, 1, 6), provisional=True)


def test_loading_a_notice_makes_the_year_official_and_honours_it() -> None:
    cal = WorkCalendar([NOTICE_2027])
    assert cal.is_official(2027)
    # Dec 31 (1), 1-5 Jan off, 6-8 Jan (2-4), Saturday 9 Jan make-up (5).
    assert cal.add_workdays(date(2026, 12, 30), 5) == WorkdayCount(date(2027, 1, 9), provisional=False)
    # 12 in December, 6-9 Jan (16), 11-14 Jan (20).
    assert cal.add_workdays(date(2026, 12, 15), 20) == WorkdayCount(date(2027, 1, 14), provisional=False)
    assert cal.is_workday(date(2027, 1, 4)) == (False, False)
    assert cal.is_workday(date(2027, 1, 9)) == (True, False)
    assert cal.is_workday(date(2027, 1, 16)) == (False, False)  # unlisted Saturday
    assert cal.count_workdays(date(2026, 12, 31), date(2027, 1, 5)) == (0, False)


def test_notice_overrides_a_packaged_year_for_the_whole_year() -> None:
    corrected = YearNotice(
        year=2025,
        holidays=_span(date(2025, 10, 1), date(2025, 10, 7)),
        makeup_workdays=frozenset({date(2025, 9, 28), date(2025, 10, 11)}),
        source="test correction 2025 (invented)",
    )
    cal = WorkCalendar([corrected])
    assert CAL.is_workday(date(2025, 10, 8)) == (False, False)
    assert cal.is_workday(date(2025, 10, 8)) == (True, False)
    # The notice replaces the packaged year entirely: Spring Festival is not in it.
    assert cal.is_workday(date(2025, 1, 28)) == (True, False)
    assert cal.add_workdays(date(2025, 9, 26), 5) == WorkdayCount(date(2025, 10, 9), provisional=False)
    assert cal.is_workday(date(2024, 10, 1)) == (False, False)  # other years untouched


def test_skip_days_do_not_count() -> None:
    paused = {date(2025, 9, 29), date(2025, 9, 30)}
    # Without the pause: 28 Sep, 29 Sep, 30 Sep, 9 Oct, 10 Oct.
    result = CAL.add_workdays(date(2025, 9, 26), 5, skip=paused.__contains__)
    assert result == WorkdayCount(date(2025, 10, 13), provisional=False)
    assert CAL.count_workdays(date(2025, 9, 26), date(2025, 10, 13), skip=paused.__contains__) == (5, False)
    # Pausing on days that are not working days changes nothing.
    holidays = _span(date(2025, 10, 1), date(2025, 10, 8)).__contains__
    assert CAL.add_workdays(date(2025, 9, 26), 5, skip=holidays).day == date(2025, 10, 10)


def test_count_workdays_empty_and_reversed_ranges() -> None:
    assert CAL.count_workdays(date(2025, 9, 30), date(2025, 10, 8)) == (0, False)
    assert CAL.count_workdays(date(2025, 3, 3), date(2025, 3, 3)) == (0, False)
    assert CAL.count_workdays(date(2025, 3, 10), date(2025, 3, 3)) == (0, False)
    assert CAL.count_workdays(date(2027, 3, 10), date(2027, 3, 3)) == (0, False)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="n must be"):
        CAL.add_workdays(date(2025, 3, 3), -1)
    with pytest.raises(TypeError, match="datetime"):
        CAL.is_workday(datetime(2025, 3, 3, 9, 0))


@pytest.mark.parametrize(
    ("holidays", "makeups", "message"),
    [
        (frozenset({date(2026, 12, 31)}), frozenset(), "2026-12-31 is not in 2027"),
        (frozenset(), frozenset({date(2028, 1, 1)}), "2028-01-01 is not in 2027"),
        (frozenset({date(2027, 1, 2)}), frozenset({date(2027, 1, 2)}), "both"),
    ],
)
def test_invalid_notice_rejected(holidays: frozenset[date], makeups: frozenset[date], message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        YearNotice(2027, holidays, makeups, "bad notice")


def test_two_notices_for_one_year_rejected() -> None:
    with pytest.raises(CalendarError, match="two notices for 2027"):
        WorkCalendar([NOTICE_2027, NOTICE_2027])


@given(
    start=st.dates(min_value=date(2020, 1, 1), max_value=date(2028, 12, 31)),
    n=st.integers(min_value=0, max_value=60),
)
def test_add_and_count_agree(start: date, n: int) -> None:
    result = CAL.add_workdays(start, n)
    assert CAL.count_workdays(start, result.day) == (n, result.provisional)
    assert n == 0 or CAL.is_workday(result.day)[0]
