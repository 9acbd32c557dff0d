"""Readable output for window staff: Chinese labels, local (Beijing) times, PII already masked."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from hub.domain.identifiers import LOCAL_TZ
from hub.domain.values import Mode, Party
from tongban.v1 import case_pb2 as pb

CLOCK_STATUS = {
    pb.CLOCK_STATUS_RUNNING: "计时中",
    pb.CLOCK_STATUS_WARNING: "[yellow]预警[/]",
    pb.CLOCK_STATUS_BREACHED: "[red]超期[/]",
    pb.CLOCK_STATUS_PAUSED: "暂停计时",
    pb.CLOCK_STATUS_MET: "[green]按时完成[/]",
    pb.CLOCK_STATUS_LATE: "[red]超期完成[/]",
}
PARTY = {pb.Party.Value("PARTY_" + p.name): p.label for p in Party}
MODE = {pb.Mode.Value("MODE_" + m.name): m.label for m in Mode}
DETAIL_LABELS = {
    "applicant": "申请人", "case_number": "办件编号", "item": "事项", "mode": "模式", "materials": "材料",
    "receiving_site": "收件地", "handling_site": "办理地", "co_handling_sites": "联办地", "note": "备注",
    "reasons": "理由", "reason": "理由", "courier": "寄递企业", "tracking_number": "快递单号",
    "missing_materials": "需补正材料", "notice_number": "通知书文号", "committed_days": "承诺工作日",
    "kind": "种类", "conclusion": "结论", "outcome": "结果", "decision_number": "决定书文号", "method": "送达方式",
    "licence_reference": "证照编号", "received_by": "签收人", "issue_id": "问题件", "description": "描述",
    "party": "责任方", "resolution": "处理结果", "score": "评分", "about": "评价对象", "satisfied": "满意",
}
ROLE = {pb.ROLE_WINDOW_CLERK: "收件", pb.ROLE_HANDLER: "办理", pb.ROLE_SUPERVISOR: "监督",
        pb.ROLE_APPLICANT: "申请人", pb.ROLE_SYSTEM: "系统"}


def as_json(message: Message) -> str:
    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), ensure_ascii=False, indent=2)


def local_time(stamp: Any) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime().replace(tzinfo=__import__("datetime").timezone.utc).astimezone(LOCAL_TZ).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def case_table(case: pb.Case) -> Table:
    table = Table(title=f"办件 {case.case_number}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    applicant = case.applicant
    rows = [
        ("办件编号", case.case_number),
        ("案件标识", case.case_id),
        ("事项", f"{case.item_name}（{case.item_code}）"),
        ("通办模式", MODE.get(case.mode, "")),
        ("当前状态", f"[bold]{case.state_label}[/]"),
        ("收件地 → 办理地", f"{case.receiving_site} → {case.handling_site}"
         + (f"（联办：{'、'.join(case.co_handling_sites)}）" if case.co_handling_sites else "")),
        ("办理部门", case.department),
        ("申请人", f"{applicant.name}  {applicant.id_number}  {applicant.phone}".strip()),
        ("收件时间", local_time(case.received_at)),
        ("承诺时限", f"{case.committed_days} 个工作日" if case.committed_days else ""),
        ("版本", str(case.version)),
    ]
    if case.deemed_accepted:
        rows.append(("提示", "[red]未在 5 个工作日内一次性告知补正，依法视为受理[/]"))
    if case.HasField("rating"):
        r = case.rating
        rows.append(("评价", f"{r.score} {r.label}" + (f"：{r.reason}" if r.reason else "")))
    for issue in case.issues:
        rows.append((f"问题件 {issue.issue_id}", f"{issue.description}（{PARTY.get(issue.responsible, '待认定')}"
                     f"{'，已办结' if issue.resolved else ''}）"))
    for name, value in rows:
        if value:
            table.add_row(name, value)
    return table


def clocks_table(case: pb.Case) -> Table:
    table = Table(title="时限（工作日）", title_justify="left")
    for header in ("环节", "责任方", "时限", "开始", "预警日", "到期日", "状态"):
        table.add_column(header)
    for clock in case.clocks:
        due = clock.due_date + ("（暂定）" if clock.provisional and clock.due_date else "")
        table.add_row(
            clock.label + (f" {clock.subject}" if clock.subject and clock.subject != "rating" else ""),
            PARTY.get(clock.holder, ""),
            str(clock.limit_workdays) if clock.due_date else "—",
            local_time(clock.started_at),
            clock.warn_from,
            due,
            CLOCK_STATUS.get(clock.status, ""),
        )
    return table


def history_table(entries: Any) -> Table:
    table = Table(title="办理记录", title_justify="left")
    for header in ("#", "时间（北京）", "环节", "操作人", "站点", "办理后状态", "说明"):
        table.add_column(header)
    for e in entries:
        who = f"{e.actor.name or e.actor.staff_id}（{ROLE.get(e.actor.role, '')}）"
        details = "；".join(f"{DETAIL_LABELS.get(k, k)}：{v}" for k, v in e.details.items())
        state = pb.CaseState.Name(e.state_after)
        table.add_row(str(e.version), local_time(e.at), e.step_label, who, e.actor.site, _state_label(state), details)
    return table


def _state_label(wire_name: str) -> str:
    from hub.domain.lifecycle import CaseState

    member = wire_name.removeprefix("CASE_STATE_")
    return CaseState[member].label if member in CaseState.__members__ else wire_name


def print_case(console: Console, case: pb.Case, entries: Any = None) -> None:
    console.print(case_table(case))
    if case.clocks:
        console.print(clocks_table(case))
    if entries is not None:
        console.print(history_table(entries))


def cases_table(cases: Any) -> Table:
    table = Table(title="办件列表", title_justify="left")
    for header in ("办件编号", "事项", "状态", "收件地", "办理地", "最近到期日", "时限状态", "案件标识"):
        table.add_column(header)
    for s in cases:
        table.add_row(s.case_number, s.item_name, s.state_label, s.receiving_site, s.handling_site,
                      s.next_due_date, CLOCK_STATUS.get(s.due_status, ""), s.case_id)
    return table
