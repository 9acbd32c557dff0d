"""The official working-day calendar (工作日) that every legal deadline is counted in.

Rules:
- Counting starts the day *after* the start day (期间开始之日不计算在内): the n-th working day after
  ``start`` is the deadline, and ``start`` itself never counts.
- A year's calendar comes from the State Council's holiday notice. The chinese-calendar package carries
  the published years; a :class:`YearNotice` (data an operator loads, no release needed) overrides the
  package for its year, to correct it or to add a newly published year.
- A year that neither covers is counted Monday-Friday as a *provisional* rule, and every answer that
  looked at such a year says so, so the deadline can be shown as provisional and recomputed once the
  notice is loaded. A deadline must never crash because next year's notice is not out yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import chinese_calendar

__all__ = ["CalendarError", "WorkCalendar", "WorkdayCount", "YearNotice"]

_ONE_DAY = timedelta(days=1)


class CalendarError(ValueError):
    """Calendar data is inconsistent (a bad notice), so no deadline may be computed from it."""


@dataclass(frozen=True)
class YearNotice:
    """One year's holiday notice as data: the days off and the make-up working days (调休上班).

    Every other day follows the Monday-Friday rule. A notice replaces the packaged calendar for its
    whole year, so it must list all of that year's holidays and make-up days.
    """

    year: int
    holidays: frozenset[date]
    makeup_workdays: frozenset[date]
    source: str

    def __post_init__(self) -> None:
        for kind, days in (("holiday", self.holidays), ("make-up working day", self.makeup_workdays)):
            for day in days:
                if isinstance(day, datetime) or not isinstance(day, date):
                    raise CalendarError(f"{self.source}: {kind} {day!r} is not a date")
            for day in sorted(days):
                if day.year != self.year:
                    raise CalendarError(f"{self.source}: {kind} {day.isoformat()} is not in {self.year}")
        both = sorted(self.holidays & self.makeup_workdays)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise CalendarError(f"{self.source}: {listed} listed both as holiday and as make-up working day")

    def workdays(self) -> frozenset[date]:
        """All working days of the year under this notice."""
        return frozenset(
            d
            for d in _days_of(self.year)
            if d in self.makeup_workdays or (d.weekday() < 5 and d not in self.holidays)
        )


@dataclass(frozen=True)
class WorkdayCount:
    """A computed deadline; ``provisional`` means part of the count used the Mon-Fri fallback."""

    day: date
    provisional: bool


class WorkCalendar:
    """Working days from loaded notices, else chinese-calendar, else provisional Monday-Friday."""

    def __init__(self, notices: Iterable[YearNotice] = ()) -> None:
        by_year: dict[int, YearNotice] = {}
        for notice in notices:
            earlier = by_year.get(notice.year)
            if earlier is not None:
                raise CalendarError(
                    f"two notices for {notice.year}: {earlier.source!r} and {notice.source!r}"
                )
            by_year[notice.year] = notice
        self._notices = by_year
        self._years: dict[int, tuple[frozenset[date], bool]] = {}

    def is_official(self, year: int) -> bool:
        """Whether ``year`` is counted from an official calendar rather than the provisional rule."""
        return not self._year(year)[1]

    def is_workday(self, day: date) -> tuple[bool, bool]:
        """Return ``(is a working day, provisional)`` for ``day``."""
        workdays, provisional = self._year(_as_date(day).year)
        return day in workdays, provisional

    def add_workdays(self, start: date, n: int, skip: Callable[[date], bool] | None = None) -> WorkdayCount:
        """The n-th working day after ``start``; days where ``skip(day)`` holds (paused clock) don't count.

        ``n == 0`` returns ``start`` (nothing was counted, so it is never provisional).
        """
        day = _as_date(start)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        provisional = False
        year = -1
        workdays: frozenset[date] = frozenset()
        remaining = n
        while remaining:
            day += _ONE_DAY
            if day.year != year:
                year = day.year
                workdays, year_provisional = self._year(year)
                provisional = provisional or year_provisional
            if day in workdays and (skip is None or not skip(day)):
                remaining -= 1
        return WorkdayCount(day, provisional)

    def count_workdays(
        self, after: date, through: date, skip: Callable[[date], bool] | None = None
    ) -> tuple[int, bool]:
        """Working days d with ``after < d <= through`` not skipped, and whether any year was provisional."""
        day, last = _as_date(after), _as_date(through)
        count = 0
        provisional = False
        year = -1
        workdays: frozenset[date] = frozenset()
        while day < last:
            day += _ONE_DAY
            if day.year != year:
                year = day.year
                workdays, year_provisional = self._year(year)
                provisional = provisional or year_provisional
            if day in workdays and (skip is None or not skip(day)):
                count += 1
        return count, provisional

    def _year(self, year: int) -> tuple[frozenset[date], bool]:
        cached = self._years.get(year)
        if cached is None:
            notice = self._notices.get(year)
            if notice is not None:
                cached = (notice.workdays(), False)
            else:
                packaged = _packaged_workdays(year)
                cached = (packaged, False) if packaged is not None else (_weekdays(year), True)
            self._years[year] = cached
        return cached


def _as_date(day: date) -> date:
    # A datetime never equals a date, so it would silently miss every working day.
    if isinstance(day, datetime):
        raise TypeError(f"expected a date, got datetime {day!r}")
    return day


def _days_of(year: int) -> Iterable[date]:
    first, last = date(year, 1, 1).toordinal(), date(year, 12, 31).toordinal()
    return (date.fromordinal(o) for o in range(first, last + 1))


@functools.lru_cache(maxsize=128)
def _packaged_workdays(year: int) -> frozenset[date] | None:
    """The year's working days from chinese-calendar, or None where it has no data for the year."""
    try:
        return frozenset(d for d in _days_of(year) if chinese_calendar.is_workday(d))
    except NotImplementedError:
        return None


@functools.lru_cache(maxsize=128)
def _weekdays(year: int) -> frozenset[date]:
    return frozenset(d for d in _days_of(year) if d.weekday() < 5)
