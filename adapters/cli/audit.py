"""`tongban audit`: the auditors' commands, against a site's read-only audit port (mutual TLS).

    tongban audit --target 127.0.0.1:7402 --certs DIR --auditor NAME trace CASE [--json]
    tongban audit ... verify-chain [CASE]
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import grpc
from rich.table import Table

from adapters.audit.signing import trusted_keys
from adapters.cli.audit_report import trail_html
from adapters.cli.console import err, out
from adapters.cli.render import CLOCK_STATUS, PARTY, as_json, local_time
from adapters.grpc.rpc import AUDIT_SERVICE, unary
from adapters.tls import TlsFiles, channel_credentials
from audit.bundle import verify_bundle
from hub.domain.identifiers import LOCAL_TZ
from tongban.v1 import audit_pb2


@click.group("audit")
@click.option("--target", envvar="TONGBAN_AUDIT_TARGET", default="127.0.0.1:7402", show_default=True,
              help="站点审计端口")
@click.option("--certs", type=click.Path(file_okay=False, path_type=Path), envvar="TONGBAN_CERTS",
              help="证书目录（含 ca.pem 与 auditor-<NAME>.pem/.key）")
@click.option("--auditor", envvar="TONGBAN_AUDITOR", default="", help="审计人员证书名")
@click.pass_context
def audit(ctx: click.Context, target: str, certs: Path | None, auditor: str) -> None:
    """责任追溯：审计人员只读查询。"""
    ctx.obj = {"target": target, "certs": certs, "auditor": auditor}


def _channel(ctx: click.Context) -> grpc.Channel:
    certs, auditor = ctx.obj["certs"], ctx.obj["auditor"]
    if certs is None or not auditor:
        err.print("错误：须指定 --certs 与 --auditor（审计端口仅接受审计人员证书）", highlight=False)
        sys.exit(2)
    files = TlsFiles(certs / "ca.pem", certs / f"auditor-{auditor}.pem", certs / f"auditor-{auditor}.key")
    return grpc.secure_channel(ctx.obj["target"], channel_credentials(files))


def _call(ctx: click.Context, rpc: str, request: Any) -> Any:
    channel = _channel(ctx)
    try:
        return unary(channel, AUDIT_SERVICE, rpc)(request, timeout=30)
    except grpc.RpcError as error:
        code = error.code()
        err.print(f"[red]错误[/]：{error.details() or code.name}（{code.name}）", highlight=False)
        sys.exit({grpc.StatusCode.NOT_FOUND: 3, grpc.StatusCode.PERMISSION_DENIED: 4,
                  grpc.StatusCode.INVALID_ARGUMENT: 2}.get(code, 6))
    finally:
        channel.close()


@audit.command("trace")
@click.argument("case_id")
@click.option("--json", "as_json_output", is_flag=True, help="输出 JSON")
@click.pass_context
def trace_case(ctx: click.Context, case_id: str, as_json_output: bool) -> None:
    """一个办件跨两地的完整办理轨迹：谁、在哪、何时、谁负责、是否按时、对方回执。"""
    response = _call(ctx, "TraceCase", audit_pb2.TraceCaseRequest(case_id=case_id))
    if as_json_output:
        click.echo(as_json(response))
        return
    case = response.case
    table = Table(title=f"办件 {case.case_number} 责任追溯（{case.item_name}，{case.receiving_site} → "
                        f"{case.handling_site}，当前：{case.state_label}）", title_justify="left")
    for header in ("#", "时间（北京）", "环节", "站点", "操作人", "责任方", "时限", "是否按时", "对方回执"):
        table.add_column(header)
    for s in response.steps:
        table.add_row(
            str(s.order), local_time(s.at), s.step_label, f"{s.site}#{s.seq}", s.actor.name or s.actor.staff_id,
            PARTY.get(s.responsible, ""), s.clock_label + (f"（{s.due_date}）" if s.due_date else ""),
            CLOCK_STATUS.get(s.deadline, ""), "、".join(s.receipted_by),
        )
    out.print(table)
    for origin, head in sorted(response.chain_heads.items()):
        out.print(f"链头 {origin}: {head}")


@audit.command("report")
@click.argument("case_id")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML 文件")
@click.pass_context
def report(ctx: click.Context, case_id: str, output: Path) -> None:
    """把办件的责任追溯写成可在浏览器中打开、打印的 HTML 报告。"""
    response = _call(ctx, "TraceCase", audit_pb2.TraceCaseRequest(case_id=case_id))
    generated = datetime.now(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")
    output.write_text(trail_html(response, generated), encoding="utf-8")
    out.print(f"已生成 {output}")


@audit.command("export")
@click.argument("case_id")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="证据包文件（JSON）")
@click.pass_context
def export(ctx: click.Context, case_id: str, output: Path) -> None:
    """导出办件证据包：事件、哈希链、签名检查点与公钥，可离线核验。"""
    response = _call(ctx, "ExportCase", audit_pb2.ExportCaseRequest(case_id=case_id))
    output.write_text(response.bundle_json, encoding="utf-8")
    out.print(f"已导出 {output}")


@audit.command("verify")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="只信任此目录中的公钥（<站点>.audit-pub.pem）")
@click.option("--require-countersignature", is_flag=True, help="要求最后一个检查点有对方站点会签")
def verify(bundle_file: Path, trust: Path | None, require_countersignature: bool) -> None:
    """离线核验证据包（无需连接站点），逐条说明哪里不符。"""
    trusted = trusted_keys(trust) if trust else None
    failures = verify_bundle(bundle_file.read_bytes(), trusted=trusted,
                             require_countersignature=require_countersignature)
    if not failures:
        out.print(f"[green]核验通过[/]：{bundle_file}")
        return
    err.print(f"[red]核验失败[/]：{bundle_file}（{len(failures)} 处）", highlight=False)
    for reason in failures:
        err.print(f"  - {reason}", highlight=False)
    sys.exit(1)


@audit.command("verify-chain")
@click.argument("case_id", required=False, default="")
@click.pass_context
def verify_chain(ctx: click.Context, case_id: str) -> None:
    """核验站点事件链（或某办件）的完整性，逐条指出被修改、删除或调换的事件。"""
    response = _call(ctx, "VerifyChain", audit_pb2.VerifyChainRequest(case_id=case_id))
    if response.intact:
        out.print(f"[green]完整[/]：已核验至通知 {response.checked_through}")
        return
    for f in response.findings:
        out.print(f"[red]{f.kind}[/] 通知 {f.position}：{f.detail}", highlight=False)
    sys.exit(1)
