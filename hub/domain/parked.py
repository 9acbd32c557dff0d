"""Parked deliveries (dead letters): our events a partner refused for good, kept at the sending site.

A partner's final refusal (PERMISSION_DENIED, INVALID_ARGUMENT, FAILED_PRECONDITION) is an answer
that sending again will not change, so the relay parks the refused case's events with the partner's
reason and goes on with other cases. The case waits: events of ours for it that come later are held
back behind the parked ones (order matters within a case), so when an operator replays the case
after the cause is fixed, the partner receives them once, in order. An operator may instead discard
the case, with a reason: the case then stays undelivered to that partner, on the record.

One ledger per (partner, channel) keeps every entry and what happened to it (parked, held back,
refused again, replayed, discarded), who did it and why; entries are never removed. Every change is
an event of the one ledger, so two writers (the relay holding back an event, an operator replaying
the case) never both succeed on a stale view: the second save fails and is done again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from hub.domain.errors import HubError, InvalidInput, RuleViolation

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:parked-deliveries")
RELAY = "relay"  # who parks and holds back: the relay itself, not a person


class ParkedStatus(StrEnum):
    PARKED = "parked"  # waiting for an operator; the case's later events are held back behind it
    REPLAYED = "replayed"  # sent again and receipted by the partner
    DISCARDED = "discarded"  # given up on by an operator, with a reason: the case stays undelivered


@dataclass(frozen=True)
class Refusal:
    """A partner's final answer to a delivery: its status code name, ErrorInfo reason and message."""

    code: str
    reason: str
    message: str


class DeliveryRefused(HubError):
    """A delivery the partner refused for good (the channel's adapter recognised a final refusal)."""

    reason = "DELIVERY_REFUSED"

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"伙伴站点拒收（{refusal.code} {refusal.reason}）：{refusal.message}")
        self.refusal = refusal
        self.metadata = {"code": refusal.code, "reason": refusal.reason}


@dataclass(frozen=True)
class ParkedEntry:
    """One parked case as an operator reads it."""

    number: int  # 1, 2, ... within the ledger: a case parked again after a replay gets a new entry
    partner: str
    channel: str
    case_id: UUID
    origin: str
    seqs: tuple[int, ...]  # the events the partner refused (from_seq first)
    types: tuple[str, ...]
    held: tuple[int, ...]  # later events of the case held back behind them
    code: str
    reason: str
    message: str
    parked_at: datetime
    status: ParkedStatus
    by: str = ""  # who replayed or discarded it
    why: str = ""  # the discard's reason
    closed_at: datetime | None = None
    refusals: int = 1  # how many times the partner refused it (a replay refused again counts)

    @property
    def from_seq(self) -> int:
        return self.seqs[0]


def ledger_id(partner: str, channel: str) -> UUID:
    return uuid5(_NAMESPACE, f"{partner}/{channel}")


