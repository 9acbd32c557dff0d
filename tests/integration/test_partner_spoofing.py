"""Spoofing over the real partner port: a step only the other side may take, sent by a partner, is refused
at ingest with PERMISSION_DENIED and its reason; a rating before the service ended is refused; in every
refusal nothing is stored, and the genuine events that follow still arrive.

The schema is satisfied in each case (the event is well formed, its actor works for its origin): what
refuses it is the authorization table (hub/domain/authorization.py), applied to partners' events as to
our own staff.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.wire import event_message
from adapters.grpc.errors import error_info
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.shared import SharedEvent
from hub.domain.values import Actor, Role
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub, relay, step
from tongban.v1 import exchange_pb2, exchange_pb2_grpc


@pytest.fixture
def sites() -> Iterator[tuple[CaseHub, CaseHub, exchange_pb2_grpc.ExchangeServiceStub]]:
    """平顶山 (a) and 苏州 (b), with b's partner port on a real gRPC server; its caller is 平顶山 (the
    certificate's word, as peer_site gives it in a site)."""
    a, b = hub(RECEIVING), hub(HANDLING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
        ExchangeServicer(CaseSharing(b), lambda _context: RECEIVING), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield a, b, exchange_pb2_grpc.ExchangeServiceStub(channel)
    finally:
        channel.close()
        server.stop(1).wait()


def next_of(a: CaseHub, case_id: uuid.UUID, type_: str, actor: Actor, data: dict[str, object]) -> SharedEvent:
    """A well-formed next event of 平顶山's for the case: what a hostile or broken 平顶山 could send."""
    last = a.get_case(case_id).shared_events(RECEIVING)[-1]
    return dataclasses.replace(last, seq=last.seq + 1, lamport=a.get_case(case_id).lamport + 1,
                               event_id=str(uuid.uuid4()), type=type_, actor=actor_data(actor), data=data)


def deliver(stub: exchange_pb2_grpc.ExchangeServiceStub, *events: SharedEvent) -> exchange_pb2.DeliverEventsResponse:
    request = exchange_pb2.DeliverEventsRequest(sender_site=RECEIVING, events=[event_message(e) for e in events])
    return stub.DeliverEvents(request, timeout=10)


def forwarded(a: CaseHub, b: CaseHub) -> uuid.UUID:
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    relay(a, b)
    return case.id


@pytest.mark.parametrize(("actor", "reason"), [
    (Actor("PDS-H", Role.HANDLER, RECEIVING, "伪办理人"), "WRONG_SIDE"),  # a handler, but of the receiving site
    (Actor("PDS-0107", Role.WINDOW_CLERK, RECEIVING, "李敏"), "WRONG_ROLE"),  # the clerk signing the case in
])
def test_a_handling_step_sent_by_the_receiving_site_is_refused_and_stores_nothing(
    sites: tuple[CaseHub, CaseHub, exchange_pb2_grpc.ExchangeServiceStub], actor: Actor, reason: str,
) -> None:
    a, b, stub = sites
    case_id = forwarded(a, b)
    sign = next_of(a, case_id, "CaseSignedIn", actor, {"details": {}})
    before = b.head()
    with pytest.raises(grpc.RpcError) as refused:
        deliver(stub, sign)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(refused.value)
    assert info is not None and info.reason == reason
    assert b.head() == before and b.get_case(case_id).state.value == "forwarded"


def test_a_rating_before_the_service_ended_is_refused_and_genuine_events_still_arrive(
    sites: tuple[CaseHub, CaseHub, exchange_pb2_grpc.ExchangeServiceStub],
) -> None:
    a, b, stub = sites
    case_id = forwarded(a, b)
    rating = next_of(a, case_id, "CaseRated", CLERK, {"score": 5, "reason": "", "about": "handling_place"})
    before = b.head()
    with pytest.raises(grpc.RpcError) as refused:
        deliver(stub, rating)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(refused.value)
    assert info is not None and info.reason == "NOT_YET_RATEABLE"
    assert b.head() == before
    step(a, c.RaiseIssue, case_id, actor_data(CLERK), kind="dispute", description="申请人对材料清单有异议")
    genuine = a.get_case(case_id).shared_events(RECEIVING)[-1]
    [receipt] = deliver(stub, genuine).receipts
    assert receipt.stored_through_seq == genuine.seq and b.get_case(case_id).last_seq(RECEIVING) == genuine.seq
