"""Reconciliation between two real sites (processes, mutual TLS, real stores): each class of
divergence is injected into a store, then `tongban reconcile` repairs it or opens a discrepancy;
a scheduled run does the same on PostgreSQL; a misbehaving partner changes nothing."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import grpc
import psycopg
import pytest
from psycopg import sql

from adapters.bootstrap import build_hub
from adapters.free_port import free_port
from adapters.launcher import SiteProcess, link, make_certs
from adapters.settings import PostgresSettings, load_settings
from adapters.tls import TlsFiles, channel_credentials
from hub.application.case_sharing import CaseSharing
from hub.domain.case import Case
from hub.domain.lifecycle import Step
from hub.domain.shared import SharedEvent
from hub.domain.values import Actor, Role
from reconciliation.messages import Params
from tests.e2e.two_sites import (
    CLERK,
    PDS,
    SZ,
    actor,
    assert_same_shared_events,
    eventually,
    scrape,
    spec,
    start_sites,
    value,
)
from tongban.v1 import case_pb2 as pb
from tongban.v1 import reconcile_pb2, reconcile_pb2_grpc

HANDLER = actor(SZ)
NO_SCHEDULE = {"interval": 0.0, "pending_grace": 0.0}


def tongban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def reconcile_json(process: SiteProcess, *args: str) -> Any:
    done = tongban("reconcile", "--config", str(process.config_path), *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def store_at(process: SiteProcess, event: SharedEvent) -> None:
    """Store a partner's event at ``process``'s site directly, as if it had been delivered."""
    hub = build_hub(load_settings(process.config_path))
    CaseSharing(hub).ingest(SZ, [event])
    hub.close()


def forged_sign(case_id: str, process_b: SiteProcess) -> SharedEvent:
    """A sign event as B would send it, but by someone B never had sign: never saved at B."""
    hub = build_hub(load_settings(process_b.config_path))
    case: Case = hub.get_case(UUID(case_id))
    case.take_step(Step.SIGN, Actor("SZ-FORGER", Role.HANDLER, SZ, "冒名"), site=hub.site)
    hub.close()
    return case.shared_events(SZ)[-1]


def delete_events(process: SiteProcess, case_id: str, from_version: int = 1) -> None:
    """Lose events from a stopped site's SQLite store, as a bad restore would."""
    with sqlite3.connect(process.spec.data_dir / "events.sqlite3") as db:
        db.execute("DELETE FROM stored_events WHERE originator_id = ? AND originator_version >= ?",
                   (UUID(case_id).hex, from_version))


