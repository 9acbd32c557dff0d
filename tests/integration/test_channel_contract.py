"""One contract for every channel the relay uses: the real gRPC channel, the real NATS channel, and the
in-process fake the unit tests use (tests/memory_sites.DirectChannel) all pass the same cases.

The contract (adapters/exchange/channel.py): a delivery that returns (or whose pending result returns)
means the partner stores the events, exactly once however often they are sent; ``resend`` fills a gap;
the receipts a channel answers with (none on NATS: they come back through the inbox) say what was stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from adapters.exchange.channel import Channel
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.nats_channel import NatsInbox, NatsPartner, Redelivery, Sealer
from adapters.nats.server import NatsServer
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.case import Case
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import DirectChannel, hub, step
from tests.nats_fixtures import nats_server  # noqa: F401
from tongban.v1 import exchange_pb2_grpc

FAST = Redelivery(gap_first=0.2, failure_first=0.2, longest=1.0)


def held(partner: CaseHub, events: list[SharedEvent], timeout: float = 15.0) -> int:
    """How many of ``events`` the partner holds, polled until it holds all (NATS stores them after
    ``deliver`` returns) or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(1 for e in events
                    if (case := partner.find(e.case_id, Case)) is not None and case.last_seq(e.origin) >= e.seq)
        if count == len(events) or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


@pytest.fixture(params=["fake", "grpc", "nats"])
def link(request: pytest.FixtureRequest) -> Iterator[tuple[CaseHub, CaseHub, Channel]]:
    """(our hub A, the partner's hub B, A's channel to B)."""
    a, b = hub(RECEIVING), hub(HANDLING)
    closers: list[Callable[[], None]] = [a.close, b.close]
    channel: Channel
    if request.param == "fake":
        channel = DirectChannel(CaseSharing(b), sender=RECEIVING)
    elif request.param == "grpc":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
            ExchangeServicer(CaseSharing(b), lambda _context: RECEIVING), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        client = GrpcPartner(RECEIVING, HANDLING, f"127.0.0.1:{port}", None)
        closers += [lambda: server.stop(1).wait(), client.close]
        channel = client
    else:
        nats: NatsServer = request.getfixturevalue("nats_server")
        assert nats.certs_dir is not None
        inbox = NatsInbox(CaseSharing(b), nats.access(HANDLING), Sealer.for_site(nats.certs_dir, HANDLING),
                          redelivery=FAST)
        inbox.start()
        partner = NatsPartner(RECEIVING, HANDLING, nats.access(RECEIVING), Sealer.for_site(nats.certs_dir, RECEIVING))
        closers += [inbox.stop, partner.close]
        channel = partner
    try:
        yield a, b, channel
    finally:
        for close in reversed(closers):
            close()


def opened(a: CaseHub, n: int) -> list[SharedEvent]:
    """``n`` new cases at A, forwarded: their shared events (two per case), oldest first."""
    events: list[SharedEvent] = []
    for i in range(n):
        case, _ = a.receive(c.parse(c.ReceiveCase, receive_request(f"contract-{i}")))
        step(a, c.ForwardCase, case.id, actor_data(CLERK))
        events += a.get_case(case.id).shared_events(RECEIVING)
    return events


def check_receipts(receipts: list[CaseReceipt], events: list[SharedEvent]) -> None:
    """Receipts, where a channel answers with them, name only cases it was given, all stored."""
    cases = {e.case_id for e in events}
    assert all(r.case_id in cases and r.origin == RECEIVING for r in receipts)
    assert all(r.status is ReceiptStatus.STORED for r in receipts)


def test_a_returned_delivery_is_stored_by_the_partner(link: tuple[CaseHub, CaseHub, Channel]) -> None:
    a, b, channel = link
    events = opened(a, 3)
    check_receipts(channel.deliver(events), events)
    assert held(b, events) == len(events)


def test_a_pending_delivery_settles_and_is_stored(link: tuple[CaseHub, CaseHub, Channel]) -> None:
    a, b, channel = link
    events = opened(a, 2)
    pending = [channel.deliver_async(events[:2]), channel.deliver_async(events[2:])]
    for p in pending:
        check_receipts(p.result(timeout=15), events)
        assert p.done()
    assert held(b, events) == len(events)


def test_the_same_events_sent_twice_are_stored_once(link: tuple[CaseHub, CaseHub, Channel]) -> None:
    a, b, channel = link
    events = opened(a, 2)
    channel.deliver(events)
    channel.deliver(events)
    assert held(b, events) == len(events)
    for case_id in {e.case_id for e in events}:
        assert b.get_case(case_id).last_seq(RECEIVING) == 2 and b.get_case(case_id).version == 2


def test_resend_fills_a_gap(link: tuple[CaseHub, CaseHub, Channel]) -> None:
    a, b, channel = link
    events = opened(a, 1)
    channel.deliver(events[:1])
    assert held(b, events[:1]) == 1
    gap = CaseReceipt(events[0].case_id, RECEIVING, 1, "", ReceiptStatus.GAP, missing_from=2)
    check_receipts(channel.resend(events[1:], gap), events)
    assert held(b, events) == len(events)


def test_a_channel_names_its_partner_and_kind(link: tuple[CaseHub, CaseHub, Channel]) -> None:
    _a, _b, channel = link
    assert channel.partner == HANDLING
    assert channel.channel_name.isidentifier()  # a metric label and part of the relay's tracking name
