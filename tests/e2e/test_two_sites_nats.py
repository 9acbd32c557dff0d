"""A case crossing two cities with one leg over NATS JetStream, through a nats-server restart."""

from __future__ import annotations

from pathlib import Path

from adapters.launcher import SiteProcess, link
from adapters.nats.server import NatsServer
from tests.e2e.two_sites import CLERK, PDS, SZ, Staff, actor, assert_same_shared_events, spec
from tests.nats_fixtures import nats_server  # noqa: F401
from tongban.v1 import case_pb2 as pb

HANDLER = actor(SZ)


def test_one_leg_over_nats(tmp_path: Path, started: list[SiteProcess],
                           nats_server: NatsServer) -> None:  # noqa: F811
    url = nats_server.url
    certs = nats_server.certs_dir  # the server's CA: NATS TLS and the sealing keys too
    assert certs is not None
    a, b = (spec(site, tmp_path, certs, nats_url=url, nats_credentials=nats_server.seed_file(site))
            for site in (PDS, SZ))
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
    nats_server.restart()  # during traffic
    sz.step("DecideCase", case.case_id, HANDLER, outcome=pb.OUTCOME_APPROVED)
    pds.wait_state(case.case_id, pb.CASE_STATE_DECIDED, timeout=40)
    assert_same_shared_events(case.case_id, pds, sz)

    # 苏州 sends its events over NATS, yet 平顶山 still countersigns 苏州's checkpoints (partner port).
    from adapters.tls import TlsFiles, channel_credentials, issue_auditor_cert
    from tests.e2e.two_sites import eventually
    from tongban.v1 import audit_pb2, audit_pb2_grpc

    issue_auditor_cert(certs, "wang")
    auditor = TlsFiles(certs / "ca.pem", certs / "auditor-wang.pem", certs / "auditor-wang.key")

    def countersigned_by_pds() -> bool:
        import json

        import grpc

        with grpc.secure_channel(f"127.0.0.1:{b.audit_port}", channel_credentials(auditor)) as channel:
            bundle = audit_pb2_grpc.AuditServiceStub(channel).ExportCase(
                audit_pb2.ExportCaseRequest(case_id=case.case_id), timeout=10).bundle_json
        signed = json.loads(bundle)["checkpoints"]
        return bool(signed) and any(c["signer"] == PDS for c in signed[-1]["countersignatures"])

    eventually(countersigned_by_pds, timeout=30, what="平顶山 to countersign 苏州 checkpoint")
