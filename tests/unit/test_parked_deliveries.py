"""Dead letters on the sending side, on in-memory sites: a partner that refuses one case for good.

The partner is a real CaseSharing that refuses (NotPermitted) the cases it is told to, handed events
by a fake channel whose answers wait until the relay asks for them, so batches pipeline as on gRPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.exchange.refusal import deliver_or_refuse, refusal_of
from adapters.exchange.relay import Relay
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.dead_letters import DeadLetters
from hub.domain.errors import CaseNotFound, InvalidInput, NotPermitted, RuleViolation
from hub.domain.parked import DeliveryRefused, ParkedStatus
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub, step


class Refusing(CaseSharing):
    """Site B: refuses any batch holding an event of a case in ``refused`` (nothing stored), and keeps
    the (case, seq) of every event it stored, in the order it stored them."""

    def __init__(self, target: CaseHub) -> None:
        super().__init__(target)
        self.refused: set[UUID] = set()
        self.stored: list[tuple[UUID, int]] = []

    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        for event in events:
            if event.case_id in self.refused:
                error = NotPermitted("本站不接收该办件")
                error.reason = "CASE_BLOCKED"
                raise error
        before = {e.case_id: self._last(e.case_id) for e in events}
        receipts = super().ingest(sender, events)
        for event in sorted(events, key=lambda e: (str(e.case_id), e.seq)):
            if event.seq > before[event.case_id] and event.seq <= self._last(event.case_id):
                self.stored.append((event.case_id, event.seq))
        return receipts

    def _last(self, case_id: UUID) -> int:
        try:
            return self.log.get_case(case_id).last_seq(RECEIVING)
        except CaseNotFound:
            return 0


class Lazy(Future[list[CaseReceipt]]):
    """A delivery the partner handles only when its answer is asked for (the relay pipelines)."""

    def __init__(self, channel: Channel, events: Sequence[SharedEvent]) -> None:
        super().__init__()
        self.channel, self.events = channel, list(events)

    def result(self, timeout: float | None = None) -> list[CaseReceipt]:
        if not self.done():
            try:
                self.set_result(self.channel.deliver(self.events))
            except Exception as error:
                self.set_exception(error)
        return super().result(timeout)


class Channel:
    channel_name = "grpc"
    partner = HANDLING

    def __init__(self, partner: Refusing) -> None:
        self.target = partner
        self.deliveries = 0

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        self.deliveries += 1
        return self.target.ingest(RECEIVING, events)

    def deliver_async(self, events: Sequence[SharedEvent]) -> Lazy:
        return Lazy(self, events)

    def resend(self, events: Sequence[SharedEvent], receipt: CaseReceipt) -> list[CaseReceipt]:
        return self.deliver(events)

    def close(self) -> None:
        return None


class Sites:
    def __init__(self, cases: int) -> None:
        self.a, self.b = hub(RECEIVING), hub(HANDLING)
        self.cases = [self.a.receive(c.parse(c.ReceiveCase, receive_request(f"r-{n}")))[0].id for n in range(cases)]
        self.partner = Refusing(self.b)
        self.channel = Channel(self.partner)
        self.sharing = CaseSharing(self.a)
        self.letters = DeadLetters(self.sharing)

    def relay(self, **options: object) -> Relay:
        return Relay(self.sharing, self.channel, **options)  # type: ignore[arg-type]

    def parked(self, include_closed: bool = False) -> list[object]:
        return list(self.letters.listed(HANDLING, "grpc", include_closed=include_closed))

    def at_b(self, case_id: UUID) -> int:
        return self.partner._last(case_id)

    def forward(self, case_id: UUID) -> None:
        step(self.a, c.ForwardCase, case_id, actor_data(CLERK))

    def replay(self, case_id: UUID, by: str = "王工") -> object:
        return self.letters.replay(HANDLING, "grpc", case_id, lambda evs: deliver_or_refuse(self.channel, evs), by)


def drain(relay: Relay) -> None:
    for _ in range(1000):
        if not relay.pump():
            return
    raise AssertionError("the relay never went idle")


def test_the_refused_case_is_parked_with_the_partners_reason_and_the_others_arrive() -> None:
    sites = Sites(10)
    bad = sites.cases[3]
    sites.partner.refused.add(bad)
    drain(sites.relay())
    assert all(sites.at_b(case) == 1 for case in sites.cases if case != bad)
    assert sites.at_b(bad) == 0
    [entry] = sites.letters.listed(HANDLING, "grpc")
    assert (entry.case_id, entry.seqs, entry.types, entry.status) == (bad, (1,), ("CaseReceived",), ParkedStatus.PARKED)
    assert (entry.code, entry.reason, entry.message) == ("PERMISSION_DENIED", "CASE_BLOCKED", "本站不接收该办件")
    assert sites.sharing.position(HANDLING, "grpc") == sites.a.head()  # the position moved past it


def test_bisecting_finds_the_refused_cases_in_fewer_deliveries_than_one_per_case() -> None:
    sites = Sites(32)
    bad = {sites.cases[5], sites.cases[20]}
    sites.partner.refused |= bad
    drain(sites.relay(batch=1000))
    assert {e.case_id for e in sites.letters.listed(HANDLING, "grpc")} == bad
    assert sum(sites.at_b(case) for case in sites.cases) == 30
    assert sites.channel.deliveries < 32  # 1 refused batch, then halves: about 2·log2(32) per refused case


def test_later_events_of_a_parked_case_are_held_back_behind_it() -> None:
    sites = Sites(3)
    bad, good = sites.cases[0], sites.cases[1]
    sites.partner.refused.add(bad)
    relay = sites.relay()
    drain(relay)
    sites.forward(bad)
    sites.forward(good)
    sites.partner.refused.clear()  # even a partner that would take it now: it is not sent before the replay
    drain(relay)
    assert sites.at_b(good) == 2 and sites.at_b(bad) == 0
    [entry] = sites.letters.listed(HANDLING, "grpc")
    assert entry.seqs == (1,) and entry.held == (2,)
    assert sites.sharing.position(HANDLING, "grpc") == sites.a.head()


def test_a_replay_after_the_fix_delivers_the_case_once_in_order_and_later_events_follow() -> None:
    sites = Sites(3)
    bad = sites.cases[0]
    sites.partner.refused.add(bad)
    relay = sites.relay()
    drain(relay)
    sites.forward(bad)
    drain(relay)
    sites.partner.refused.clear()  # the partner fixed its side
    replayed = sites.replay(bad, by="王工")
    assert replayed.status is ParkedStatus.REPLAYED and replayed.by == "王工"  # type: ignore[attr-defined]
    assert sites.parked() == [] and len(sites.parked(include_closed=True)) == 1
    drain(relay)  # the relay reads the replay when it next sees the case
    assert [seq for case, seq in sites.partner.stored if case == bad] == [1, 2]
    receipts = sites.sharing.receipts(bad)
    assert receipts[-1]["stored_through"] == 2 and receipts[-1]["matched"]


def test_events_after_a_replay_go_out_with_the_relay_again() -> None:
    sites = Sites(2)
    bad = sites.cases[0]
    sites.partner.refused.add(bad)
    relay = sites.relay(parked_refresh=3600.0)  # it must not need a timed refresh to see the replay
    drain(relay)
    sites.partner.refused.clear()
    sites.replay(bad)
    sites.forward(bad)
    drain(relay)
    assert [seq for case, seq in sites.partner.stored if case == bad] == [1, 2]
    assert sites.parked() == []


def test_a_replay_refused_again_stays_parked_with_the_newest_reason() -> None:
    sites = Sites(1)
    bad = sites.cases[0]
    sites.partner.refused.add(bad)
    drain(sites.relay())
    with pytest.raises(DeliveryRefused) as refused:
        sites.replay(bad)
    assert refused.value.refusal.reason == "CASE_BLOCKED"
    [entry] = sites.letters.listed(HANDLING, "grpc")
    assert entry.status is ParkedStatus.PARKED and entry.refusals == 2


def test_discard_records_who_and_why_and_the_case_stays_undelivered() -> None:
    sites = Sites(2)
    bad = sites.cases[0]
    sites.partner.refused.add(bad)
    relay = sites.relay()
    drain(relay)
    with pytest.raises(InvalidInput):
        sites.letters.discard(HANDLING, "grpc", bad, "  ", by="王工")
    with pytest.raises(InvalidInput):
        sites.letters.discard(HANDLING, "grpc", bad, "伙伴已线下办结", by="")
    discarded = sites.letters.discard(HANDLING, "grpc", bad, "伙伴已线下办结", by="王工")
    assert (discarded.status, discarded.by, discarded.why) == (ParkedStatus.DISCARDED, "王工", "伙伴已线下办结")
    assert discarded.closed_at is not None
    sites.partner.refused.clear()
    sites.forward(bad)
    drain(relay)
    assert sites.at_b(bad) == 0  # discarded: its later events are not sent either
    assert sites.parked() == [] and sites.parked(include_closed=True) == [discarded]
    with pytest.raises(RuleViolation) as again:
        sites.replay(bad)
    assert again.value.reason == "NOT_PARKED"


def test_a_crash_before_the_park_is_stored_loses_nothing_and_a_restart_parks_it_once() -> None:
    sites = Sites(4)
    bad = sites.cases[1]
    sites.partner.refused.add(bad)

    class Crashing(CaseSharing):
        def record_receipts(self, *args: object, **kwargs: object) -> int:
            if kwargs.get("also"):
                raise IntegrityError("the site stopped before the transaction committed")
            return super().record_receipts(*args, **kwargs)  # type: ignore[arg-type]

    crashing = Relay(Crashing(sites.a), sites.channel)
    with pytest.raises(IntegrityError):
        drain(crashing)
    assert sites.parked() == [] and sites.sharing.position(HANDLING, "grpc") == 0
    restarted = sites.relay()  # a new relay on the same store
    drain(restarted)
    drain(sites.relay())  # and another: nothing is parked twice
    assert [e.case_id for e in sites.letters.listed(HANDLING, "grpc")] == [bad]
    assert all(sites.at_b(case) == 1 for case in sites.cases if case != bad)


def test_a_relay_that_held_back_on_a_view_older_than_a_replay_sends_the_event_after_all() -> None:
    """The relay holds back with batches in flight (so it does not read the ledger again); an operator
    replayed the case meanwhile: the relay's save fails on the ledger's version, and it starts again."""
    sites = Sites(6)
    bad = sites.cases[0]
    sites.partner.refused.add(bad)
    relay = sites.relay(batch=2, window=100, parked_refresh=3600.0)
    drain(relay)
    sites.partner.refused.clear()
    for case in sites.cases[1:]:
        sites.forward(case)  # a backlog, so that batches are in flight when bad's forward is read
    other = DeadLetters(CaseSharing(sites.a))  # the operator, in another process
    other.replay(HANDLING, "grpc", bad, lambda evs: deliver_or_refuse(sites.channel, evs), "王工")
    sites.forward(bad)
    conflicts = 0
    for _ in range(100):
        try:
            if not relay.pump():
                break
        except IntegrityError:
            conflicts += 1
    assert conflicts == 1  # the hold was decided on the older view: its save failed, nothing stored
    assert [seq for case, seq in sites.partner.stored if case == bad] == [1, 2]
    assert all(sites.at_b(case) == 2 for case in sites.cases)


def test_only_final_refusals_are_parked() -> None:
    assert refusal_of(NotPermitted("x")) is not None
    assert refusal_of(RuleViolation("ILLEGAL_STEP", "x")) is not None
    assert refusal_of(ConnectionError("down")) is None
    assert refusal_of(CaseNotFound("x")) is None  # NOT_FOUND is not one of the three
