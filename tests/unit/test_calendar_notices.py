"""Loading holiday-notice files. The dates here are invented test data, not a real notice."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from adapters.calendar_notices import load_notice, load_notices
from hub.domain.workdays import CalendarError, WorkCalendar, WorkdayCount

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "calendar-notice.example.toml"

GOOD = """\
year = 2027
source = "test notice 2027 (invented)"
makeup_workdays = [2027-01-09]

[[holiday]]
name = "元旦"
from = 2027-01-01
to = 2027-01-05
"""


def test_loads_good_file(tmp_path: Path) -> None:
    (tmp_path / "2027.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "README.txt").write_text("not a notice", encoding="utf-8")
    [notice] = load_notices(tmp_path)
    assert notice.year == 2027
    assert notice.source == "test notice 2027 (invented)"
    assert notice.holidays == {date(2027, 1, d) for d in range(1, 6)}
    assert notice.makeup_workdays == {date(2027, 1, 9)}
    cal = WorkCalendar([notice])
    assert cal.add_workdays(date(2026, 12, 30), 5) == WorkdayCount(date(2027, 1, 9), provisional=False)


def test_missing_directory_holds_no_notices(tmp_path: Path) -> None:
    assert load_notices(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("year = 2027\nsource = \n", "Invalid value"),
        (GOOD.replace('source = "test notice 2027 (invented)"\n', ""), "missing key 'source'"),
        (GOOD.replace("year = 2027", 'year = "2027"'), "'year' must be an integer"),
        (GOOD.replace("to = 2027-01-05", ""), "missing key 'to'"),
        (GOOD.replace("to = 2027-01-05", 'to = "2027-01-05"'), "not a TOML local date"),
        (GOOD.replace("to = 2027-01-05", "to = 2027-01-05T00:00:00"), "not a TOML local date"),
        (GOOD.replace("[2027-01-09]", "2027-01-09"), "must be an array"),
        (GOOD.replace("[2027-01-09]", "[2028-01-08]"), "2028-01-08 is not in 2027"),
        (GOOD.replace("[2027-01-09]", "[2027-01-02]"), "both"),
        (GOOD.replace("makeup_workdays", "makeup_workday"), "unknown key"),
        (GOOD.replace("to = 2027-01-05", "to = 2026-12-31"), "before"),
    ],
)
def test_bad_file_names_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "a-good.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "broken.toml").write_text(text, encoding="utf-8")
    with pytest.raises(CalendarError) as info:
        load_notices(tmp_path)
    message = str(info.value)
    assert "broken.toml" in message
    assert problem in message
    assert "\n" not in message


def test_two_files_for_one_year_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.toml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(CalendarError, match=r"b\.toml: year 2027 is also given by .*a\.toml"):
        load_notices(tmp_path)


def test_docs_example_loads(tmp_path: Path) -> None:
    notice = load_notice(EXAMPLE)
    assert notice.year == 2099
    assert date(2099, 10, 1) in notice.holidays
    assert date(2099, 9, 26) in notice.makeup_workdays
    shutil.copy(EXAMPLE, tmp_path)
    assert load_notices(tmp_path) == [notice]