def test_each_divergence_is_repaired_or_opened_by_tongban_reconcile(
    tmp_path: Path, started: list[SiteProcess]
) -> None:
    certs = make_certs(tmp_path / "certs", PDS, SZ)
    a, b = spec(PDS, tmp_path, certs, reconcile=NO_SCHEDULE), spec(SZ, tmp_path, certs, reconcile=NO_SCHEDULE)
    link(a, b)
    pa, pb_ = SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")
    pds, sz = start_sites(started, pa, pb_)
    cases = [pds.receive().case_id for _ in range(5)]
    for case_id in cases:
        pds.step("ForwardCase", case_id, CLERK, courier="EMS", tracking_number="1173945026718")
    for case_id in cases[1:3]:
        sz.wait_state(case_id, pb.CASE_STATE_FORWARDED)
        sz.step("SignCase", case_id, HANDLER)
    for case_id in cases:
        assert_same_shared_events(case_id, pds, sz)
    assert reconcile_json(pa, "--partner", SZ)["differing_cases"] == 0

    lost_at_b, suffix_lost_at_a, own_lost_at_a, fork = cases[0], cases[1], cases[3], cases[4]
    sz.wait_state(fork, pb.CASE_STATE_FORWARDED)
    pa.stop()
    pb_.stop()
    delete_events(pb_, lost_at_b)  # B lost a whole case A opened: A pushes it
    delete_events(pa, suffix_lost_at_a, from_version=3)  # A lost B's sign: A pulls it
    delete_events(pa, own_lost_at_a, from_version=2)  # A lost its own forwarding: people decide
    for p in (pa, pb_):
        done = tongban("reconcile", "--config", str(p.config_path), "rebuild-digests")
        assert done.returncode == 0 and "已重建" in done.stdout, done.stderr
    store_at(pa, forged_sign(fork, pb_))  # A holds a sign B never made, under B's seq 1
    pa.start()
    pb_.start()
    sz.step("SignCase", fork, HANDLER)  # the real one: A reports the fork in its receipt

    summary = reconcile_json(pa, "--partner", SZ)
    assert summary["by_kind"] == {"missing_case": 1, "missing_suffix": 1, "own_data_loss": 1, "fork": 1}
    assert (summary["repaired"], summary["opened"], summary["rejected"]) == (2, 2, 0)
    assert summary["rounds"] <= 4
    assert_same_shared_events(lost_at_b, pds, sz)
    assert_same_shared_events(suffix_lost_at_a, pds, sz)

    report = reconcile_json(pa, "discrepancies")
    open_ = {d["case_id"]: d for d in report[SZ]}
    assert {(d["kind"], d["status"]) for d in open_.values()} == {("fork", "open"), ("own_data_loss", "open")}
    assert open_[fork]["our_event"]["hash"] != open_[fork]["their_event"]["hash"]
    assert open_[own_lost_at_a]["lost_by"] == PDS and open_[own_lost_at_a]["first_differing_seq"] == 2

    again = reconcile_json(pa, "--partner", SZ)
    assert (again["differing_cases"], again["repaired"], again["opened"]) == (2, 0, 0)  # nothing twice

    config = str(pa.config_path)
    fork_id = open_[fork]["id"]
    assert tongban("reconcile", "--config", config, "review", fork_id, "--staff", "PDS-SUP-1").returncode == 0
    done = tongban("reconcile", "--config", config, "resolve", fork_id, "--staff", "PDS-SUP-1",
                   "--reason", "两地核实：以办理地签收记录为准")
    assert done.returncode == 0 and "已处理" in done.stdout
    assert [d["kind"] for d in reconcile_json(pa, "discrepancies")[SZ]] == ["own_data_loss"]
    refused = tongban("reconcile", "--config", config, "resolve", fork_id, "--staff", "PDS-SUP-1", "--reason", "x")
    assert refused.returncode == 4 and "已处理" in refused.stderr and "Traceback" not in refused.stderr


def test_the_command_explains_what_it_cannot_do(tmp_path: Path, started: list[SiteProcess]) -> None:
    certs = make_certs(tmp_path / "certs", PDS, SZ)
    a = spec(PDS, tmp_path, certs, reconcile=NO_SCHEDULE)
    a.partners.append((SZ, "grpc", "127.0.0.1:1"))  # nobody listens there
    process = SiteProcess(a, tmp_path / "a")
    process.config_path.parent.mkdir(parents=True, exist_ok=True)
    process.config_path.write_text(a.config(), encoding="utf-8")
    unknown = tongban("reconcile", "--config", str(process.config_path), "--partner", "330100")
    assert unknown.returncode == 2 and "330100" in unknown.stderr
    down = tongban("reconcile", "--config", str(process.config_path), "--partner", SZ)
    assert down.returncode == 6 and "无法连接" in down.stderr and "Traceback" not in down.stderr
    no_store = spec(PDS, tmp_path / "no-store", certs, postgres={"host": "127.0.0.1", "port": free_port()})
    config = tmp_path / "no-store.toml"
    config.write_text(no_store.config(), encoding="utf-8")
    store_down = tongban("reconcile", "--config", str(config), "discrepancies")
    assert store_down.returncode == 6 and "无法连接本站存储" in store_down.stderr
    assert "Traceback" not in store_down.stderr and len(store_down.stderr.strip().splitlines()) == 1


