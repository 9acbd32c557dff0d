"""The list filters as a plain predicate: the memory index uses it, and the SQL indexes are tested
against it (same rows in, same rows out)."""

from __future__ import annotations

from hub.application.ports import CaseQuery, CaseRow


def matches(row: CaseRow, query: CaseQuery) -> bool:
    if query.states and row.state not in query.states:
        return False
    if query.partner and query.partner not in (row.receiving_site, row.handling_site, *row.co_handling_sites):
        return False
    return query.due is None or query.due.selects(row, query.as_of)
