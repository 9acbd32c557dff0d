"""The journal of a reconcile run, so a crash in the middle loses nothing and repeats nothing.

Runs are numbered per partner. A run records what it found and planned, then each batch of
repairs as it is applied, then its summary; finishing stores the run number as the partner's
tracking position in the same transaction. A run that started but never finished is resumed
before the next one: its remaining repairs are applied (ingest is idempotent, so a repair that
landed just before the crash is a no-op).
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:reconcile-run")


def run_id(partner: str, number: int) -> UUID:
    return uuid5(_NAMESPACE, f"{partner}/{number}")


def tracking_name(partner: str) -> str:
    return f"reconcile:{partner}"


class ReconcileRun(Aggregate):
    TOPIC = "tongban.reconcile:ReconcileRun"

    class Event(Aggregate.Event):
        TOPIC = "tongban.reconcile:ReconcileRun.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.reconcile:ReconcileRun.Created"

    @event("ReconcileStarted", topic="tongban.reconcile:ReconcileStarted")
    def __init__(self, *, id: UUID, partner: str, number: int, params: dict[str, int]) -> None:
        self.partner, self.number, self.params = partner, number, params
        self.plan: list[dict[str, Any]] = []
        self.done: set[str] = set()
        self.summary: dict[str, Any] | None = None

    @classmethod
    def start(cls, partner: str, number: int, params: dict[str, int]) -> ReconcileRun:
        return cls(id=run_id(partner, number), partner=partner, number=number, params=params)

    @event("DifferencesClassified", topic="tongban.reconcile:DifferencesClassified")
    def classified(self, *, findings: list[dict[str, Any]], tripped: bool, exchange: dict[str, int]) -> None:
        self.plan = [] if tripped else [f for f in findings if f["action"] in ("pull", "push")]
        self.findings, self.tripped, self.exchange = findings, tripped, exchange

    @event("RepairsApplied", topic="tongban.reconcile:RepairsApplied")
    def repaired(self, *, keys: list[str]) -> None:
        self.done.update(keys)

    @event("ReconcileFinished", topic="tongban.reconcile:ReconcileFinished")
    def finish(self, *, summary: dict[str, Any]) -> None:
        self.summary = summary

    @property
    def remaining(self) -> list[dict[str, Any]]:
        return [f for f in self.plan if repair_key(f) not in self.done]


def repair_key(finding: dict[str, Any]) -> str:
    return f"{finding['case_id']}/{finding['origin']}/{finding['action']}"
