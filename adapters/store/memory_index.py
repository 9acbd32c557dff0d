"""In-memory case index: the fake for unit tests, held to the same contract as the SQL ones."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import date

from adapters.store.index_filter import matches
from hub.application.ports import CaseQuery, CaseRow, IndexSummary


class MemoryCaseIndex:
    def __init__(self) -> None:
        self._rows: dict[str, CaseRow] = {}
        self._position = 0
        self._lock = threading.Lock()

    def position(self) -> int:
        return self._position

    def upsert(self, rows: Sequence[CaseRow], position: int) -> None:
        with self._lock:
            if position <= self._position:
                return
            for row in rows:
                self._rows[row.case_id] = row
            self._position = position

    def query(self, query: CaseQuery) -> list[CaseRow]:
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: r.case_id, reverse=True)
        selected = [r for r in rows if matches(r, query) and (query.after is None or r.case_id < query.after)]
        return selected[: query.page_size]

    def summary(self, site: str, as_of: date) -> IndexSummary:
        with self._lock:
            rows = list(self._rows.values())
        states: Counter[tuple[str, str]] = Counter(
            (r.state, r.handling_site if r.receiving_site == site else r.receiving_site) for r in rows
        )
        warning = sum(1 for r in rows if r.next_warn and r.next_due and r.next_warn <= as_of <= r.next_due)
        breached = sum(1 for r in rows if r.next_due and r.next_due < as_of)
        return IndexSummary(dict(states), warning, breached, dict(Counter(r.review for r in rows if r.review)))

    def close(self) -> None:
        return None
