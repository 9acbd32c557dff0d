"""CaseSharing: a site's shared case events, going to and coming from its partners, whatever the channel.

Outbound: a relay per partner follows this site's notification log from its last position and
takes the events this site originated for cases shared with that partner. When the partner's
receipts come back, they are stored together with the new position in ONE transaction, so after a
crash the relay resends from the last receipted position: delivery is at least once, and the
receiver's (case, origin, seq) check makes it exactly once in effect.

Inbound: a partner's events are applied per (case, origin) in seq order; duplicates are ignored
(after checking they are the same event), a gap stops that origin and is reported so the sender
resends, and anything for a case not routed between the sender and us is refused whole.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking

from hub.application.partner_intake import PartnerIntake
from hub.application.ports import SiteLog
from hub.domain.case import CASE_TOPIC_PREFIX, Case, shared_form
from hub.domain.case_state import receipt_sites
from hub.domain.errors import NotPermitted, RuleViolation
from hub.domain.receipts import CaseReceipt, DeliveryLedger, ReceiptStatus, ledger_id, record_receipt
from hub.domain.shared import SharedEvent, chain_next, chain_start

_INGEST_ATTEMPTS = 5


class NotRouted(NotPermitted):
    """The partner sent or asked for something outside the cases routed between it and us."""

    reason = "NOT_ROUTED"

    def __init__(self, message: str, sender: str) -> None:
        super().__init__(message)
        self.sender = sender


@dataclass(frozen=True)
class OutboundBatch:
    events: list[SharedEvent]
    through: int  # the notification id this batch reaches; the relay's next position once receipted
    # Our chain head after each (case, origin, seq) the batch can vouch for without loading the case
    # (chains that start in the batch), for checking the partner's receipts.
    heads: dict[tuple[UUID, str, int], str] = field(default_factory=dict)

    @property
    def opened(self) -> frozenset[UUID]:
        """Cases whose first event of ours goes out in this batch: no receipt for them can exist yet."""
        return frozenset(case_id for case_id, _origin, seq in self.heads if seq == 1)


def relay_name(partner: str, channel: str) -> str:
    return f"relay:{partner}:{channel}"


class CaseSharing:
    """Outbound batches and their receipts, inbound ingest, and events asked for again, over ``log``."""

    def __init__(self, log: SiteLog, sites_cache: int = 50_000, intake: PartnerIntake | None = None) -> None:
        self.log = log
        self.site: str = log.site
        self.intake = intake or PartnerIntake(log.site)  # the composition root gives partners and agreements
        self._sites: dict[UUID, tuple[str, ...]] = {}  # a case's sites never change: remembered, bounded
        self._sites_cache = sites_cache
        self._sites_lock = threading.Lock()

    # ------------------------------------------------------------------ outbound
    def position(self, partner: str, channel: str) -> int:
        return self.log.tracked(relay_name(partner, channel))

    def head(self) -> int:
        """The newest position of our log (how far a relay could go)."""
        return self.log.head()

    def outbound(self, partner: str, after: int, limit: int = 200) -> OutboundBatch:
        """Events this site originated, for cases shared with ``partner``, after log position ``after``.

        Read from the log's own records: a case is loaded only to learn its sites the first time (or to
        derive a v1 event's identity), so a burst of new cases costs no read per case.
        """
        notifications = self.log.read(start=after + 1, limit=limit)
        if not notifications:
            return OutboundBatch([], after)
        events: list[SharedEvent] = []
        heads: dict[tuple[UUID, str, int], str] = {}
        v1_cases: dict[UUID, Case] = {}  # loaded once per batch, for v1 events only
        for n in notifications:
            if not n.topic.startswith(CASE_TOPIC_PREFIX):
                continue
            case_id = UUID(str(n.originator_id))
            event = self.log.decode(n)
            shared = shared_form(event) if isinstance(event, Case.Event) else None
            if shared is None:
                if case_id not in v1_cases:
                    v1_cases[case_id] = self.log.get_case(case_id)
                entry = next((e for e in v1_cases[case_id].log if e.version == n.originator_version), None)
                if entry is None:
                    continue
                shared = entry.shared
            if shared.origin != self.site or partner not in self.sites_of(case_id, shared):
                continue
            events.append(shared)
            previous = chain_start(case_id, shared.origin) if shared.seq == 1 else heads.get(
                (case_id, shared.origin, shared.seq - 1))
            if previous is not None:
                heads[(case_id, shared.origin, shared.seq)] = chain_next(previous, shared.hash())
        return OutboundBatch(events, notifications[-1].id, heads)

    def sites_of(self, case_id: UUID, event: SharedEvent | None = None) -> tuple[str, ...]:
        """The sites a case is shared between: read from ``event`` if it is the case's receipt, else
        loaded once and remembered (they never change; the memory is bounded)."""
        sites = self._sites.get(case_id)
        if sites is None:
            if event is not None and event.type == "CaseReceived":
                sites = receipt_sites(event.data)
            else:
                sites = self.log.get_case(case_id).sites
            with self._sites_lock:
                if len(self._sites) >= self._sites_cache:
                    for old in list(self._sites)[: self._sites_cache // 2]:
                        del self._sites[old]
                self._sites[case_id] = sites
        return sites

    def resend(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        """Events of one origin from ``from_seq`` on, to fill a gap the partner reported."""
        return self.log.get_case(case_id).shared_events(origin)[from_seq - 1:]

    def record_receipts(
        self, partner: str, channel: str, receipts: Sequence[CaseReceipt], through: int | None,
        sent: OutboundBatch | None = None, also: Sequence[Aggregate] = (),
    ) -> int:
        """Store the partner's receipts, and (if given) the relay's new position, atomically; returns how
        many of our own events the partner confirmed for the first time (its delivery ledgers say).
        ``also`` are further aggregates changed with them (the parked deliveries), in the same transaction.

        ``sent``, the batch the receipts answer, spares reads: the chain heads it vouches for, and the
        delivery ledgers of the cases it opened, which cannot exist yet (if one does after all, say a
        batch resent after a crash, the save fails whole and is done again reading every ledger).
        """
        try:
            return self._record_receipts(partner, channel, receipts, through, sent, also)
        except IntegrityError:
            if sent is None or also:  # ``also`` lost its pending events to the failed save: not done twice
                raise
            return self._record_receipts(partner, channel, receipts, through, None, also)

    def _record_receipts(
        self, partner: str, channel: str, receipts: Sequence[CaseReceipt], through: int | None,
        sent: OutboundBatch | None, also: Sequence[Aggregate],
    ) -> int:
        covered = 0
        ledgers: dict[UUID, DeliveryLedger] = {}
        cases: dict[UUID, Case] = {}  # a batch often holds several receipts for one case: one load each
        heads, opened = (sent.heads, sent.opened) if sent is not None else ({}, frozenset[UUID]())
        for receipt in receipts:
            ledger = ledgers.get(receipt.case_id)
            if ledger is None and receipt.case_id not in opened:
                ledger = self.log.find(ledger_id(receipt.case_id, partner), DeliveryLedger)
            ours = heads.get((receipt.case_id, receipt.origin, receipt.stored_through))
            if ours is None:
                if receipt.case_id not in cases:
                    cases[receipt.case_id] = self.log.get_case(receipt.case_id)
                ours = cases[receipt.case_id].chain_head(receipt.origin, receipt.stored_through)
            if receipt.origin == self.site:
                before = ledger.stored_through(self.site) if ledger is not None else 0
                covered += max(receipt.stored_through - before, 0)
            ledger = record_receipt(
                ledger, receipt.case_id, partner, origin=receipt.origin, stored_through=receipt.stored_through,
                chain_head=receipt.chain_head, matched=ours == receipt.chain_head, status=receipt.status.value,
                channel=channel,
            )
            ledgers[receipt.case_id] = ledger
        tracking = Tracking(relay_name(partner, channel), through) if through is not None else None
        self.log.record(*ledgers.values(), *also, tracking=tracking)
        return covered

    def receipts(self, case_id: UUID) -> list[dict[str, object]]:
        """Every receipt recorded for a case, per partner."""
        out: list[dict[str, object]] = []
        for partner in self.log.get_case(case_id).sites:
            if partner == self.site:
                continue
            ledger = self.log.find(ledger_id(case_id, partner), DeliveryLedger)
            if ledger is not None:
                out.extend({"partner": partner, **r} for r in ledger.receipts)
        return out

    # ------------------------------------------------------------------ inbound
    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        """Apply a partner's events; refuse the whole batch if any is outside what we share with it."""
        self.intake.check(sender, events)  # schema, envelope, opening: refused whole before anything is read
        by_case: dict[UUID, list[SharedEvent]] = defaultdict(list)
        for shared in events:
            if shared.origin != sender:
                raise NotRouted(f"站点 {sender} 只能发送自己产生的事件（收到来源 {shared.origin}）", sender)
            by_case[shared.case_id].append(shared)
        for attempt in range(_INGEST_ATTEMPTS):
            try:
                return self._ingest_once(sender, by_case, assume_new=attempt == 0)
            except IntegrityError:  # a local step on one of these cases won the race (or one was not new): retry
                if attempt == _INGEST_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _ingest_once(
        self, sender: str, by_case: dict[UUID, list[SharedEvent]], assume_new: bool
    ) -> list[CaseReceipt]:
        """One try. With ``assume_new``, a case whose events start at its receipt is taken to be new to
        us without reading the store (one read per case is most of a bulk delivery's cost); if one was
        not new after all, the save fails as a whole and the next try reads every case."""
        cases = {case_id: self._case_for(sender, case_id, evs, assume_new) for case_id, evs in by_case.items()}
        receipts: list[CaseReceipt] = []
        touched: list[Case] = []
        for case_id, evs in by_case.items():
            case = cases[case_id]
            status, missing_from = ReceiptStatus.STORED, 0
            for shared in sorted(evs, key=lambda e: e.seq):
                if case is None:  # a case new to us: its first event must be the receipt
                    if shared.seq != 1 or shared.type != "CaseReceived":
                        status, missing_from = ReceiptStatus.GAP, 1
                        break
                    case = cases[case_id] = Case.from_partner(shared)
                    continue
                last = case.last_seq(sender)
                if shared.seq <= last:
                    if case.shared_events(sender)[shared.seq - 1].hash() != shared.hash():
                        status = ReceiptStatus.FORK
                    continue
                if shared.seq > last + 1:
                    status, missing_from = ReceiptStatus.GAP, last + 1
                    break
                case.ingest(shared)
            if case is None:
                receipts.append(CaseReceipt(case_id, sender, 0, chain_start(case_id, sender), status, missing_from))
                continue
            touched.append(case)
            receipts.append(
                CaseReceipt(case_id, sender, case.last_seq(sender), case.chain_head(sender), status, missing_from)
            )
        if touched:
            self.log.record(*touched)
        return receipts

    def _case_for(self, sender: str, case_id: UUID, events: list[SharedEvent], assume_new: bool) -> Case | None:
        """The local case (None if new to us), after checking the sender may send events for it."""
        first = min(events, key=lambda e: e.seq)
        opens = first.seq == 1 and first.type == "CaseReceived"
        case = None if assume_new and opens else self.log.find(case_id, Case)
        if case is None:
            if not opens:
                return None  # we never saw the case open: a gap from seq 1 is reported
            sites = receipt_sites(first.data)
            if sites[0] != sender or self.site not in sites[1:]:
                raise NotRouted(f"办件 {case_id} 未在 {sender} 与本站 {self.site} 之间流转", sender)
            return None
        if sender not in case.sites or self.site not in case.sites:
            raise NotRouted(f"办件 {case_id} 未在 {sender} 与本站 {self.site} 之间流转", sender)
        return case

    def events_for(self, requester: str, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        """FetchEvents: a partner asks again for events it is missing."""
        case = self.log.get_case(case_id)
        if requester not in case.sites:
            raise NotRouted(f"办件 {case_id} 未在 {requester} 与本站之间流转", requester)
        if from_seq < 1:
            raise RuleViolation("BAD_SEQ", "序号须从 1 开始")
        return case.shared_events(origin)[from_seq - 1:]
