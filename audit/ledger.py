"""The site's signed checkpoints of its event chain, kept as events in its own store.

Each checkpoint signs the chain head at a position; partners countersign and keep a copy, so a
site that rewrote its history could not produce a chain matching what it signed earlier. The
ledger is local evidence (not a shared case event); being stored, it is itself chained.

The ledger's state keeps only its RECENT latest checkpoints: a site signs one a minute for years, and the
ledger is loaded on every tick. Every checkpoint stays in the ledger's events, where an export of an old
case finds the one covering it (``covering``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:checkpoints")
RECENT = 64  # checkpoints kept in state: the latest is countersigned within a tick or two


def ledger_id(site: str, kept_by: str = "") -> UUID:
    """Our own ledger (``kept_by`` empty), or the ledger where ``kept_by`` keeps ``site``'s checkpoints."""
    return uuid5(_NAMESPACE, f"{site}/{kept_by}" if kept_by else site)


class CheckpointLedger(Aggregate):
    TOPIC = "tongban.audit:CheckpointLedger"

    class Event(Aggregate.Event):
        TOPIC = "tongban.audit:CheckpointLedger.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.audit:CheckpointLedger.Created"

    @event("CheckpointLedgerOpened", topic="tongban.audit:CheckpointLedgerOpened")
    def __init__(self, *, id: UUID, site: str) -> None:
        self.site = site
        self.checkpoints: list[dict[str, Any]] = []

    @classmethod
    def open(cls, site: str, kept_by: str = "") -> CheckpointLedger:
        return cls(id=ledger_id(site, kept_by), site=site)

    @event("CheckpointSigned", topic="tongban.audit:CheckpointSigned")
    def record(self, *, signed: dict[str, Any]) -> None:
        """``signed``: a SignedCheckpoint as JSON primitives (audit/checkpoints.py)."""
        self._add(signed)

    @event("CheckpointCountersigned", topic="tongban.audit:CheckpointCountersigned")
    def countersigned(self, *, position: int, countersignature: dict[str, Any]) -> None:
        for signed in self.checkpoints:
            if int(signed["checkpoint"]["position"]) == position:
                signed["countersignatures"].append(countersignature)

    @event("PartnerCheckpointKept", topic="tongban.audit:PartnerCheckpointKept")
    def keep(self, *, signed: dict[str, Any]) -> None:
        """A partner's checkpoint we countersigned, kept as evidence (in our ledger for that partner)."""
        self._add(signed)

    def _add(self, signed: dict[str, Any]) -> None:
        self.checkpoints.append(signed)
        del self.checkpoints[:-RECENT]

    @property
    def last_position(self) -> int:
        return int(self.checkpoints[-1]["checkpoint"]["position"]) if self.checkpoints else 0


def covering(events: Iterable[Any], position: int) -> dict[str, Any] | None:
    """The first checkpoint at or after ``position`` in a ledger's events (in order), with every
    countersignature it received; one checkpoint is held at a time, however long the ledger."""
    signed_type, countersigned_type = CheckpointLedger.CheckpointSigned, CheckpointLedger.CheckpointCountersigned  # type: ignore[attr-defined]
    found: dict[str, Any] | None = None
    for e in events:
        if found is None:
            if isinstance(e, signed_type) and int(e.signed["checkpoint"]["position"]) >= position:
                found = copy.deepcopy(e.signed)
        elif isinstance(e, countersigned_type) and e.position == int(found["checkpoint"]["position"]):
            found["countersignatures"].append(e.countersignature)
    return found
