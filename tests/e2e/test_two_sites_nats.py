"""A case crossing two cities with one leg over NATS JetStream, through a nats-server restart."""

from __future__ import annotations

from pathlib import Path

from adapters.launcher import SiteProcess
from tests.e2e.two_sites import CLERK, PDS, SZ, Staff, actor, assert_same_shared_events, link, make_certs, spec
from tests.nats_fixtures import nats_server  # noqa: F401
from tongban.v1 import case_pb2 as pb

HANDLER = actor(SZ)


def test_one_leg_over_nats(tmp_path: Path, started: list[SiteProcess],
                           nats_server: object) -> None:  # noqa: F811
    url = nats_server.url  # type: ignore[attr-defined]
    certs = make_certs(tmp_path / "certs", PDS, SZ)
    a, b = spec(PDS, tmp_path, certs, nats_url=url), spec(SZ, tmp_path, certs, nats_url=url)
    link(a, b, a_to_b="grpc", b_to_a="nats")
    processes = [SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")]
    for process in processes:
        process.start()
        started.append(process)
    pds, sz = (Staff(p) for p in processes)
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK)
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", case.case_id, HANDLER)
    sz.step("AcceptCase", case.case_id, HANDLER, committed_days=5)
    pds.wait_state(case.case_id, pb.CASE_STATE_IN_REVIEW)
    nats_server.restart()  # type: ignore[attr-defined]  # during traffic
    sz.step("DecideCase", case.case_id, HANDLER, outcome=pb.OUTCOME_APPROVED)
    pds.wait_state(case.case_id, pb.CASE_STATE_DECIDED, timeout=40)
    assert_same_shared_events(case.case_id, pds, sz)
