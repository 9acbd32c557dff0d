"""The exchange between two sites' hubs on in-memory stores, without any channel in between."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing, NotRouted
from hub.domain.receipts import DeliveryLedger, ledger_id
from tests.builders import CLERK, HANDLER, HANDLING, OTHER, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub, relay, step


@pytest.fixture
def sites() -> tuple[CaseHub, CaseHub]:
    return hub(RECEIVING), hub(HANDLING)


def test_a_case_flows_both_ways_and_both_sites_hold_the_same_events(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    assert relay(a, b) == 2
    step(b, c.SignCase, case.id, actor_data(HANDLER))
    step(b, c.RequestSupplement, case.id, actor_data(HANDLER), missing_materials=["参保缴费凭证"])
    assert relay(b, a) == 2
    step(a, c.SubmitSupplement, case.id, actor_data(CLERK), materials=[{"name": "参保缴费凭证"}])
    relay(a, b)
    step(b, c.AcceptCase, case.id, actor_data(HANDLER), committed_days=10)
    relay(b, a)
    ours, theirs = a.get_case(case.id), b.get_case(case.id)
    assert [e.hash() for e in ours.shared_events()] == [e.hash() for e in theirs.shared_events()]
    assert ours.state == theirs.state and ours.state.value == "in_review"
    assert ours.chain_head(HANDLING) == theirs.chain_head(HANDLING)
    receipts = CaseSharing(a).receipts(case.id)
    assert receipts and all(r["matched"] for r in receipts)
    assert receipts[-1]["stored_through"] == 3  # a's third event reached b
    assert relay(a, b) == 0 and relay(b, a) == 0  # positions moved: nothing is sent twice


def test_duplicates_are_ignored_and_gaps_reported(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    step(a, c.RaiseIssue, case.id, actor_data(CLERK), kind="dispute", description="争议")
    events = a.get_case(case.id).shared_events(RECEIVING)
    into = CaseSharing(b)
    first = into.ingest(RECEIVING, [events[0], events[2]])  # seq 2 lost on the way
    assert (first[0].status, first[0].stored_through, first[0].missing_from) == ("gap", 1, 2)
    again = into.ingest(RECEIVING, [events[0], events[1], events[1], events[2]])
    assert (again[0].status, again[0].stored_through) == ("stored", 3)
    assert b.get_case(case.id).version == 3


def test_a_forged_duplicate_is_reported_as_a_fork(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    received = a.get_case(case.id).shared_events()[0]
    CaseSharing(b).ingest(RECEIVING, [received])
    forged = dataclasses.replace(received, data={**received.data, "note": "篡改"})
    assert CaseSharing(b).ingest(RECEIVING, [forged])[0].status == "fork"


def test_events_for_a_case_not_routed_with_the_sender_are_refused(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    events = a.get_case(case.id).shared_events()
    with pytest.raises(NotRouted):
        CaseSharing(b).ingest(OTHER, events)  # a third site replays A's events as its own
    stranger = hub(OTHER)
    with pytest.raises(NotRouted):
        CaseSharing(stranger).ingest(RECEIVING, events)  # the case is not handled by that site
    with pytest.raises(NotRouted):
        CaseSharing(a).events_for(OTHER, case.id, RECEIVING, 1)
    assert stranger.recorder.max_notification_id() in (None, 0)


def test_record_receipts_counts_only_our_events_confirmed_for_the_first_time(sites: tuple[CaseHub, CaseHub]) -> None:
    """What the outstanding-receipts gauge is settled by: read from the delivery ledgers, so a repeated
    receipt or one for the partner's own events counts nothing, and no per-case memory is kept beside them."""
    a, b = sites
    at_a, at_b = CaseSharing(a), CaseSharing(b)

    def deliver(source: CaseSharing, target: CaseSharing) -> int:
        batch = source.outbound(target.site, source.position(target.site, "grpc"))
        receipts = target.ingest(source.site, batch.events)
        covered = source.record_receipts(target.site, "grpc", receipts, batch.through)
        assert source.record_receipts(target.site, "grpc", receipts, None) == 0  # the same receipts again
        return covered

    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    step(a, c.ForwardCase, case.id, actor_data(CLERK))
    assert deliver(at_a, at_b) == 2
    step(b, c.SignCase, case.id, actor_data(HANDLER))
    assert deliver(at_b, at_a) == 1
    step(a, c.RaiseIssue, case.id, actor_data(CLERK), kind="overdue", description="超期未办结")
    assert deliver(at_a, at_b) == 1  # A's third event only: the receipt says "through 3"


def test_a_ledger_opens_with_its_first_receipt_in_one_event_and_old_ledgers_still_read(
    sites: tuple[CaseHub, CaseHub],
) -> None:
    """One event per case and partner when one receipt is all a case gets (most cases): the log entry,
    chain link and row a separate opening event cost. A ledger stored before (opened bare, then a
    receipt) still reads back the same."""
    a, b = sites
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    relay(a, b)
    stored = list(a.events.get(ledger_id(case.id, HANDLING)))
    assert [type(e).__name__ for e in stored] == ["LedgerOpened"]
    [receipt] = CaseSharing(a).receipts(case.id)
    assert receipt["stored_through"] == 1 and receipt["matched"] and receipt["recorded_at"] == stored[0].timestamp

    old = DeliveryLedger(id=ledger_id(case.id, OTHER), case_id=str(case.id), partner=OTHER, first=None)
    old.record(origin=RECEIVING, stored_through=1, chain_head="h", matched=True, status="stored", channel="nats")
    a.save(old)
    opened, recorded = (a.mapper.to_stored_event(e) for e in a.events.get(old.id))
    state = json.loads(opened.state)
    state.pop("first")  # as stored before the field existed
    bare = a.mapper.to_domain_event(dataclasses.replace(opened, state=json.dumps(state).encode()))
    again = a.mapper.to_domain_event(recorded).mutate(bare.mutate(None))
    assert again is not None
    assert [r["stored_through"] for r in again.receipts] == [1] and again.receipts[0]["channel"] == "nats"
