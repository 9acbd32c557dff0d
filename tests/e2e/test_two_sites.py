"""Real sites as processes, real gRPC with mutual TLS, real nats-server: a case crosses cities.

After every scenario both sites hold exactly the same shared events for each case.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from adapters.exchange.wire import event_message
from adapters.launcher import SiteProcess, link, make_certs
from adapters.tls import TlsFiles, channel_credentials, create_ca, issue_site_cert
from hub.domain.shared import SharedEvent
from tests.e2e.two_sites import (
    CLERK,
    HZ,
    PDS,
    SZ,
    Staff,
    actor,
    assert_same_shared_events,
    eventually,
    spec,
    start_sites,
)
from tongban.v1 import case_pb2 as pb
from tongban.v1 import exchange_pb2, exchange_pb2_grpc

HANDLER, HZ_HANDLER = actor(SZ), actor(HZ)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return make_certs(tmp_path / "certs", PDS, SZ, HZ)


def test_a_case_crosses_two_cities_over_grpc_with_mtls(tmp_path: Path, certs: Path, started: list[SiteProcess]) -> None:
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pds, sz = start_sites(started, SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b"))
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK, courier="EMS", tracking_number="1173945026718")
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", case.case_id, HANDLER)
    sz.step("RequestSupplement", case.case_id, HANDLER, missing_materials=["参保缴费凭证"])
    pds.wait_state(case.case_id, pb.CASE_STATE_AWAITING_SUPPLEMENT)
    pds.step("SubmitSupplement", case.case_id, CLERK, materials=[pb.Material(name="参保缴费凭证", copies=1)])
    sz.wait_state(case.case_id, pb.CASE_STATE_PENDING_ACCEPTANCE)
    for rpc, fields in [("AcceptCase", {"committed_days": 10}), ("DecideCase", {"outcome": pb.OUTCOME_APPROVED}),
                        ("DispatchResult", {"method": pb.RESULT_METHOD_PICKUP_AT_RECEIVING_PLACE,
                                            "tracking_number": "1173945099821"})]:
        sz.step(rpc, case.case_id, HANDLER, **fields)
    pds.wait_state(case.case_id, pb.CASE_STATE_RESULT_IN_TRANSIT)
    pds.step("ConfirmDelivery", case.case_id, CLERK, received_by="王建国")
    sz.wait_state(case.case_id, pb.CASE_STATE_DELIVERED)
    sz.step("ArchiveCase", case.case_id, HANDLER)
    pds.wait_state(case.case_id, pb.CASE_STATE_ARCHIVED)
    assert_same_shared_events(case.case_id, pds, sz)
    origins = {origin for origin, _seq, _hash in pds.shared(case.case_id)}
    assert origins == {PDS, SZ}
    for site, partner, origin in ((pds, SZ, PDS), (sz, PDS, SZ)):
        ours = max(seq for o, seq, _h in site.shared(case.case_id) if o == origin)

        def receipted(site: Staff = site, partner: str = partner, ours: int = ours) -> bool:
            receipts = site.call("GetCaseHistory", case_id=case.case_id).receipts
            return any(r.partner_site == partner and r.stored_through_seq == ours for r in receipts)

        eventually(receipted, what=f"{partner}'s receipt for all of {origin}'s events")
        receipts = site.call("GetCaseHistory", case_id=case.case_id).receipts
        assert all(r.matched and r.status == "stored" and r.channel == "grpc" for r in receipts)


def test_joint_case_across_three_sites(tmp_path: Path, certs: Path, started: list[SiteProcess]) -> None:
    a, b, c = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs), spec(HZ, tmp_path, certs)
    link(a, b)
    link(a, c)
    link(b, c)
    pds, sz, hz = start_sites(started, *(SiteProcess(s, tmp_path / s.site) for s in (a, b, c)))
    case = pds.receive(handling_site=SZ, mode=pb.MODE_JOINT, co_sites=(HZ,))
    assert list(case.co_handling_sites) == [HZ]
    pds.step("ForwardCase", case.case_id, CLERK)
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    hz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", case.case_id, HANDLER)
    hz.wait_state(case.case_id, pb.CASE_STATE_PENDING_ACCEPTANCE)
    hz.step("AcceptCase", case.case_id, HZ_HANDLER, committed_days=30)
    for site in (pds, sz):
        site.wait_state(case.case_id, pb.CASE_STATE_IN_REVIEW)
    assert_same_shared_events(case.case_id, pds, sz, hz)


def test_partner_down_then_back_gets_everything_once_in_order(
    tmp_path: Path, certs: Path, started: list[SiteProcess]
) -> None:
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pa, pb_ = SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")
    pds, sz = start_sites(started, pa, pb_)
    cases = [pds.receive() for _ in range(3)]
    sz.wait_state(cases[0].case_id, pb.CASE_STATE_RECEIVED)
    pb_.kill()  # the partner crashes mid-flow
    for case in cases:
        pds.step("ForwardCase", case.case_id, CLERK)
        pds.step("RaiseIssue", case.case_id, CLERK, kind=pb.ISSUE_KIND_OTHER, description="待办理地确认")
    pb_.start()
    for case in cases:
        sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED, timeout=40)
        assert_same_shared_events(case.case_id, pds, sz, timeout=40)
        seqs = [seq for origin, seq, _h in sz.shared(case.case_id) if origin == PDS]
        assert seqs == [1, 2, 3]


def test_site_killed_between_storing_and_publishing_delivers_after_restart(
    tmp_path: Path, certs: Path, started: list[SiteProcess]
) -> None:
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pa, pb_ = SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")
    pds, sz = start_sites(started, pa, pb_)
    case = pds.receive()
    sz.wait_state(case.case_id, pb.CASE_STATE_RECEIVED)
    pb_.stop()  # nothing can be published now...
    pds.step("ForwardCase", case.case_id, CLERK)  # ...so this is stored but not delivered
    pa.kill()  # and the site crashes before it could publish
    pb_.start()
    pa.start()
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED, timeout=40)
    assert_same_shared_events(case.case_id, pds, sz)


def test_wrong_certificate_and_unrouted_case_are_refused(
    tmp_path: Path, certs: Path, started: list[SiteProcess]
) -> None:
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pds, sz = start_sites(started, SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b"))
    case = pds.receive()
    sz.wait_state(case.case_id, pb.CASE_STATE_RECEIVED)
    before = sz.shared(case.case_id)
    history = pds.call("GetCaseHistory", case_id=case.case_id)
    forged = exchange_pb2.DeliverEventsRequest(sender_site=PDS, events=[_resend(history.entries[0], case)])
    address = f"127.0.0.1:{b.partner_port}"

    rogue = tmp_path / "rogue"
    create_ca(rogue, "Rogue CA")
    issue_site_cert(rogue, PDS)  # right site code, wrong CA
    with grpc.secure_channel(address, channel_credentials(TlsFiles.for_site(rogue, PDS)),
                             options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            exchange_pb2_grpc.ExchangeServiceStub(channel).DeliverEvents(forged, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    with grpc.secure_channel(address, channel_credentials(TlsFiles.for_site(certs, HZ)),
                             options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        as_hz = exchange_pb2.DeliverEventsRequest(sender_site=HZ, events=forged.events)
        with pytest.raises(grpc.RpcError) as denied:
            stub.DeliverEvents(as_hz, timeout=5)  # 杭州 is not a party of this case
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as impersonating:
            stub.DeliverEvents(forged, timeout=5)  # claims to be 平顶山 with 杭州's certificate
        assert impersonating.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert sz.shared(case.case_id) == before
    assert eventually(lambda: "partner_refused" in Path(sz.process.log_path).read_text(), 5, "a log line")


def _resend(entry: pb.HistoryEntry, case: pb.Case) -> exchange_pb2.SharedEvent:
    """A stand-in event: only its routing matters, the receiver must refuse it before reading more."""
    from datetime import UTC, datetime
    from uuid import UUID

    return event_message(SharedEvent(
        case_id=UUID(case.case_id), origin=HZ, seq=1, lamport=1, event_id=entry.event_id, type="CaseReceived",
        type_version=2, occurred_at=datetime.now(UTC), actor={"staff_id": "x", "role": "handler", "site": HZ,
                                                                "name": ""},
        data={"receiving_site": PDS, "handling_site": SZ, "co_handling_sites": []},
    ))


def test_duplicates_and_out_of_order_deliveries_are_applied_once_in_order(
    tmp_path: Path, certs: Path, started: list[SiteProcess]
) -> None:
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pa, pb_ = SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")
    (pds,) = start_sites(started, pa)  # 苏州 is down: nothing is relayed yet
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK)
    pds.step("RaiseIssue", case.case_id, CLERK, kind=pb.ISSUE_KIND_OTHER, description="原件待寄")
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{a.partner_port}", channel_credentials(TlsFiles.for_site(certs, SZ)),
                             options=options) as channel:
        fetched = exchange_pb2_grpc.ExchangeServiceStub(channel).FetchEvents(
            exchange_pb2.FetchEventsRequest(case_id=case.case_id, origin_site=PDS, from_seq=1), timeout=5
        ).events
    assert [e.seq for e in fetched] == [1, 2, 3]
    pa.stop()
    (sz,) = start_sites(started, pb_)
    first, second, third = fetched
    with grpc.secure_channel(f"127.0.0.1:{b.partner_port}", channel_credentials(TlsFiles.for_site(certs, PDS)),
                             options=options) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)

        def deliver(*events: exchange_pb2.SharedEvent) -> list[tuple[int, int]]:
            response = stub.DeliverEvents(exchange_pb2.DeliverEventsRequest(sender_site=PDS, events=events), timeout=5)
            return [(r.status, r.stored_through_seq) for r in response.receipts]

        assert deliver(third, first) == [(exchange_pb2.RECEIPT_STATUS_GAP, 1)]
        assert deliver(first, third, second, third, first) == [(exchange_pb2.RECEIPT_STATUS_STORED, 3)]
        assert deliver(second) == [(exchange_pb2.RECEIPT_STATUS_STORED, 3)]
    history = sz.call("GetCaseHistory", case_id=case.case_id)
    assert [(e.origin_site, e.seq) for e in history.entries] == [(PDS, 1), (PDS, 2), (PDS, 3)]
    assert history.case.state == pb.CASE_STATE_FORWARDED and len(history.case.issues) == 1


def test_the_documented_partner_client_verifies_hashes_and_chain(
    tmp_path: Path, certs: Path, started: list[SiteProcess]
) -> None:
    import subprocess
    import sys

    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    pds, sz = start_sites(started, SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b"))
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK)
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    example = Path(__file__).parents[2] / "docs" / "examples" / "partner_client.py"
    result = subprocess.run(
        [sys.executable, str(example), "--address", f"127.0.0.1:{a.partner_port}", "--certs", str(certs),
         "--site", SZ, "--case", case.case_id, "--origin", PDS],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("hash ok") == 2 and "MISMATCH" not in result.stdout
    receipts = eventually(lambda: [r for r in pds.call("GetCaseHistory", case_id=case.case_id).receipts
                                   if r.stored_through_seq == 2], what="the receipt for seq 2")
    assert f"chain head: {receipts[0].chain_head}" in result.stdout
