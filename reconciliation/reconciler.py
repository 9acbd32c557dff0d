"""One reconciliation run against one partner (the answering side is responder.py).

A run: find the differing cases (rbsr.py, over one snapshot of each side), ask the partner what it
holds of them (counts and chain heads), classify (classify.py), then act: pull or push the missing
events through the normal exchange path, open discrepancy cases for forks and lost chains, and
leave what is still in flight for the next run. A circuit breaker refuses to repair anything when
the differences exceed a share of the cases: mass divergence means a bug, not drift.

Nothing the partner claims is trusted: pulled events must chain to the head it claimed, and the
exchange recomputes every hash before storing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from hub.application.ports import SiteLog
from hub.domain.case import Case, actor_data
from hub.domain.errors import HubError, InvalidInput, RuleViolation
from hub.domain.shared import SharedEvent, chain_next, chain_start
from hub.domain.values import Actor
from reconciliation.classify import Action, Finding, Held, Kind, classify
from reconciliation.discrepancy import Discrepancy, DiscrepancyRegister, Status, discrepancy_id, register_id
from reconciliation.journal import ReconcileRun, repair_key, run_id, tracking_name
from reconciliation.messages import CaseCounts, CaseDescription, Params
from reconciliation.ports import DigestIndex, EventSharing, ReconcilePeer
from reconciliation.rbsr import DigestSet, Participant, check_params

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class ForgedClaim(RuleViolation):
    """The partner's events do not chain to the head it claimed for them."""

    def __init__(self, case_id: UUID, origin: str) -> None:
        super().__init__("FORGED_CLAIM", f"对方为办件 {case_id} 来源 {origin} 声明的链头与其事件不符，未作修复")


@dataclass(frozen=True)
class Policy:
    params: Params = field(default_factory=Params)
    breaker_share: float = 0.01  # stop auto-repair above this share of cases differing ...
    breaker_floor: int = 50  # ... unless the differences are at most this many
    pending_grace: timedelta = timedelta(minutes=5)  # our events younger than this may still be in flight
    describe_batch: int = 200


