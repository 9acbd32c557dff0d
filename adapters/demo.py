"""`make demo`: start a site on embedded SQLite, drive one real case through its lifecycle over
gRPC, print its history with the staff CLI, stop what it started, exit 0.

平顶山市 (410400) receives an application for 企业职工基本养老保险关系转移接续, an item handled by
苏州市 (320500). In this single-site demo the 苏州 handler acts on the 平顶山 hub; the two-site
exchange comes with the point-to-point work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.grpc.errors import error_info
from routing.catalogue import Catalogue
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc
from tongban.v1 import case_service_pb2_grpc

RECEIVING, HANDLING = "410400", "320500"
CLERK = pb.Actor(staff_id="PDS-0107", role=pb.ROLE_WINDOW_CLERK, site=RECEIVING, name="李敏")
HANDLER = pb.Actor(staff_id="SZ-2231", role=pb.ROLE_HANDLER, site=HANDLING, name="周婷")
APPLICANT = pb.Actor(staff_id="applicant", role=pb.ROLE_APPLICANT, site=RECEIVING, name="王建国")
START_TIMEOUT = 30.0


def say(text: str) -> None:
    print(text, flush=True)


def start_site(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    config = workdir / "site.toml"
    config.write_text(
        f'[site]\ncode = "{RECEIVING}"\nname = "平顶山市"\n\n[store]\nkind = "sqlite"\ndata_dir = "data"\n\n'
        '[server]\nlisten = "127.0.0.1:0"\n',
        encoding="utf-8",
    )
    port_file = workdir / "port"
    log = (workdir / "site.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli.main", "serve", "--config", str(config), "--port-file", str(port_file)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"site did not start; see {workdir / 'site.log'}")
        time.sleep(0.05)
    port = int(port_file.read_text())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=START_TIMEOUT, wait_for_ready=True)
        if status.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError("site is not serving")
    return process, port


def stop_site(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive(stub: Any, item_code: str) -> str:
    call = {"timeout": 10.0}
    receipt = stub.ReceiveCase(
        svc.ReceiveCaseRequest(
            request_id=uuid.uuid4().hex,
            actor=CLERK,
            item_code=item_code,
            mode=pb.MODE_PROXY,
            handling_site=HANDLING,
            applicant=pb.Applicant(
                kind=pb.APPLICANT_KIND_PERSON, name="王建国", id_type=pb.ID_TYPE_RESIDENT_ID,
                id_number="410402199003072416", phone="13837512345", address="河南省平顶山市新华区建设路 18 号",
            ),
            materials=[pb.Material(name="居民身份证", copies=1), pb.Material(name="参保缴费凭证", copies=1)],
            applicant_consent=True,
            identity_verified=True,
        ),
        **call,
    )
    case = receipt.case
    case_id = case.case_id
    say(f"【收件】平顶山市窗口 {CLERK.name} 收件，办件编号 {case.case_number}，申请人 {case.applicant.name} "
        f"{case.applicant.id_number}")

    def step(rpc: str, label: str, **fields: Any) -> pb.Case:
        request = getattr(svc, f"{rpc}Request")(case_id=case_id, **fields)
        result = getattr(stub, rpc)(request, **call).case
        say(f"【{label}】→ {result.state_label}（版本 {result.version}）")
        return result

    step("ForwardCase", "流转", actor=CLERK, courier="EMS", tracking_number="1173945026718")
    step("SignCase", "苏州接件", actor=HANDLER)
    step("RequestSupplement", "一次性告知补正", actor=HANDLER,
         missing_materials=["原参保地社保经办机构出具的参保缴费凭证（盖章件）"], note="原凭证未加盖公章")
    # An illegal step is refused with a typed error and changes nothing.
    try:
        stub.DecideCase(svc.DecideCaseRequest(case_id=case_id, actor=HANDLER, outcome=pb.OUTCOME_APPROVED), **call)
    except grpc.RpcError as error:
        info = error_info(error)
        say(f"【拒绝】未受理即办结：{error.code().name} {error.details()}（{info.reason if info else ''}）")
    step("SubmitSupplement", "提交补正材料", actor=CLERK,
         materials=[pb.Material(name="参保缴费凭证（盖章件）", copies=1)])
    accepted = step("AcceptCase", "受理", actor=HANDLER)
    committed = next(c for c in accepted.clocks if c.code == "committed")
    say(f"        承诺 {accepted.committed_days} 个工作日，到期日 {committed.due_date}"
        + ("（暂定：该年度节假日安排未发布）" if committed.provisional else ""))
    step("DecideCase", "办结", actor=HANDLER, outcome=pb.OUTCOME_APPROVED, decision_number="苏人社转〔2026〕0815号")
    step("DispatchResult", "出件", actor=HANDLER, method=pb.RESULT_METHOD_PICKUP_AT_RECEIVING_PLACE,
         courier="EMS", tracking_number="1173945099821")
    step("ConfirmDelivery", "送达", actor=CLERK, received_by="王建国")
    step("ArchiveCase", "归档", actor=HANDLER)
    step("RateCase", "评价", actor=APPLICANT, score=2, reason="补正来回耽误一周", about=pb.PARTY_HANDLING_PLACE)
    step("RecordCallback", "差评回访", actor=HANDLER, note="电话回访，申请人反映补正告知不够清楚")
    step("CloseBadReview", "差评整改", actor=HANDLER, outcome=pb.RECTIFICATION_OUTCOME_RECTIFIED,
         note="补正告知模板增加盖章要求示例")
    step("RecordFeedback", "整改反馈", actor=CLERK, satisfied=True, note="申请人认可")
    return case_id


def main() -> int:
    item = Catalogue.load().find("企业职工基本养老保险关系转移接续")
    if item is None:
        say("catalogue has no 企业职工基本养老保险关系转移接续")
        return 1
    with tempfile.TemporaryDirectory(prefix="tongban-demo-") as tmp:
        workdir = Path(tmp)
        say(f"启动站点 平顶山市 {RECEIVING}（嵌入式 SQLite：{workdir / 'data'}）")
        process, port = start_site(workdir)
        try:
            say(f"站点已就绪：127.0.0.1:{port}（pid {process.pid}）\n")
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                case_id = drive(case_service_pb2_grpc.CaseServiceStub(channel), item.code)
            say("\n$ tongban case show " + case_id)
            env = {**os.environ, "COLUMNS": "200"}
            shown = subprocess.run(
                [sys.executable, "-m", "adapters.cli.main", "--target", f"127.0.0.1:{port}", "case", "show", case_id],
                env=env, check=False,
            )
            if shown.returncode != 0:
                return shown.returncode
        finally:
            stop_site(process)
            say(f"\n站点已停止（pid {process.pid}，退出码 {process.returncode}）")
        return 0 if process.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