class ParkedDeliveries(Aggregate):
    """Every delivery of ours that one partner refused on one channel, and what became of it."""

    TOPIC = "tongban.parked:ParkedDeliveries"

    class Event(Aggregate.Event):
        TOPIC = "tongban.parked:ParkedDeliveries.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.parked:ParkedDeliveries.Created"

    @event("ParkedDeliveriesOpened", topic="tongban.parked:ParkedDeliveriesOpened")
    def __init__(self, *, id: UUID, partner: str, channel: str) -> None:
        self.partner, self.channel = partner, channel
        self.entries: list[dict[str, Any]] = []
        self.latest: dict[str, int] = {}  # case id -> index of its newest entry

    @classmethod
    def open(cls, partner: str, channel: str) -> ParkedDeliveries:
        return cls(id=ledger_id(partner, channel), partner=partner, channel=channel)

    # ------------------------------------------------------------------ reading
    def entry(self, case_id: UUID) -> ParkedEntry | None:
        """The case's newest entry (None: never parked)."""
        index = self.latest.get(str(case_id))
        return self._view(self.entries[index]) if index is not None else None

    def status(self, case_id: UUID) -> ParkedStatus | None:
        index = self.latest.get(str(case_id))
        return ParkedStatus(self.entries[index]["status"]) if index is not None else None

    def blocked(self) -> frozenset[UUID]:
        """Cases whose events do not go out to the partner now (parked, or discarded for good)."""
        return frozenset(UUID(case) for case, i in self.latest.items()
                         if self.entries[i]["status"] != ParkedStatus.REPLAYED)

    def listed(self, *, include_closed: bool = False) -> list[ParkedEntry]:
        """Entries in the order they were parked: those still parked, or every one."""
        return [self._view(e) for e in self.entries if include_closed or e["status"] == ParkedStatus.PARKED]

    @property
    def parked_count(self) -> int:
        return sum(e["status"] == ParkedStatus.PARKED for e in self.entries)

    def _view(self, e: dict[str, Any]) -> ParkedEntry:
        return ParkedEntry(
            number=int(e["number"]), partner=self.partner, channel=self.channel, case_id=UUID(e["case_id"]),
            origin=e["origin"], seqs=tuple(e["seqs"]), types=tuple(e["types"]), held=tuple(e["held"]),
            code=e["code"], reason=e["reason"], message=e["message"], parked_at=datetime.fromisoformat(e["parked_at"]),
            status=ParkedStatus(e["status"]), by=e["by"], why=e["why"],
            closed_at=datetime.fromisoformat(e["closed_at"]) if e["closed_at"] else None,
            refusals=int(e["refusals"]),
        )

    def _open_entry(self, case_id: UUID) -> dict[str, Any]:
        index = self.latest.get(str(case_id))
        if index is None:
            raise RuleViolation("NOT_PARKED", f"办件 {case_id} 没有搁置的投递", {"case_id": str(case_id)})
        found = self.entries[index]
        if found["status"] != ParkedStatus.PARKED:
            label = "已重放" if found["status"] == ParkedStatus.REPLAYED else "已放弃"
            raise RuleViolation("NOT_PARKED", f"办件 {case_id} 的搁置投递{label}", {"case_id": str(case_id)})
        return found

    # ------------------------------------------------------------------ commands
    def park(self, case_id: UUID, origin: str, seqs: Sequence[int], types: Sequence[str], refusal: Refusal) -> None:
        """The partner refused these events of the case for good."""
        if self.status(case_id) is ParkedStatus.PARKED:
            raise RuleViolation("ALREADY_PARKED", f"办件 {case_id} 已有搁置的投递", {"case_id": str(case_id)})
        self._parked(case_id=str(case_id), origin=origin, seqs=list(seqs), types=list(types), code=refusal.code,
                     reason=refusal.reason, message=refusal.message, at=_now())

    def hold(self, case_id: UUID, seqs: Sequence[int]) -> None:
        """Later events of a parked case, not sent: they go with the case's replay."""
        self._open_entry(case_id)
        self._held(case_id=str(case_id), seqs=list(seqs))

    def refused_again(self, case_id: UUID, refusal: Refusal, by: str) -> None:
        """A replay the partner refused once more: the entry stays parked, with the newest reason."""
        self._open_entry(case_id)
        self._refused_again(case_id=str(case_id), code=refusal.code, reason=refusal.reason,
                            message=refusal.message, by=by)

    def replayed(self, case_id: UUID, through: int, by: str) -> None:
        self._open_entry(case_id)
        self._replayed(case_id=str(case_id), through=through, by=_named(by), at=_now())

    def discard(self, case_id: UUID, reason: str, by: str) -> None:
        self._open_entry(case_id)
        if not reason.strip():
            raise InvalidInput.one("reason", "放弃搁置的投递须写明理由")
        self._discarded(case_id=str(case_id), reason=reason.strip(), by=_named(by), at=_now())

    # ------------------------------------------------------------------ the facts
    @event("DeliveryParked", topic="tongban.parked:DeliveryParked")
    def _parked(
        self, *, case_id: str, origin: str, seqs: list[int], types: list[str], code: str, reason: str, message: str,
        at: str,
    ) -> None:
        self.latest[case_id] = len(self.entries)
        self.entries.append({
            "number": len(self.entries) + 1, "case_id": case_id, "origin": origin, "seqs": seqs, "types": types,
            "held": [], "code": code, "reason": reason, "message": message, "parked_at": at,
            "status": ParkedStatus.PARKED.value, "by": "", "why": "", "closed_at": None, "refusals": 1,
        })

    @event("DeliveryHeldBack", topic="tongban.parked:DeliveryHeldBack")
    def _held(self, *, case_id: str, seqs: list[int]) -> None:
        self.entries[self.latest[case_id]]["held"] += seqs

    @event("ParkedDeliveryRefusedAgain", topic="tongban.parked:ParkedDeliveryRefusedAgain")
    def _refused_again(self, *, case_id: str, code: str, reason: str, message: str, by: str) -> None:
        entry = self.entries[self.latest[case_id]]
        entry.update(code=code, reason=reason, message=message, refusals=entry["refusals"] + 1)

    @event("ParkedDeliveryReplayed", topic="tongban.parked:ParkedDeliveryReplayed")
    def _replayed(self, *, case_id: str, through: int, by: str, at: str) -> None:
        self.entries[self.latest[case_id]].update(status=ParkedStatus.REPLAYED.value, by=by, closed_at=at)

    @event("ParkedDeliveryDiscarded", topic="tongban.parked:ParkedDeliveryDiscarded")
    def _discarded(self, *, case_id: str, reason: str, by: str, at: str) -> None:
        self.entries[self.latest[case_id]].update(status=ParkedStatus.DISCARDED.value, by=by, why=reason,
                                                  closed_at=at)


def _named(by: str) -> str:
    if not by.strip():
        raise InvalidInput.one("by", "须写明操作人")
    return by.strip()


def _now() -> str:
    """When a fact happened, kept in the fact itself (the aggregate's ``modified_on`` is the previous one's
    while a fact is applied)."""
    return datetime.now(UTC).isoformat()
