"""The case list's filters are checked like every other request: each refusal names its field."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from hub.application import commands as c
from hub.application.ports import CaseQuery, DueFilter
from hub.domain.errors import InvalidInput

TODAY = date(2026, 12, 10)


def parse(**data: Any) -> CaseQuery:
    return c.parse(c.ListCasesQuery, {"as_of": TODAY, **data}).to_query()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"page_size": 501}, "page_size", "须在 0 到 500 之间"),
        ({"page_size": -1}, "page_size", "须在 0 到 500 之间"),
        ({"states": ["forwarded", "\x00invalid"]}, "states", "包含未知的状态"),
        ({"due": "\x00invalid"}, "due", "取值无效"),
        ({"partner": "32050"}, "partner", "须为 6 位行政区划代码"),
        ({"partner": " 320500"}, "partner", "须为 6 位行政区划代码"),
        ({"page_token": "not a token"}, "page_token", "无效的分页标记"),
    ],
)
def test_a_bad_filter_is_refused_by_name(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(**data)
    assert [(v.field, v.description) for v in refused.value.violations] == [(field, message)]


def test_unset_filters_read_as_none_and_the_default_page() -> None:
    assert parse(states=[None]) == CaseQuery(as_of=TODAY, page_size=c.DEFAULT_PAGE)


def test_the_filters_and_page_token_become_the_read_models_query() -> None:
    last = str(uuid4())
    query = parse(states=["forwarded", None], due="breached", partner="320500", page_size=3,
                  page_token=c.page_token(last))
    assert query == CaseQuery(as_of=TODAY, states=frozenset({"forwarded"}), due=DueFilter.BREACHED,
                              partner="320500", page_size=3, after=last)
