"""`tongban reconcile`: reconcile with a partner now, report and work the discrepancy cases.

These commands open the site's own store from its config file (they work whether or not the site
is running) and reach the partner over its partner port with the site's certificate. Errors are
one line on stderr: exit 2 bad input or config, 3 not found, 4 refused by a rule (and a tripped
circuit breaker), 6 partner or the site's own store unreachable, 1 anything else.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import click
import grpc
import psycopg
from eventsourcing.persistence import ConnectionUnavailableError, MapperDeserialisationError, OperationalError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.bootstrap import build_digest_index, build_hub, reconcile_policy
from adapters.cli.console import err, fail, out
from adapters.exchange.grpc_client import GrpcPartner
from adapters.reconcile.grpc_client import GrpcReconcilePeer
from adapters.settings import ConfigError, Settings, load_settings
from adapters.store.digest_index import ensure_digests
from adapters.tls import TlsFiles, channel_credentials
from hub.application.case_sharing import CaseSharing
from hub.domain.errors import CaseNotFound, HubError, InvalidInput, NotPermitted, RuleViolation
from hub.domain.values import Actor, Role
from ops.logging import configure_logging
from reconciliation.classify import Kind
from reconciliation.discrepancy import Discrepancy
from reconciliation.reconciler import Reconciler, Summary

_T = TypeVar("_T")
PHASES = {"compare": "比对摘要", "classify": "核对差异", "repair": "自动修复"}


def _call(work: Callable[[], _T]) -> _T:
    try:
        return work()
    except MapperDeserialisationError:
        fail("无法读取本站存储的事件：PII 密钥（站点配置 [security] pii_key_env 所指的环境变量，默认 TONGBAN_PII_KEY）"
             "缺失或与存储时所用的不同", 2)
    except ConfigError as error:
        fail(str(error), 2)
    except InvalidInput as error:
        fail(error.message, 2)
    except CaseNotFound as error:
        fail(error.message, 3)
    except (RuleViolation, NotPermitted) as error:
        fail(f"{error.message}（{error.reason}）", 4)
    except HubError as error:
        fail(error.message, 1)
    except (psycopg.OperationalError, OperationalError, ConnectionUnavailableError) as error:
        fail(f"无法连接本站存储：{str(error).strip().splitlines()[0]}", 6)
    except grpc.RpcError as error:
        code = error.code()
        unreachable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        fail(f"{'无法连接伙伴站点' if unreachable else '伙伴站点拒绝'}（{code.name}）：{error.details()}",
              6 if unreachable else 4)


class Context:
    """The site's settings and hub, opened once per command."""

    def __init__(self, config: str) -> None:
        self.settings: Settings = _call(lambda: load_settings(Path(config)))
        self.hub = _call(lambda: build_hub(self.settings))
        self.reconciler = Reconciler(self.hub, CaseSharing(self.hub), _call(lambda: build_digest_index(self.settings)),
                                     reconcile_policy(self.settings), now=self.hub.now)

    def peer(self, partner: str) -> GrpcReconcilePeer:
        found = next((p for p in self.settings.partners if p.site == partner and p.address), None)
        if found is None:
            fail(f"站点配置中没有伙伴 {partner} 的地址（[[partners]] site/address）", 2)
        certs = self.settings.certs_dir
        credentials = channel_credentials(TlsFiles.for_site(certs, self.settings.site)) if certs else None
        return GrpcReconcilePeer(GrpcPartner(self.settings.site, partner, found.address, credentials))


_config = click.option("--config", "config", required=True, envvar="TONGBAN_CONFIG",
                       type=click.Path(dir_okay=False), help="站点配置文件 (TOML)")


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@_config
@click.option("--partner", default=None, help="伙伴站点行政区划代码；给出时立即与其对账一次")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON（供脚本使用）")
@click.pass_context
def reconcile(ctx: click.Context, config: str, partner: str | None, as_json: bool) -> None:
    """自动对账：与伙伴站点比对记录，修复可安全修复的差异，其余立为差异件。"""
    configure_logging(level=logging.WARNING)
    ctx.obj = Context(config)
    if ctx.invoked_subcommand is not None:
        return
    if partner is None:
        fail("请用 --partner 指定伙伴站点，或使用子命令（discrepancies / review / resolve / rebuild-digests）", 2)
    site: Context = ctx.obj
    peer = site.peer(str(partner))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=as_json) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(PHASES.get(phase, phase), total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)

        summary = _call(lambda: site.reconciler.run(peer, progress))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), ensure_ascii=False, indent=2))
    else:
        out.print(summary_table(site.settings.site, summary))
    if summary.tripped:
        at_least = " 至少" if summary.stopped_early else ""
        err.print(f"[red]熔断[/]：差异办件{at_least} {summary.differing_cases} 件超过自动修复上限，未作任何修复；"
                  "请先排查原因（大面积差异通常是缺陷，不是漂移）", highlight=False)
        sys.exit(4)


