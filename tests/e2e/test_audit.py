"""Auditors across two real sites: one merged timeline, read-only credentials, chain verification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from adapters.launcher import SiteProcess, link, make_certs
from adapters.tls import TlsFiles, channel_credentials, issue_auditor_cert
from tests.e2e.two_sites import CLERK, HZ, PDS, SZ, actor, assert_same_shared_events, eventually, spec, start_sites
from tongban.v1 import audit_pb2, audit_pb2_grpc, case_service_pb2, case_service_pb2_grpc
from tongban.v1 import case_pb2 as pb

HANDLER = actor(SZ)


def audit_channel(port: int, files: TlsFiles) -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(files))


def test_audit_trail_across_two_sites(tmp_path: Path, started: list[SiteProcess]) -> None:
    certs = make_certs(tmp_path / "certs", PDS, SZ, HZ)
    issue_auditor_cert(certs, "li")
    auditor = TlsFiles(certs / "ca.pem", certs / "auditor-li.pem", certs / "auditor-li.key")
    a, b = spec(PDS, tmp_path, certs), spec(SZ, tmp_path, certs)
    link(a, b)
    processes = [SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")]
    pds, sz = start_sites(started, *processes)
    pds.receive()  # an earlier case: the exported one's segment starts inside the chain, not at genesis
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK)
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", case.case_id, HANDLER)
    sz.step("RequestSupplement", case.case_id, HANDLER, missing_materials=["参保缴费凭证"])
    pds.wait_state(case.case_id, pb.CASE_STATE_AWAITING_SUPPLEMENT)
    pds.step("RaiseIssue", case.case_id, CLERK, kind=pb.ISSUE_KIND_OTHER, description="补正材料寄递中")
    assert_same_shared_events(case.case_id, pds, sz)  # the issue has reached SZ before either is traced

    traces = {}
    for site, port in ((PDS, a.audit_port), (SZ, b.audit_port)):
        with audit_channel(port, auditor) as channel:
            traces[site] = audit_pb2_grpc.AuditServiceStub(channel).TraceCase(
                audit_pb2.TraceCaseRequest(case_id=case.case_id), timeout=10)
    # The merged timeline matches both sites' stores event for event.
    for site, staff in ((PDS, pds), (SZ, sz)):
        assert sorted((s.site, s.seq, s.event_hash) for s in traces[site].steps) == staff.shared(case.case_id)
    steps = traces[PDS].steps
    assert [s.step for s in steps[:4]] == ["CaseReceived", "CaseForwarded", "CaseSignedIn", "SupplementRequested"]
    assert steps[1].responsible == pb.PARTY_RECEIVING_PLACE and steps[2].responsible == pb.PARTY_HANDLING_PLACE
    assert steps[1].clock_label == "收件流转" and steps[1].deadline == pb.CLOCK_STATUS_MET
    assert SZ in steps[0].receipted_by

    with audit_channel(a.audit_port, auditor) as channel:
        audit_api = audit_pb2_grpc.AuditServiceStub(channel)
        verified = audit_api.VerifyChain(audit_pb2.VerifyChainRequest(), timeout=10)
        assert verified.intact and verified.checked_through > 0
        assert audit_api.VerifyChain(audit_pb2.VerifyChainRequest(case_id=case.case_id), timeout=10).intact
        items = audit_api.ListAccountability(audit_pb2.ListAccountabilityRequest(), timeout=10).items
        issues = [i for i in items if i.kind == "issue" and i.case_id == case.case_id]
        assert len(issues) == 1 and issues[0].holder == pb.PARTY_RECEIVING_PLACE  # raised at 平顶山, not yet assigned
        staff_api = case_service_pb2_grpc.CaseServiceStub(channel)
        assert staff_api.GetCase(case_service_pb2.GetCaseRequest(case_id=case.case_id), timeout=10).case.version
        with pytest.raises(grpc.RpcError) as write:
            staff_api.ForwardCase(case_service_pb2.ForwardCaseRequest(case_id=case.case_id, actor=CLERK), timeout=10)
        assert write.value.code() == grpc.StatusCode.PERMISSION_DENIED

    with audit_channel(a.audit_port, TlsFiles.for_site(certs, HZ)) as channel:
        with pytest.raises(grpc.RpcError) as foreign:
            audit_pb2_grpc.AuditServiceStub(channel).TraceCase(audit_pb2.TraceCaseRequest(case_id=case.case_id),
                                                               timeout=10)
        assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with audit_channel(a.audit_port, TlsFiles.for_site(certs, SZ)) as channel:
        shared = audit_pb2_grpc.AuditServiceStub(channel).TraceCase(audit_pb2.TraceCaseRequest(case_id=case.case_id),
                                                                    timeout=10)
        assert len(shared.steps) == len(steps)
        with pytest.raises(grpc.RpcError) as site_reads_staff_api:
            case_service_pb2_grpc.CaseServiceStub(channel).GetCase(
                case_service_pb2.GetCaseRequest(case_id=case.case_id), timeout=10)
        assert site_reads_staff_api.value.code() == grpc.StatusCode.PERMISSION_DENIED

    shown = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "audit", "--target", f"127.0.0.1:{a.audit_port}",
         "--certs", str(certs), "--auditor", "li", "trace", case.case_id],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}, check=False,
    )
    assert shown.returncode == 0, shown.stderr
    for text in ("责任追溯", "收件", "一次性告知补正", "办理地", "按时完成", "登记问题件"):
        assert text in shown.stdout, text
    def audit_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "adapters.cli.main", "audit", "--target", f"127.0.0.1:{a.audit_port}",
             "--certs", str(certs), "--auditor", "li", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )

    bundle_file = tmp_path / "bundle.json"
    exported = audit_cli("export", case.case_id, "-o", str(bundle_file))
    assert exported.returncode == 0, exported.stderr
    clean = audit_cli("verify", str(bundle_file))
    assert clean.returncode == 0 and "核验通过" in clean.stdout, clean.stdout + clean.stderr

    def countersigned() -> str | None:  # 苏州 countersigns 平顶山's checkpoints and keeps them
        again = audit_cli("export", case.case_id, "-o", str(bundle_file))
        assert again.returncode == 0, again.stderr
        checks = json.loads(bundle_file.read_text(encoding="utf-8"))["checkpoints"]
        return bundle_file.read_text(encoding="utf-8") if checks and checks[-1]["countersignatures"] else None

    eventually(countersigned, timeout=30, what="a checkpoint countersigned by 苏州")
    strict = audit_cli("verify", "--require-countersignature", "--trust", str(certs), str(bundle_file))
    assert strict.returncode == 0, strict.stdout + strict.stderr
    text = bundle_file.read_text(encoding="utf-8")
    first_hash = json.loads(text)["events"][1]["hash"]
    forged = text.replace(first_hash, first_hash[:-1] + ("0" if first_hash[-1] != "0" else "1"), 1)
    (tmp_path / "forged.json").write_text(forged, encoding="utf-8")
    failed = audit_cli("verify", str(tmp_path / "forged.json"))
    assert failed.returncode == 1 and "核验失败" in failed.stderr and "hash" in failed.stderr
    html = tmp_path / "trail.html"
    made = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "audit", "--target", f"127.0.0.1:{a.audit_port}",
         "--certs", str(certs), "--auditor", "li", "report", case.case_id, "-o", str(html)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert made.returncode == 0, made.stderr
    page = html.read_text(encoding="utf-8")
    assert "责任追溯报告" in page and page.count("<tr>") == len(steps) + 1 and "410402199003072416" not in page
