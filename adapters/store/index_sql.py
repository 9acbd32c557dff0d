"""Column layout of the case index, shared by the SQLite and PostgreSQL implementations."""

from __future__ import annotations

from collections.abc import Sequence

from hub.application.ports import CaseRow

COLUMNS = (
    "case_id", "case_number", "state", "item_code", "item_name", "receiving_site", "handling_site",
    "co_handling_sites", "version", "received_at", "updated_at", "next_due", "next_warn", "due_provisional",
    "review",
)
# Bump when the columns change: the index is rebuilt from the event log under the new table names.
INDEX_VERSION = 2
TABLE = f"case_index_v{INDEX_VERSION}"
POSITION_TABLE = f"{TABLE}_position"


def row_values(row: CaseRow) -> tuple[object, ...]:
    return (
        row.case_id, row.case_number, row.state, row.item_code, row.item_name, row.receiving_site,
        row.handling_site, ",".join(row.co_handling_sites), row.version, row.received_at, row.updated_at,
        row.next_due, row.next_warn, bool(row.due_provisional), row.review,
    )


def row_from(values: Sequence[object]) -> CaseRow:
    data = dict(zip(COLUMNS, values, strict=True))
    co = str(data["co_handling_sites"] or "")
    return CaseRow(
        case_id=str(data["case_id"]),
        case_number=str(data["case_number"]),
        state=str(data["state"]),
        item_code=str(data["item_code"]),
        item_name=str(data["item_name"]),
        receiving_site=str(data["receiving_site"]),
        handling_site=str(data["handling_site"]),
        co_handling_sites=tuple(c for c in co.split(",") if c),
        version=int(str(data["version"])),
        received_at=str(data["received_at"]),
        updated_at=str(data["updated_at"]),
        next_due=data["next_due"],  # type: ignore[arg-type]
        next_warn=data["next_warn"],  # type: ignore[arg-type]
        due_provisional=bool(data["due_provisional"]),
        review=str(data["review"] or ""),
    )