def summary_table(site: str, s: Summary) -> Table:
    table = Table(title=f"{site} ↔ {s.partner} 对账结果（第 {s.run} 次）", title_justify="left", show_header=False,
                  min_width=44)
    table.add_column("项目")
    table.add_column("数值", justify="right")
    differing = f"≥ {s.differing_cases}" if s.stopped_early else s.differing_cases  # the breaker cut the count
    rows: list[tuple[str, object]] = [("比对办件", s.compared), ("差异办件", differing)]
    rows += [(f"  {Kind(k).label}", n) for k, n in sorted(s.by_kind.items())]
    rows += [("已自动修复", s.repaired), ("新立差异件", s.opened), ("在途待核", s.pending),
             ("拒收（声明与事件不符）", s.rejected), ("续做上次中断的修复", s.resumed),
             ("往返次数", s.rounds), ("发送字节", s.bytes_sent), ("接收字节", s.bytes_received),
             ("用时（秒）", f"{s.seconds:.2f}"), ("熔断", "是" if s.tripped else "否")]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


@reconcile.command()
@click.option("--partner", "partners", multiple=True, help="只看这些伙伴（可多次）；默认配置中的全部伙伴")
@click.option("--all", "show_all", is_flag=True, help="也列出已处理的差异件")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def discrepancies(site: Context, partners: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """差异件报告：每个伙伴待处理（或全部）的差异件。"""
    codes = partners or tuple(p.site for p in site.settings.partners)
    found = {p: site.reconciler.discrepancies(p, open_only=not show_all) for p in codes}
    if as_json:
        click.echo(json.dumps({p: [_data(d) for d in ds] for p, ds in found.items()}, ensure_ascii=False, indent=2))
        return
    for partner, items in found.items():
        if not items:
            out.print(f"与 {partner}：没有{'' if show_all else '待处理的'}差异件")
            continue
        table = Table(title=f"与 {partner} 的差异件（{len(items)} 件）", title_justify="left")
        for header in ("差异件", "办件", "来源站点", "类别", "本方/对方事件数", "首个不同序号", "状态", "处理"):
            table.add_column(header, overflow="fold")
        for d in items:
            resolution = d.resolution["reason"] if d.resolution else ""
            table.add_row(str(d.id), d.case_id, d.origin, Kind(d.kind).label, f"{d.ours}/{d.theirs}",
                          str(d.first_differing_seq or "-"), d.status.label, resolution)
        out.print(table)


def _data(d: Discrepancy) -> dict[str, Any]:
    return {"id": str(d.id), "case_id": d.case_id, "origin": d.origin, "kind": d.kind, "ours": d.ours,
            "theirs": d.theirs, "lost_by": d.lost_by, "first_differing_seq": d.first_differing_seq,
            "our_event": d.our_event, "their_event": d.their_event, "status": d.status.value,
            "reviewer": d.reviewer, "resolution": d.resolution}


_staff = [
    click.option("--staff", required=True, help="工号（记入处理记录）"),
    click.option("--staff-name", default="", help="姓名"),
]


def _actor(site: Context, staff: str, staff_name: str) -> Actor:
    return Actor(staff, Role.SUPERVISOR, site.settings.site, staff_name)


def _id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        fail(f"{value} 不是有效的差异件编号", 2)


@reconcile.command()
@click.argument("discrepancy")
@_staff[0]
@_staff[1]
@click.pass_obj
def review(site: Context, discrepancy: str, staff: str, staff_name: str) -> None:
    """开始核查一个差异件。"""
    found = _call(lambda: site.reconciler.review(_id(discrepancy), _actor(site, staff, staff_name)))
    out.print(f"差异件 {found.id}：{found.status.label}")


@reconcile.command()
@click.argument("discrepancy")
@click.option("--reason", required=True, help="处理理由（必填，留痕）")
@_staff[0]
@_staff[1]
@click.pass_obj
def resolve(site: Context, discrepancy: str, reason: str, staff: str, staff_name: str) -> None:
    """处理完毕一个差异件（写明理由）。"""
    found = _call(lambda: site.reconciler.review(_id(discrepancy), _actor(site, staff, staff_name), resolve=reason))
    out.print(f"差异件 {found.id}：{found.status.label}")


@reconcile.command("rebuild-digests")
@click.pass_obj
def rebuild_digests(site: Context) -> None:
    """从事件日志重建对账摘要（从备份恢复后使用；请先停止站点）。"""
    _call(lambda: ensure_digests(site.hub, force=True))
    out.print("对账摘要已重建")