def test_sites_reconcile_on_schedule_on_postgresql(
    tmp_path: Path, postgres_schema: PostgresSettings, started: list[SiteProcess]
) -> None:
    # postgres_schema before started: the sites stop before their schemas are dropped.
    certs = make_certs(tmp_path / "certs", PDS, SZ)
    pg = dataclasses.asdict(postgres_schema)
    schedule = {"interval": 0.5, "pending_grace": 0.0}
    a = spec(PDS, tmp_path, certs, postgres=pg, reconcile=schedule)
    b = spec(SZ, tmp_path, certs, postgres={**pg, "schema": postgres_schema.schema + "_b"}, reconcile=schedule)
    link(a, b)
    processes = [SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")]
    try:
        pds, sz = start_sites(started, *processes)
        case_id = pds.receive().case_id
        pds.step("ForwardCase", case_id, CLERK, courier="EMS", tracking_number="1173945026718")
        sz.wait_state(case_id, pb.CASE_STATE_FORWARDED)
        # A holds the forged sign and B its real one before either site's schedule can compare them:
        # a run in between would see A ahead of B (a different discrepancy) as well as the fork.
        forged = forged_sign(case_id, processes[1])
        processes[0].stop()
        store_at(processes[0], forged)
        sz.step("SignCase", case_id, HANDLER)
        processes[0].start()

        def opened(process: SiteProcess, partner: str) -> bool:
            return value(scrape(process), "tongban_reconcile_discrepancies_open", partner=partner) == 1.0

        eventually(lambda: opened(processes[0], SZ) and opened(processes[1], PDS), timeout=30,
                   what="both sites to open the fork on schedule")
        samples = scrape(processes[0])
        assert value(samples, "tongban_reconcile_runs_total", partner=SZ, result="ok") >= 1
        assert value(samples, "tongban_reconcile_breaker_tripped", partner=SZ) == 0
    finally:
        for process in processes:
            process.stop()
        with psycopg.connect(host=postgres_schema.host, port=postgres_schema.port, user=postgres_schema.user,
                             dbname=postgres_schema.dbname, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(postgres_schema.schema + "_b")))


def test_a_misbehaving_partner_gets_a_clear_error_and_changes_nothing(
    tmp_path: Path, started: list[SiteProcess]
) -> None:
    certs = make_certs(tmp_path / "certs", PDS, SZ, "330100")
    a = spec(PDS, tmp_path, certs, reconcile={**NO_SCHEDULE, "max_frame_bytes": 8192.0})
    b = spec(SZ, tmp_path, certs, reconcile=NO_SCHEDULE)
    link(a, b)
    pa = SiteProcess(a, tmp_path / "a")
    [pds] = start_sites(started, pa)
    case_id = pds.receive().case_id
    before = pds.shared(case_id)

    def call(site: str, request: reconcile_pb2.ReconcileRequest) -> grpc.RpcError:
        credentials = channel_credentials(TlsFiles.for_site(certs, site))
        options = [("grpc.ssl_target_name_override", "localhost")]
        with (grpc.secure_channel(f"127.0.0.1:{a.partner_port}", credentials, options=options) as channel,
              pytest.raises(grpc.RpcError) as refused):
            reconcile_pb2_grpc.ReconcileServiceStub(channel).Reconcile(request, timeout=10)
        return refused.value

    p = Params()
    good = reconcile_pb2.ReconcileParams(digest_version=p.version, branching=p.branching,
                                         id_list_threshold=p.id_list_threshold, max_frame_bytes=8192, max_rounds=64)
    other_version = reconcile_pb2.ReconcileParams()
    other_version.CopyFrom(good)
    other_version.digest_version = 9
    fp = {"mode": reconcile_pb2.RANGE_MODE_FINGERPRINT, "count": 1, "fingerprint": bytes(16)}
    cases = [
        (SZ, reconcile_pb2.ReconcileRequest(params=good, ranges=[
            reconcile_pb2.ReconcileRange(lower=b"\x05", upper=b"\x09", **fp),
            reconcile_pb2.ReconcileRange(lower=b"\x01", upper=b"\x03", **fp)]),
         grpc.StatusCode.INVALID_ARGUMENT, "顺序"),
        (SZ, reconcile_pb2.ReconcileRequest(params=good, ranges=[reconcile_pb2.ReconcileRange(
            lower=b"", open_ended=True, mode=reconcile_pb2.RANGE_MODE_ID_LIST, items=bytes(24) * 600)]),
         grpc.StatusCode.INVALID_ARGUMENT, "过大"),
        (SZ, reconcile_pb2.ReconcileRequest(params=other_version, ranges=[
            reconcile_pb2.ReconcileRange(lower=b"", open_ended=True, **fp)]),
         grpc.StatusCode.FAILED_PRECONDITION, "版本"),
        ("330100", reconcile_pb2.ReconcileRequest(params=good), grpc.StatusCode.PERMISSION_DENIED, "330100"),
    ]
    for site, request, code, words in cases:
        error = call(site, request)
        assert error.code() == code, (words, error.details())
        assert words in (error.details() or ""), error.details()
    assert pds.shared(case_id) == before
    eventually(lambda: "reconcile_message_refused" in pa.log_tail(200), what="the refusal in the site log")
