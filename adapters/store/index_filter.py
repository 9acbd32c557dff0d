"""The list filters as a plain predicate: the memory index uses it, and the SQL indexes are tested
against it (same rows in, same rows out)."""

from __future__ import annotations

from hub.application.ports import CaseQuery, CaseRow, DueFilter


def matches(row: CaseRow, query: CaseQuery) -> bool:
    if query.states and row.state not in query.states:
        return False
    if query.partner and query.partner not in (row.receiving_site, row.handling_site, *row.co_handling_sites):
        return False
    if query.due is DueFilter.BREACHED:
        return row.next_due is not None and row.next_due < query.as_of
    if query.due is DueFilter.WARNING_OR_BREACHED:
        return row.next_warn is not None and row.next_warn <= query.as_of
    return True