@dataclass
class Summary:
    partner: str
    run: int
    compared: int = 0
    rounds: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    differing_cases: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    repaired: int = 0
    opened: int = 0
    pending: int = 0
    rejected: int = 0
    tripped: bool = False
    stopped_early: bool = False  # tripped while comparing: differing_cases is a lower bound
    resumed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reconciler:
    """The initiating side. ``run`` is safe to call again after a crash: it resumes first."""

    def __init__(
        self, log: SiteLog, sharing: EventSharing, index: DigestIndex, policy: Policy | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.log, self.sharing, self.index = log, sharing, index
        self.site = log.site
        self.policy = policy or Policy()
        self.now = now or (lambda: datetime.now(UTC))

    def run(self, peer: ReconcilePeer, progress: Progress | None = None) -> Summary:
        started = time.monotonic()
        report = progress or (lambda _phase, _done, _total: None)
        partner = peer.partner
        number = self.log.tracked(tracking_name(partner)) + 1
        summary = Summary(partner, number)
        unfinished = self.log.find(run_id(partner, number), ReconcileRun)
        if unfinished is not None:
            summary.resumed = len(unfinished.remaining)
            self._repair(peer, unfinished, summary, report)
            self._finish(unfinished, summary)
            number += 1
            summary = Summary(partner, number, resumed=summary.resumed)
        with self.index.snapshot(partner) as snapshot:
            ours = DigestSet(snapshot)
            limit = max(self.policy.breaker_floor, int(self.policy.breaker_share * ours.size))
            session, digests = self._find(peer, ours, summary, report, limit)
            keys = digests.differences
            candidates = sorted(UUID(bytes=k) for k in keys.only_ours | keys.only_theirs | keys.differ)
            summary.compared, summary.differing_cases = ours.size, digests.found
            summary.tripped = digests.found > limit
            findings = [] if summary.tripped else self._classify(peer, session, candidates, report)
        summary.by_kind = dict(Counter(f.kind.value for f in findings))
        summary.pending = sum(f.kind is Kind.PENDING for f in findings)
        # Nothing is written until the partner has answered in full: a run that fails while
        # comparing leaves no trace but its error.
        journal = ReconcileRun.start(partner, number, asdict(self.policy.params))
        journal.classified(
            findings=[_finding_data(f) for f in findings], tripped=summary.tripped,
            exchange={"rounds": summary.rounds, "bytes_sent": summary.bytes_sent,
                      "bytes_received": summary.bytes_received, "compared": summary.compared},
        )
        try:
            self.log.record(journal)
        except IntegrityError:
            raise RuleViolation("RECONCILE_BUSY", f"与 {partner} 的另一次对账正在进行") from None
        for f in findings:
            if f.action is Action.OPEN:
                summary.opened += self._open(peer, f, number)
        self._repair(peer, journal, summary, report)
        summary.seconds = time.monotonic() - started
        self._finish(journal, summary)
        return summary

    # ------------------------------------------------------------------ finding
    def _find(
        self, peer: ReconcilePeer, digests: DigestSet, summary: Summary, report: Progress, limit: int
    ) -> tuple[str, Participant]:
        """Compare until nothing is left to ask, or until more cases differ than the breaker allows:
        nothing will be repaired then, and learning every difference of a mass divergence (a million
        keys) would only cost both sides memory. The partner's session then expires idle."""
        side = Participant(digests, self.policy.params, initiator=True, enough=limit)
        side.start()
        session, params = "", self.policy.params
        sent, received = peer.bytes_sent, peer.bytes_received
        while (message := side.next_message()) is not None:
            if summary.rounds >= side.params.max_rounds:
                raise RuleViolation("RECONCILE_ROUNDS", f"对账超过 {side.params.max_rounds} 轮仍未结束，已中止")
            session, agreed, reply = peer.reconcile(session, params if not summary.rounds else None, message)
            if not summary.rounds:
                side.params = check_params(self.policy.params, agreed)
            summary.rounds += 1
            summary.bytes_sent, summary.bytes_received = peer.bytes_sent - sent, peer.bytes_received - received
            side.receive_reply(message, reply)
            report("compare", summary.rounds, 0)
            if side.found > limit:
                summary.stopped_early = True
                break
        return session, side

    def _classify(
        self, peer: ReconcilePeer, session: str, candidates: list[UUID], report: Progress
    ) -> list[Finding]:
        partner = peer.partner
        findings: list[Finding] = []
        batch = self.policy.describe_batch
        for start in range(0, len(candidates), batch):
            chunk = candidates[start:start + batch]
            cases = {i: self.log.find(i, Case) for i in chunk}
            asked = [CaseCounts(i, {o: c.last_seq(o) for o in (self.site, partner)} if c else {})
                     for i, c in cases.items()]
            answers = {d.case_id: d for d in peer.describe(session, asked)}
            for case_id, case in cases.items():
                theirs = answers.get(case_id) or CaseDescription(case_id, False)
                ours = None
                if case is not None:
                    ours = {o: Held(case.last_seq(o), case.chain_head(o) if case.last_seq(o) else "",
                                    _head_at(case, o, theirs)) for o in (self.site, partner)}
                receiving = case.receiving_site if case is not None else theirs.receiving_site
                findings.extend(self._pending_if_recent(f, case)
                                for f in classify(self.site, partner, case_id, receiving, ours, theirs))
            report("classify", min(start + batch, len(candidates)), len(candidates))
        return findings

    def _pending_if_recent(self, f: Finding, case: Case | None) -> Finding:
        """A push of events so new that the relay is probably still delivering them waits a run."""
        if f.action is not Action.PUSH or case is None:
            return f
        events = case.shared_events(self.site)[f.theirs:]
        cutoff = self.now() - self.policy.pending_grace
        if events and max(e.occurred_at for e in events) > cutoff:
            return replace(f, kind=Kind.PENDING, action=Action.WAIT)
        return f

    # ------------------------------------------------------------------ acting
    def _repair(self, peer: ReconcilePeer, journal: ReconcileRun, summary: Summary, report: Progress) -> None:
        todo = journal.remaining
        for i, f in enumerate(todo, 1):
            try:
                if f["action"] == Action.PULL.value:
                    self._pull(peer, f)
                else:
                    self._push(peer, f)
            except ForgedClaim:
                summary.rejected += 1
                continue
            journal.repaired(keys=[repair_key(f)])
            self.log.record(journal)  # journaled one by one: a crash repeats at most one (idempotent) repair
            summary.repaired += 1
            report("repair", i, len(todo))

    def _pull(self, peer: ReconcilePeer, f: dict[str, Any]) -> None:
        case_id, origin = UUID(f["case_id"]), f["origin"]
        events = peer.fetch(case_id, origin, f["ours"] + 1)[: f["theirs"] - f["ours"]]
        case = self.log.find(case_id, Case)
        head = case.chain_head(origin, f["ours"]) if case is not None else chain_start(case_id, origin)
        for e in events:
            head = chain_next(head, e.hash())
        if len(events) != f["theirs"] - f["ours"] or head != f["claimed_head"]:
            raise ForgedClaim(case_id, origin)
        self.sharing.ingest(peer.partner, events)

    def _push(self, peer: ReconcilePeer, f: dict[str, Any]) -> None:
        events = self.sharing.resend(UUID(f["case_id"]), self.site, f["theirs"] + 1)
        if events:
            receipts = peer.deliver(events)
            self.sharing.record_receipts(peer.partner, "reconcile", receipts, None)

    def _open(self, peer: ReconcilePeer, f: Finding, run: int) -> int:
        """Open (or reopen) the discrepancy for a finding; 1 if it is newly open."""
        existing = self.log.find(discrepancy_id(peer.partner, f.case_id, f.origin, f.kind.value), Discrepancy)
        if existing is not None:
            if existing.status is not Status.RESOLVED:
                return 0
            existing.reopen(run=run, ours=f.ours, theirs=f.theirs)
            self.log.record(existing)
            return 1
        seq, our_event, their_event = self._first_difference(peer, f)
        register = self.log.find(register_id(peer.partner), DiscrepancyRegister) \
            or DiscrepancyRegister.for_partner(peer.partner)
        opened = Discrepancy.open(
            partner=peer.partner, case_id=str(f.case_id), origin=f.origin, kind=f.kind.value, ours=f.ours,
            theirs=f.theirs, lost_by=f.lost_by, first_differing_seq=seq, our_event=our_event,
            their_event=their_event, run=run,
        )
        register.list(discrepancy_id=str(opened.id))
        self.log.record(opened, register)
        return 1

    def _first_difference(
        self, peer: ReconcilePeer, f: Finding
    ) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
        """Both versions of the first event where the chains part (for forks and lost chains)."""
        case = self.log.find(f.case_id, Case)
        ours = case.shared_events(f.origin) if case is not None else []
        try:
            theirs = peer.fetch(f.case_id, f.origin, 1)
        except HubError:
            theirs = []
        for seq in range(1, max(len(ours), len(theirs)) + 1):
            a = ours[seq - 1] if seq <= len(ours) else None
            b = theirs[seq - 1] if seq <= len(theirs) else None
            if a is None or b is None or a.hash() != b.hash():
                return seq, _event_data(a), _event_data(b)
        return 0, None, None

    def _finish(self, journal: ReconcileRun, summary: Summary) -> None:
        journal.finish(summary=summary.as_dict())
        self.log.record(journal, tracking=Tracking(tracking_name(journal.partner), journal.number))

    # ------------------------------------------------------------------ discrepancies
    def discrepancies(self, partner: str, *, open_only: bool = True) -> list[Discrepancy]:
        register = self.log.find(register_id(partner), DiscrepancyRegister)
        found = [self.log.find(UUID(i), Discrepancy) for i in (register.listed if register else [])]
        return [d for d in found if d is not None and (not open_only or d.status is not Status.RESOLVED)]

    def review(self, discrepancy: UUID, actor: Actor, *, resolve: str | None = None) -> Discrepancy:
        """Start the review of a discrepancy, or (with a reason) resolve it."""
        found = self.log.find(discrepancy, Discrepancy)
        if found is None:
            raise InvalidInput.one("discrepancy", f"差异件 {discrepancy} 不存在")
        if resolve is None:
            found.start_review(actor_data(actor))
        else:
            found.resolve(resolve, actor_data(actor))
        self.log.record(found)
        return found


def _head_at(case: Case, origin: str, theirs: CaseDescription) -> str:
    state = theirs.origins.get(origin)
    if state is None or state.count > case.last_seq(origin) or not state.count:
        return ""
    return case.chain_head(origin, state.count)


def _finding_data(f: Finding) -> dict[str, Any]:
    return {"case_id": str(f.case_id), "origin": f.origin, "kind": f.kind.value, "action": f.action.value,
            "ours": f.ours, "theirs": f.theirs, "lost_by": f.lost_by, "claimed_head": f.claimed_head}


def _event_data(e: SharedEvent | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"seq": e.seq, "event_id": e.event_id, "type": e.type, "hash": e.hash(),
            "canonical": e.canonical().decode("utf-8")}
