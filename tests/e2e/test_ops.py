"""What SREs rely on, from real site processes: /metrics, readiness, and logs without PII."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.launcher import SiteProcess, link, make_certs
from adapters.nats.server import NatsServer
from tests.builders import ID_NUMBER
from tests.e2e.two_sites import (
    CLERK,
    PDS,
    SZ,
    actor,
    eventually,
    scrape,
    spec,
    start_sites,
    value,
)
from tests.nats_fixtures import nats_server  # noqa: F401
from tongban.v1 import case_pb2 as pb

HANDLER = actor(SZ)




def health(process: SiteProcess, service: str) -> int:
    with grpc.insecure_channel(process.staff_address) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_metrics_readiness_and_clean_logs(tmp_path: Path, started: list[SiteProcess],
                                          nats_server: NatsServer) -> None:  # noqa: F811
    url = nats_server.url
    certs = nats_server.certs_dir  # the server's CA: NATS TLS and the sealing keys too
    assert certs is not None
    a, b = (spec(site, tmp_path, certs, nats_url=url, nats_credentials=nats_server.seed_file(site))
            for site in (PDS, SZ))
    link(a, b, a_to_b="grpc", b_to_a="nats")
    processes = [SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")]
    pds, sz = start_sites(started, *processes)
    pa, pb_ = processes
    case = pds.receive()
    pds.step("ForwardCase", case.case_id, CLERK)
    sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", case.case_id, HANDLER)
    sz.step("RequestSupplement", case.case_id, HANDLER, missing_materials=["参保缴费凭证"])
    pds.wait_state(case.case_id, pb.CASE_STATE_AWAITING_SUPPLEMENT)

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        samples = scrape(pa)
        return samples if value(samples, "tongban_exchange_events_received_total", partner=SZ, channel="nats") >= 2 \
            else None

    at_a = eventually(counted, what="平顶山 to count 苏州's events")
    assert value(at_a, "tongban_exchange_events_relayed_total", partner=SZ, channel="grpc") == 2
    assert value(at_a, "tongban_exchange_partner_up", partner=SZ, channel="grpc") == 1
    assert value(at_a, "tongban_cases", state="awaiting_supplement", partner=SZ) == 1
    assert value(at_a, "tongban_grpc_server_handled_total", method="ReceiveCase", code="OK") == 1
    assert value(at_a, "tongban_store_append_seconds_count") >= 3
    assert value(at_a, "tongban_rectification_on_time_ratio") == 1.0
    at_b = scrape(pb_)
    assert value(at_b, "tongban_supplement_requests_total") == 1
    assert value(at_b, "tongban_grpc_server_handled_total", method="DeliverEvents", code="OK") >= 1
    assert value(at_b, "tongban_exchange_events_relayed_total", partner=PDS, channel="nats") >= 2

    try:  # a user error is counted under its own code, not as a server error
        pds.step("DecideCase", case.case_id, CLERK, outcome=pb.OUTCOME_APPROVED)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED  # a clerk may not decide
    assert value(scrape(pa), "tongban_grpc_server_handled_total", method="DecideCase",
                 code="PERMISSION_DENIED") == 1

    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert health(pa, "readiness") == serving
    nats_server.stop()
    eventually(lambda: health(pa, "readiness") == not_serving, what="readiness to drop without NATS")
    assert health(pa, "liveness") == serving and health(pa, "tongban.v1.CaseService") == not_serving
    nats_server.start()
    eventually(lambda: health(pa, "readiness") == serving, timeout=30, what="readiness to come back")

    for process in processes:
        process.stop()
        log = process.log_path.read_text(encoding="utf-8")
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any(line.get("event") == "rpc" for line in lines)
        assert ID_NUMBER not in log and "13837512345" not in log


def test_a_taken_metrics_port_stops_the_site_with_one_clear_line(tmp_path: Path) -> None:
    """An SRE restarting a site onto a port something else holds gets one log line and exit 1, not a
    traceback and a half-started site."""
    certs = make_certs(tmp_path / "certs", PDS)
    process = SiteProcess(spec(PDS, tmp_path, certs), tmp_path / "a")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", process.spec.metrics_port))
        squatter.listen()
        with pytest.raises(RuntimeError, match="did not start"):
            process.start()
    assert process.process is not None and process.process.wait(timeout=20) == 1
    log = process.log_path.read_text(encoding="utf-8")
    assert "Traceback" not in log
    failed = [json.loads(line) for line in log.splitlines() if '"start_failed"' in line]
    assert len(failed) == 1 and "Address already in use" in failed[0]["error"]
