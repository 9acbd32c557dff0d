"""Delivery receipts: what a partner site confirmed it stored, kept on the sending side.

A receipt is local evidence, not a shared case event (sharing it would call for a receipt of the
receipt). One ledger per (case, partner) keeps every receipt: through which seq of which origin
the partner stored the case's events, the partner's chain head there, and whether it matched ours.
A ledger opens with its first receipt, in one event: most cases only ever get one receipt per
partner, and an event less per case is a log entry, a chain link and a row less at a busy site.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict, Unpack
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:delivery-ledger")


class ReceiptStatus(StrEnum):
    """What the receiver did with a (case, origin)'s events. A value not listed here is refused where it
    is parsed (``ReceiptStatus(value)`` raises), never read as "stored"."""

    STORED = "stored"  # stored (or already held) through ``stored_through``
    GAP = "gap"  # stopped before a missing seq: resend from ``missing_from``
    FORK = "fork"  # an event under a seq it already holds differs: a discrepancy, never overwritten


@dataclass(frozen=True)
class CaseReceipt:
    """What the receiving site stored for one (case, origin) after a delivery."""

    case_id: UUID
    origin: str
    stored_through: int
    chain_head: str
    status: ReceiptStatus = ReceiptStatus.STORED
    missing_from: int = 0


def ledger_id(case_id: UUID, partner: str) -> UUID:
    return uuid5(_NAMESPACE, f"{case_id}/{partner}")


class DeliveryLedger(Aggregate):
    TOPIC = "tongban.receipt:DeliveryLedger"

    class Event(Aggregate.Event):
        TOPIC = "tongban.receipt:DeliveryLedger.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.receipt:DeliveryLedger.Created"

    @event("LedgerOpened", topic="tongban.receipt:LedgerOpened")
    def __init__(self, *, id: UUID, case_id: str, partner: str, first: dict[str, object] | None = None) -> None:
        self.case_id = case_id
        self.partner = partner
        self.receipts: list[dict[str, object]] = []
        if first is not None:  # ledgers stored before the first receipt rode along open without one
            self.receipts.append({**first, "recorded_at": self.modified_on})

    def stored_through(self, origin: str) -> int:
        """How far the partner has confirmed storing ``origin``'s events of the case (0: not at all)."""
        return max((int(str(r["stored_through"])) for r in self.receipts if r["origin"] == origin), default=0)

    @event("ReceiptRecorded", topic="tongban.receipt:ReceiptRecorded")
    def record(
        self, *, origin: str, stored_through: int, chain_head: str, matched: bool, status: str, channel: str
    ) -> None:
        self.receipts.append(
            {"origin": origin, "stored_through": stored_through, "chain_head": chain_head, "matched": matched,
             "status": status, "channel": channel, "recorded_at": self.modified_on}
        )


class Receipt(TypedDict):
    """One receipt as the ledger keeps it (``recorded_at`` is added when it is recorded)."""

    origin: str
    stored_through: int
    chain_head: str
    matched: bool
    status: str  # a ReceiptStatus value: the ledger's stored form is the plain string
    channel: str


def record_receipt(
    ledger: DeliveryLedger | None, case_id: UUID, partner: str, **receipt: Unpack[Receipt]
) -> DeliveryLedger:
    """``ledger`` with this receipt recorded, or (if there is no ledger yet) a new one opened with it."""
    if ledger is not None:
        ledger.record(**receipt)
        return ledger
    return DeliveryLedger(id=ledger_id(case_id, partner), case_id=str(case_id), partner=partner, first=dict(receipt))
