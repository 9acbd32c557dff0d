"""Load yearly holiday notices (TOML files an operator drops in a directory) as :class:`YearNotice` data.

This is how a newly published year, or a correction to the packaged calendar, reaches the hub without a
release. A bad file must stop loading with a one-line error naming the file: silently skipping it would
count deadlines on the wrong calendar. See docs/calendar-notice.example.toml for the format.
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hub.domain.workdays import CalendarError, YearNotice

__all__ = ["load_notice", "load_notices"]

_TOP_KEYS = frozenset({"year", "source", "holiday", "makeup_workdays"})
_HOLIDAY_KEYS = frozenset({"name", "from", "to"})


def load_notices(directory: Path) -> list[YearNotice]:
    """Every ``*.toml`` notice in ``directory``, in file-name order; a missing directory holds none."""
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise CalendarError(f"{directory}: not a directory")
    notices: list[YearNotice] = []
    seen: dict[int, Path] = {}
    for path in sorted(directory.glob("*.toml")):
        notice = load_notice(path)
        if notice.year in seen:
            raise CalendarError(f"{path}: year {notice.year} is also given by {seen[notice.year]}")
        seen[notice.year] = path
        notices.append(notice)
    return notices


def load_notice(path: Path) -> YearNotice:
    """One notice file; any problem raises :class:`CalendarError` naming the file."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
        return _parse(data)
    except (OSError, tomllib.TOMLDecodeError, CalendarError) as e:
        message = " ".join(str(e).split())
        raise CalendarError(f"{path}: {message}") from e


def _parse(data: dict[str, Any]) -> YearNotice:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise CalendarError(f"unknown key(s) {', '.join(unknown)}")
    for key in ("year", "source", "holiday"):
        if key not in data:
            raise CalendarError(f"missing key '{key}'")
    year, source = data["year"], data["source"]
    if type(year) is not int:  # bool is an int subclass; `year = true` is a mistake
        raise CalendarError(f"'year' must be an integer, got {year!r}")
    if not isinstance(source, str) or not source.strip():
        raise CalendarError("'source' must be a non-empty string")
    tables = data["holiday"]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise CalendarError("'holiday' must be [[holiday]] tables")
    holidays: set[date] = set()
    for i, table in enumerate(tables, start=1):
        holidays.update(_holiday_days(table, i))
    makeups = data.get("makeup_workdays", [])
    if not isinstance(makeups, list):
        raise CalendarError("'makeup_workdays' must be an array of dates")
    makeup_days = {_date(value, "makeup_workdays") for value in makeups}
    return YearNotice(year, frozenset(holidays), frozenset(makeup_days), source)


def _holiday_days(table: dict[str, Any], index: int) -> list[date]:
    where = f"holiday #{index}"
    unknown = sorted(set(table) - _HOLIDAY_KEYS)
    if unknown:
        raise CalendarError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in sorted(_HOLIDAY_KEYS):
        if key not in table:
            raise CalendarError(f"{where}: missing key '{key}'")
    name = table["name"]
    if not isinstance(name, str) or not name.strip():
        raise CalendarError(f"{where}: 'name' must be a non-empty string")
    where = f"holiday {name!r}"
    first, last = _date(table["from"], f"{where} 'from'"), _date(table["to"], f"{where} 'to'")
    if last < first:
        raise CalendarError(f"{where}: 'to' {last} is before 'from' {first}")
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _date(value: object, where: str) -> date:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise CalendarError(f"{where}: {value!r} is not a TOML local date (YYYY-MM-DD)")
    return value
