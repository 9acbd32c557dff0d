"""Accountability for auditors (责任追溯): one case as one timeline across its sites.

Every site holds the same shared events for a case, so the merged timeline can be read from
either site's store; it says for each step who did it, where and when, which party was
accountable (谁办理谁负责), whether the deadline that step closed was met, and which partners
receipted the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.domain.case import Case
from hub.domain.deadlines import Clock, ClockStatus
from hub.domain.event_labels import event_label
from hub.domain.shared import SharedEvent
from hub.domain.values import Party, ResultMethod

_RECEIVING = {"CaseReceived", "IntakeRefused", "CaseForwarded"}
_APPLICANT = {"SupplementSubmitted", "CaseWithdrawn", "CaseRated", "RectificationFeedbackRecorded"}


@dataclass(frozen=True)
class TraceItem:
    order: int
    event: SharedEvent
    label: str
    responsible: Party | None
    clock: Clock | None
    receipted_by: tuple[str, ...]


def responsible_party(case: Case, event: SharedEvent) -> Party | None:
    """The party accountable for the step the event records."""
    name, data = event.type, event.data
    if name in _RECEIVING:
        return Party.RECEIVING_PLACE
    if name in _APPLICANT:
        return Party.APPLICANT
    if name == "ResultDelivered":
        method = case.result.get("method", "")
        if method == ResultMethod.ELECTRONIC_LICENCE.value:
            return Party.HANDLING_PLACE
        return Party.COURIER if method == ResultMethod.COURIER_TO_APPLICANT.value else Party.RECEIVING_PLACE
    if name == "IssueRaised":
        return Party(case.issues.get(data["issue_id"], {}).get("raised_by_party") or Party.RECEIVING_PLACE)
    if name in ("ResponsibilityAssigned",):
        return Party(data["party"])
    if name == "IssueResolved":
        held = case.issues.get(data["issue_id"], {}).get("responsible")
        return Party(held) if held else None
    if name in ("BadReviewCallbackMade", "BadReviewClosed") and case.rating is not None:
        return Party(case.rating["about"])
    return Party.HANDLING_PLACE


def trace(case: Case, clocks: list[Clock], receipts: list[dict[str, Any]], site: str) -> list[TraceItem]:
    """The case's shared events in the agreed order, each with accountability and deadline."""
    stopped: dict[tuple[datetime, str], Clock] = {
        (c.stopped_at, c.subject): c for c in clocks if c.stopped_at is not None
    }
    items = []
    for order, event in enumerate(case.shared_events(), start=1):
        subject = str(event.data.get("issue_id", "rating" if event.type == "BadReviewClosed" else ""))
        clock = stopped.get((event.occurred_at, subject)) or stopped.get((event.occurred_at, ""))
        if event.origin == site:
            by = sorted({str(r["partner"]) for r in receipts
                         if r["origin"] == site and int(r["stored_through"]) >= event.seq})
        else:
            by = [site]  # a partner's event: this site holds it
        items.append(TraceItem(order, event, event_label(event.type), responsible_party(case, event), clock, tuple(by)))
    return items


def overdue(case: Case, clocks: list[Clock]) -> list[Clock]:
    """Clocks of the case that are breached now or ended late."""
    return [c for c in clocks if c.status in (ClockStatus.BREACHED, ClockStatus.LATE)]


__all__ = ["TraceItem", "overdue", "responsible_party", "trace"]
