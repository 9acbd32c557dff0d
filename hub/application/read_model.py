"""The case read model: one row per case (no PII), folded from the site's log, for lists and dashboards.

The rows live in a ``CaseIndex`` (memory, SQLite or PostgreSQL), which stores them with the log
position they reach in one transaction. Folding runs in the background (adapters' IndexFollower);
a staff list closes a small lag itself, so a clerk sees what they just did, but never waits behind a
backlog (a bulk load is a million cases to fold).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date
from uuid import UUID

from eventsourcing.persistence import Notification

from hub.application.case_clocks import CaseClocks
from hub.application.ports import CaseIndex, CaseQuery, CaseRow, IndexSummary, SiteLog
from hub.domain.case import CASE_TOPIC_PREFIX, Case
from hub.domain.deadlines import Clock, ClockStatus

QUERY_CATCH_UP = 2_000  # log entries a list query folds before answering; more is a backlog


class CaseReadModel:
    def __init__(self, log: SiteLog, index: CaseIndex, clocks: CaseClocks) -> None:
        self.log, self.index, self.clocks = log, index, clocks
        self._lock = threading.Lock()

    def list_cases(self, query: CaseQuery) -> list[CaseRow]:
        self.refresh(limit=QUERY_CATCH_UP)  # a staff member sees what they just did; a backlog is the follower's
        return self.index.query(query)

    def summary(self, as_of: date) -> IndexSummary:
        """Counts over the rows as they stand (never folds: a scrape answers at once)."""
        return self.index.summary(self.log.site, as_of)

    def lag(self) -> int:
        """Log entries the read model has not folded yet."""
        return max(self.log.head() - self.index.position(), 0)

    def refresh(self, batch: int = 500, limit: int | None = None) -> bool:
        """Bring the read model toward the end of the log, at most ``limit`` entries (None: all the way);
        True once it is there. The lock is held one batch at a time, so nobody waits for more than one
        batch of another caller's catch-up."""
        read = 0
        while limit is None or read < limit:
            with self._lock:
                position = self.index.position()
                wanted = batch if limit is None else min(batch, limit - read)
                notifications = self.log.read(start=position + 1, limit=wanted)
                if not notifications:
                    return True
                self.index.upsert(self._rows(notifications), notifications[-1].id)
            read += len(notifications)
        return False

    def _rows(self, notifications: Sequence[Notification]) -> list[CaseRow]:
        """The rows of the cases these log entries touch. A case whose entries here begin with its first
        event is folded from them (a bulk load's cases: no query each); any other is loaded."""
        entries: dict[UUID, list[Notification]] = {}
        for n in notifications:
            if n.topic.startswith(CASE_TOPIC_PREFIX):
                entries.setdefault(UUID(str(n.originator_id)), []).append(n)
        rows = []
        for case_id, own in entries.items():
            case: Case | None = None
            if own[0].originator_version == 1:
                for stored in own:
                    event = self.log.decode(stored)
                    assert isinstance(event, Case.Event)
                    folded = event.mutate(case)
                    assert isinstance(folded, Case)
                    case = folded
            rows.append(self.row(case if case is not None else self.log.get_case(case_id)))
        return rows

    def row(self, case: Case) -> CaseRow:
        all_clocks = self.clocks(case)
        open_clocks = [c for c in all_clocks if c.is_open and c.due is not None]
        return CaseRow(
            case_id=str(case.id),
            case_number=case.case_number,
            state=case.state.value,
            item_code=str(case.item["code"]),
            item_name=str(case.item["name"]),
            receiving_site=case.receiving_site,
            handling_site=case.handling_site,
            co_handling_sites=tuple(case.co_handling_sites),
            version=case.version,
            received_at=case.created_on.isoformat(),
            updated_at=case.modified_on.isoformat(),
            next_due=min((c.due for c in open_clocks if c.due), default=None),
            next_warn=min((c.warn_from for c in open_clocks if c.warn_from), default=None),
            due_provisional=any(c.provisional for c in open_clocks),
            review=_review(case, all_clocks),
        )


def _review(case: Case, case_clocks: list[Clock]) -> str:
    if case.rating is None or not case.rating["bad_review"]:
        return ""
    if case.rating["outcome"] is None:
        return "open"
    rectification = next((c for c in case_clocks if c.code == "rectification"), None)
    return "late" if rectification is not None and rectification.status is ClockStatus.LATE else "on_time"
