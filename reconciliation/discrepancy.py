"""Discrepancy cases (差异件): differences reconciliation must not repair on its own.

A fork or a lost chain is handed to people with both versions kept: opened (by a run) → in
review → resolved with a reason, by whom; every step an event. One id per (partner, case, origin,
kind), so rerunning reconciliation never opens the same difference twice; if a resolved one is
seen again it is reopened. A register per partner lists them for the report.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from hub.domain.errors import InvalidInput, RuleViolation
from hub.domain.values import LabelledEnum

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:discrepancy")


class Status(LabelledEnum):
    OPEN = ("open", "待处理")
    IN_REVIEW = ("in_review", "核查中")
    RESOLVED = ("resolved", "已处理")


def discrepancy_id(partner: str, case_id: UUID, origin: str, kind: str) -> UUID:
    return uuid5(_NAMESPACE, f"{partner}/{case_id}/{origin}/{kind}")


def register_id(partner: str) -> UUID:
    return uuid5(_NAMESPACE, f"register/{partner}")


class Discrepancy(Aggregate):
    TOPIC = "tongban.discrepancy:Discrepancy"

    class Event(Aggregate.Event):
        TOPIC = "tongban.discrepancy:Discrepancy.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.discrepancy:Discrepancy.Created"

    @event("DiscrepancyOpened", topic="tongban.discrepancy:DiscrepancyOpened")
    def __init__(
        self, *, id: UUID, partner: str, case_id: str, origin: str, kind: str, ours: int, theirs: int,
        lost_by: str, first_differing_seq: int, our_event: dict[str, Any] | None,
        their_event: dict[str, Any] | None, run: int,
    ) -> None:
        self.partner, self.case_id, self.origin, self.kind = partner, case_id, origin, kind
        self.ours, self.theirs, self.lost_by = ours, theirs, lost_by
        self.first_differing_seq = first_differing_seq
        self.our_event, self.their_event = our_event, their_event
        self.runs = [run]
        self.status = Status.OPEN
        self.reviewer: dict[str, str] | None = None
        self.resolution: dict[str, Any] | None = None

    @classmethod
    def open(cls, **facts: Any) -> Discrepancy:
        return cls(id=discrepancy_id(facts["partner"], UUID(facts["case_id"]), facts["origin"], facts["kind"]),
                   **facts)

    @event("DiscrepancyReopened", topic="tongban.discrepancy:DiscrepancyReopened")
    def reopen(self, *, run: int, ours: int, theirs: int) -> None:
        self.status, self.ours, self.theirs, self.resolution = Status.OPEN, ours, theirs, None
        self.runs.append(run)

    def start_review(self, by: dict[str, str]) -> None:
        if self.status is not Status.OPEN:
            raise RuleViolation("DISCREPANCY_STATE", f"差异件当前为「{self.status.label}」，不能开始核查")
        self._review_started(by=by)

    @event("DiscrepancyReviewStarted", topic="tongban.discrepancy:DiscrepancyReviewStarted")
    def _review_started(self, *, by: dict[str, str]) -> None:
        self.status, self.reviewer = Status.IN_REVIEW, by

    def resolve(self, reason: str, by: dict[str, str]) -> None:
        if self.status is Status.RESOLVED:
            raise RuleViolation("DISCREPANCY_STATE", "差异件已处理")
        if not reason.strip():
            raise InvalidInput.one("reason", "处理差异件须写明理由")
        self._resolved(reason=reason.strip(), by=by)

    @event("DiscrepancyResolved", topic="tongban.discrepancy:DiscrepancyResolved")
    def _resolved(self, *, reason: str, by: dict[str, str]) -> None:
        self.status = Status.RESOLVED
        self.resolution = {"reason": reason, "by": by}


class DiscrepancyRegister(Aggregate):
    """The ids of every discrepancy opened with one partner (for the report; they are few)."""

    TOPIC = "tongban.discrepancy:DiscrepancyRegister"

    class Event(Aggregate.Event):
        TOPIC = "tongban.discrepancy:DiscrepancyRegister.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.discrepancy:DiscrepancyRegister.Created"

    @event("DiscrepancyRegisterOpened", topic="tongban.discrepancy:DiscrepancyRegisterOpened")
    def __init__(self, *, id: UUID, partner: str) -> None:
        self.partner = partner
        self.listed: list[str] = []

    @classmethod
    def for_partner(cls, partner: str) -> DiscrepancyRegister:
        return cls(id=register_id(partner), partner=partner)

    @event("DiscrepancyListed", topic="tongban.discrepancy:DiscrepancyListed")
    def list(self, *, discrepancy_id: str) -> None:
        self.listed.append(discrepancy_id)
