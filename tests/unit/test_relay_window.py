"""The relay's window: batches pipelined up to a bound of unreceipted events, positions stored in order."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future

import pytest

from adapters.exchange.relay import Relay
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.case import CASE_TOPIC_PREFIX
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub, step


class Later(Future[list[CaseReceipt]]):
    """A delivery the partner answers only when the relay asks for the answer (or earlier, when told)."""

    def __init__(self, channel: WindowedPartner, events: Sequence[SharedEvent]) -> None:
        super().__init__()
        self.channel, self.events = channel, list(events)

    def answer(self) -> None:
        if self.done():
            return
        self.channel.outstanding -= len(self.events)
        if self.channel.fail_next:
            self.channel.fail_next = False
            self.set_exception(ConnectionError("partner went away"))
        else:
            self.set_result(self.channel.partner_exchange.ingest(RECEIVING, self.events))

    def result(self, timeout: float | None = None) -> list[CaseReceipt]:
        self.answer()
        return super().result(timeout)


class WindowedPartner:
    """Site B behind a channel whose deliveries stay open until settled; it records how many were open."""

    channel_name = "grpc"
    partner = HANDLING

    def __init__(self, partner_hub: CaseHub) -> None:
        self.partner_exchange = CaseSharing(partner_hub)
        self.outstanding = 0
        self.most_outstanding = 0
        self.open: list[Later] = []
        self.sent: list[list[str]] = []
        self.fail_next = False
        self.fail_next_resend = False

    def deliver_async(self, events: Sequence[SharedEvent]) -> Later:
        self.outstanding += len(events)
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        self.sent.append([e.event_id for e in events])
        later = Later(self, events)
        self.open.append(later)
        return later

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        if self.fail_next_resend:
            self.fail_next_resend = False
            raise ConnectionError("partner went away while a gap was filled")
        return self.partner_exchange.ingest(RECEIVING, events)

    def close(self) -> None:
        pass


@pytest.fixture
def sites() -> tuple[CaseHub, CaseHub, WindowedPartner]:
    a, b = hub(RECEIVING), hub(HANDLING)
    for n in range(10):
        a.receive(c.parse(c.ReceiveCase, receive_request(f"r-{n}")))
    return a, b, WindowedPartner(b)


def drain(relay: Relay) -> list[int]:
    """Pump until idle; the stored position after each pump."""
    positions = []
    while relay.pump():
        positions.append(relay.sharing.position(HANDLING, "grpc"))
    return positions


def test_batches_are_pipelined_up_to_the_window(sites: tuple[CaseHub, CaseHub, WindowedPartner]) -> None:
    a, b, partner = sites
    relay = Relay(CaseSharing(a), partner, batch=6, window=4)  # 6 log entries = 2 cases and their 4 claims
    drain(relay)
    assert partner.most_outstanding == 4  # two batches of two events in flight at once, never more
    assert sum(len(s) for s in partner.sent) == 10
    assert len(b.recorder.select_notifications(start=1, limit=100)) == 10
    case_id = next(n.originator_id for n in a.recorder.select_notifications(1, 100)
                   if n.topic.startswith(CASE_TOPIC_PREFIX))
    receipts = CaseSharing(a).receipts(case_id)
    assert len(receipts) == 1 and receipts[0]["matched"] and receipts[0]["stored_through"] == 1


@pytest.fixture
def filled(sites: tuple[CaseHub, CaseHub, WindowedPartner]) -> tuple[Relay, WindowedPartner]:
    """A relay with all ten cases in flight, one delivery each, none answered yet."""
    a, _b, partner = sites
    relay = Relay(CaseSharing(a), partner, batch=3, window=10)
    relay._fill()
    assert len(partner.open) == 10
    return relay, partner


def test_later_answers_never_move_the_position_past_an_earlier_delivery(
    filled: tuple[Relay, WindowedPartner]
) -> None:
    relay, partner = filled
    for later in partner.open[1:]:  # the partner answers every delivery but the oldest
        later.answer()
    partner.fail_next = True  # ... which fails
    with pytest.raises(ConnectionError):
        relay.pump()
    assert relay.sharing.position(HANDLING, "grpc") == 0


def test_deliveries_answered_meanwhile_are_stored_in_one_transaction(filled: tuple[Relay, WindowedPartner]) -> None:
    relay, partner = filled
    throughs = [flight.batch.through for flight in relay._in_flight]
    for later in partner.open:
        later.answer()
    assert drain(relay)[0] == throughs[-1]  # ten deliveries, one settle


def test_a_failed_delivery_drops_the_window_and_resends_from_the_stored_position(
    sites: tuple[CaseHub, CaseHub, WindowedPartner]
) -> None:
    a, b, partner = sites
    relay = Relay(CaseSharing(a), partner, batch=3, window=10)
    assert relay.pump() == 1  # the first batch (one case) settled
    stored = relay.sharing.position(HANDLING, "grpc")
    partner.fail_next = True
    with pytest.raises(ConnectionError):
        relay.pump()
    assert relay.sharing.position(HANDLING, "grpc") == stored and relay.unacknowledged == 0
    resent_from = len(partner.sent)
    drain(relay)
    first_again = partner.sent[resent_from]
    assert first_again == partner.sent[1]  # the failed batch goes again, first
    cases = {n.originator_id for n in b.recorder.select_notifications(start=1, limit=100)}
    assert len(cases) == 10 and all(b.get_case(i).version == 1 for i in cases)  # each stored exactly once


def test_receipts_for_a_batch_resent_after_a_crash_are_stored_though_its_ledgers_exist(
    sites: tuple[CaseHub, CaseHub, WindowedPartner]
) -> None:
    a, b, _partner = sites
    exchange = CaseSharing(a)
    batch = exchange.outbound(HANDLING, 0)
    receipts = CaseSharing(b).ingest(RECEIVING, batch.events)
    exchange.record_receipts(HANDLING, "grpc", receipts, None, batch)  # receipts stored, then a crash
    assert batch.opened and len(batch.heads) == len(batch.events)
    again = CaseSharing(b).ingest(RECEIVING, batch.events)  # the same batch once more after the restart
    exchange.record_receipts(HANDLING, "grpc", again, batch.through, batch)
    assert exchange.position(HANDLING, "grpc") == batch.through
    assert all(len(exchange.receipts(e.case_id)) == 2 for e in batch.events)


def test_a_backlog_with_nothing_for_the_partner_moves_the_position_as_it_is_read(
    sites: tuple[CaseHub, CaseHub, WindowedPartner]
) -> None:
    """Claims are never sent, so most one-entry batches are empty: they still count against the
    batches in flight, and the stored position climbs step by step instead of once at the end."""
    a, _b, partner = sites
    relay = Relay(CaseSharing(a), partner, batch=1, window=1000, max_batches=3)
    relay._fill()
    assert len(relay._in_flight) == 3
    positions = drain(relay)
    assert len(positions) >= 10 and positions == sorted(positions)
    assert positions[-1] == a.recorder.max_notification_id()


def test_a_gap_is_filled_before_the_position_moves_past_it(sites: tuple[CaseHub, CaseHub, WindowedPartner]) -> None:
    """Pipelined batches may be stored out of order: a case's forward overtakes its receipt and is
    answered "gap". The missing events are sent again before the position is stored, so a failure
    while filling the gap leaves the position before it, and the next pass sends them once more."""
    a, b, partner = sites
    case_id = next(n.originator_id for n in a.recorder.select_notifications(1, 100)
                   if n.topic.startswith(CASE_TOPIC_PREFIX))
    step(a, c.ForwardCase, case_id, actor_data(CLERK))
    relay = Relay(CaseSharing(a), partner, batch=3, window=100)
    relay._fill()
    partner.open[-1].answer()  # the forward reaches B first
    partner.fail_next_resend = True
    with pytest.raises(ConnectionError):
        drain(relay)
    assert relay.sharing.position(HANDLING, "grpc") < a.recorder.max_notification_id()
    drain(relay)
    assert b.get_case(case_id).version == 2  # received and forwarded: nothing lost
    assert relay.sharing.position(HANDLING, "grpc") == a.recorder.max_notification_id()
