"""Dead letters on the sending side: what the relay parked, listed, replayed or discarded by an operator.

The relay parks (``ParkedDeliveries``, hub/domain/parked.py) in the transaction that stores its
receipts and moves its position past the refused events, so a crash never loses or repeats an
entry. A replay sends the case's events again from the first refused one through the newest (the
events held back behind them included), and marks the entry replayed in the transaction that stores
the partner's receipts. The ledger is read before the case: an event the relay holds back after
that read changes the ledger, so the replay's save fails and is done again with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from hub.application.case_sharing import CaseSharing
from hub.domain.errors import ConcurrentUpdate, RuleViolation
from hub.domain.parked import DeliveryRefused, ParkedDeliveries, ParkedEntry, ParkedStatus, ledger_id
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from hub.domain.shared import SharedEvent

Deliver = Callable[[Sequence[SharedEvent]], list[CaseReceipt]]  # raises DeliveryRefused on a final refusal
_ATTEMPTS = 5


class DeadLetters:
    """The parked deliveries of the site behind ``sharing``, per (partner, channel)."""

    def __init__(self, sharing: CaseSharing) -> None:
        self.sharing = sharing

    def ledger(self, partner: str, channel: str) -> ParkedDeliveries:
        """The ledger as stored (a new, unsaved one if nothing was ever parked for the partner)."""
        found = self.sharing.log.find(ledger_id(partner, channel), ParkedDeliveries)
        return found if found is not None else ParkedDeliveries.open(partner, channel)

    def listed(self, partner: str, channel: str, *, include_closed: bool = False) -> list[ParkedEntry]:
        return self.ledger(partner, channel).listed(include_closed=include_closed)

    def replay(self, partner: str, channel: str, case_id: UUID, deliver: Deliver, by: str) -> ParkedEntry:
        """Send a parked case's events again; the entry is replayed once the partner receipts all of them
        (else it stays parked: refused again, with the partner's new reason, raised as DeliveryRefused)."""
        for _attempt in range(_ATTEMPTS):
            ledger = self.ledger(partner, channel)
            entry = _parked(ledger, case_id)
            events = self.sharing.resend(case_id, entry.origin, entry.from_seq)
            try:
                receipts = deliver(events)
                for gap in [r for r in receipts if r.status is ReceiptStatus.GAP and r.origin == entry.origin]:
                    receipts += deliver(self.sharing.resend(case_id, gap.origin, gap.missing_from))
            except DeliveryRefused as refused:
                ledger.refused_again(case_id, refused.refusal, by)
                try:
                    self.sharing.log.record(ledger)
                except IntegrityError:
                    continue
                raise
            last = events[-1].seq if events else entry.from_seq - 1
            through = max((r.stored_through for r in receipts if r.case_id == case_id and r.origin == entry.origin
                           and r.status is ReceiptStatus.STORED), default=0)
            if through >= last:
                ledger.replayed(case_id, through, by)
            try:
                self.sharing.record_receipts(partner, channel, receipts, None, also=[ledger])
            except IntegrityError:  # the relay held back another event meanwhile: send that too
                continue
            found = ledger.entry(case_id)
            assert found is not None
            return found
        raise ConcurrentUpdate(str(case_id), None, None)

    def discard(self, partner: str, channel: str, case_id: UUID, reason: str, by: str) -> ParkedEntry:
        """Give up on a parked case for this partner, on the record: its events stay undelivered."""
        for _attempt in range(_ATTEMPTS):
            ledger = self.ledger(partner, channel)
            _parked(ledger, case_id)
            ledger.discard(case_id, reason, by)
            try:
                self.sharing.log.record(ledger)
            except IntegrityError:
                continue
            found = ledger.entry(case_id)
            assert found is not None
            return found
        raise ConcurrentUpdate(str(case_id), None, None)


def _parked(ledger: ParkedDeliveries, case_id: UUID) -> ParkedEntry:
    entry = ledger.entry(case_id)
    if entry is None or entry.status is not ParkedStatus.PARKED:
        if entry is None:
            message = f"办件 {case_id} 没有向 {ledger.partner} 搁置的投递"
        else:
            done = "已重放" if entry.status is ParkedStatus.REPLAYED else "已放弃"
            message = f"办件 {case_id} 向 {ledger.partner} 的搁置投递{done}"
        raise RuleViolation("NOT_PARKED", message, {"case_id": str(case_id), "partner": ledger.partner})
    return entry
