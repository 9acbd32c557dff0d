"""`tongban exchange`: what a partner refused for good (parked), sent again once the cause is fixed, or discarded.

Two kinds of parked deliveries, one set of commands:
- gRPC (``--config site.toml``): our events a partner refused, parked at this (sending) site in its own
  store; ``replay`` sends a parked case again over the partner port with the site's certificate.
- NATS (``--nats URL --site CODE``): messages this site's inbox could not apply, parked in its stream.

Both work whether or not the site is running. Errors are one line on stderr: exit 2 bad input or config,
3 no such stream or parked entry, 4 the partner refused again, 6 NATS, the partner or the store
unreachable, 1 anything else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import click
import grpc
import psycopg
from eventsourcing.persistence import ConnectionUnavailableError, MapperDeserialisationError, OperationalError
from rich.table import Table

from adapters.bootstrap import build_hub
from adapters.cli import token_file
from adapters.cli.console import err, fail, out
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.nats_channel import (
    NatsChannelError,
    NatsUnavailable,
    NotParked,
    ParkedMessage,
    StreamMissing,
    discard_parked,
    list_parked,
    replay_parked,
)
from adapters.exchange.refusal import deliver_or_refuse
from adapters.nats.access import NatsAccess
from adapters.settings import ConfigError, Settings, load_settings
from adapters.tls import TlsError, TlsFiles, channel_credentials
from hub.application.case_sharing import CaseSharing
from hub.application.dead_letters import DeadLetters
from hub.domain.errors import HubError, InvalidInput, RuleViolation
from hub.domain.parked import DeliveryRefused, ParkedEntry, ParkedStatus
from ops.logging import configure_logging

_T = TypeVar("_T")

_CHANNEL = "grpc"
_STATUS_LABELS = {ParkedStatus.PARKED: "搁置中", ParkedStatus.REPLAYED: "已重放", ParkedStatus.DISCARDED: "已放弃"}
_config_option = click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
                              help="站点配置文件 (TOML)：处理经 gRPC 投递、被伙伴拒收而搁置在本站的事件")
_nats_option = click.option("--nats", "nats_url", default=None, envvar="TONGBAN_NATS_URL",
                            help="NATS 服务器地址，如 nats://127.0.0.1:4222：处理本站 NATS 流中搁置的消息")
_site_option = click.option("--site", default=None, help="站点行政区划代码（6 位，用于 --nats）")
_partner_option = click.option("--partner", default=None, help="伙伴站点行政区划代码（用于 --config）")
_by_option = click.option("--by", "by", default="", envvar="TONGBAN_OPERATOR",
                          help="操作人姓名或工号（记录在案）；不给则取本终端 tongban login 的工号")
_certs_option = click.option("--certs", "certs_dir", type=click.Path(file_okay=False, path_type=Path),
                             envvar="TONGBAN_CERTS", default=None, help="证书目录（连接加密的 NATS 时用）")
_credentials_option = click.option("--nats-credentials", "credentials", envvar="TONGBAN_NATS_CREDENTIALS",
                                   type=click.Path(dir_okay=False, path_type=Path), default=None,
                                   help="本站 nkey 种子文件（tongban nats-config 生成）")


def _access(nats_url: str, site: str, certs_dir: Path | None, credentials: Path | None) -> NatsAccess:
    """The site's own NATS credentials: with a seed, mutual TLS from the certs dir as well."""
    if credentials is not None and certs_dir is None:
        fail("--nats-credentials 需要同时给出 --certs（双向 TLS）", 2)
    tls = TlsFiles.for_site(certs_dir, site) if credentials is not None and certs_dir is not None else None
    return NatsAccess(nats_url, site, tls, credentials)


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
    except DeliveryRefused as error:
        fail(f"伙伴站点仍拒收（{error.refusal.code} {error.refusal.reason}）：{error.refusal.message}；仍保持搁置", 4)
    except RuleViolation as error:
        fail(f"{error.message}（{error.reason}）", 3 if error.reason == "NOT_PARKED" else 4)
    except HubError as error:
        fail(error.message, 1)
    except (psycopg.OperationalError, OperationalError, ConnectionUnavailableError) as error:
        fail(f"无法连接本站存储：{str(error).strip().splitlines()[0]}", 6)
    except grpc.RpcError as error:
        fail(f"无法连接伙伴站点（{error.code().name}）：{error.details()}", 6)
    except ValueError as error:
        fail(str(error), 2)
    except NatsUnavailable as error:
        fail(f"无法连接 NATS（{error.where}）：{error.cause}", 6)
    except StreamMissing as error:
        fail(f"站点 {error.site} 的流不存在（该站点从未在此 NATS 上启动收件）", 3)
    except NotParked as error:
        fail(f"序号 {error.stream_seq} 不是站点 {error.site} 的搁置消息", 3)
    except TlsError as error:
        fail(str(error), 2)
    except NatsChannelError as error:
        fail(str(error), 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def exchange() -> None:
    """站点间交换：查看、重放或放弃被拒收而搁置的投递（gRPC：--config；NATS：--nats）。"""
    configure_logging(level=logging.WARNING)  # connection retries are debug noise here; errors are our one line


class Site:
    """The site's settings and store, opened from its config for the gRPC commands."""

    def __init__(self, config: str) -> None:
        self.settings: Settings = _call(lambda: load_settings(Path(config)))
        self.letters = DeadLetters(CaseSharing(_call(lambda: build_hub(self.settings))))

    def partners(self, partner: str | None) -> list[str]:
        known = [p.site for p in self.settings.partners if p.channel == _CHANNEL]
        if partner is None:
            return known
        if partner not in known:
            fail(f"站点配置中没有经 gRPC 交换的伙伴 {partner}（[[partners]]）", 2)
        return [partner]

    def client(self, partner: str) -> GrpcPartner:
        found = next((p for p in self.settings.partners if p.site == partner and p.address), None)
        if found is None:
            fail(f"站点配置中没有伙伴 {partner} 的地址（[[partners]] site/address）", 2)
        certs = self.settings.certs_dir
        credentials = channel_credentials(TlsFiles.for_site(certs, self.settings.site)) if certs else None
        return GrpcPartner(self.settings.site, partner, found.address, credentials, retry=self.settings.retry.grpc)


def _which(config: str | None, nats_url: str | None, site: str | None) -> str:
    """"grpc" or "nats", from the options given (exactly one of --config and --nats; a NATS address from
    the environment gives way to a --config on the command line)."""
    if config is not None and nats_url is not None:
        source = click.get_current_context().get_parameter_source("nats_url")
        if source is click.core.ParameterSource.ENVIRONMENT:
            nats_url = None
    if (config is None) == (nats_url is None):
        fail("请给出 --config（gRPC 搁置的投递）或 --nats（NATS 搁置的消息）之一", 2)
    if nats_url is not None and not site:
        fail("使用 --nats 时须用 --site 给出站点行政区划代码", 2)
    return "grpc" if config is not None else "nats"


def _case(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        fail(f"不是有效的办件编号(UUID)：{value}", 2)


def _operator(by: str) -> str:
    """Who is recorded as having replayed or discarded: ``--by``, else the staff id this terminal is
    signed in as (``tongban login``, unexpired)."""
    if by.strip():
        return by.strip()
    signed_in = token_file.load()
    if signed_in is not None and not signed_in.expired and signed_in.staff_id:
        return signed_in.staff_id
    fail("请用 --by 写明操作人，或先 tongban login（记录在案）", 2)


@exchange.command()
@_config_option
@_partner_option
@_nats_option
@_site_option
@_certs_option
@_credentials_option
@click.option("--all", "include_closed", is_flag=True, help="连同已重放、已放弃的记录一起列出（用于 --config）")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON（供脚本使用）")
def parked(config: str | None, partner: str | None, nats_url: str | None, site: str | None,
           certs_dir: Path | None, credentials: Path | None, include_closed: bool, as_json: bool) -> None:
    """列出搁置的投递：伙伴、办件、事件序号与类型、拒收原因、时间。"""
    if _which(config, nats_url, site) == "nats":
        assert nats_url is not None and site is not None
        _nats_parked(_access(nats_url, site, certs_dir, credentials), site, as_json)
        return
    assert config is not None
    ours = Site(config)
    entries: list[ParkedEntry] = []
    for code in ours.partners(partner):
        entries += _call(lambda: ours.letters.listed(code, _CHANNEL, include_closed=include_closed))  # noqa: B023
    if as_json:
        click.echo(json.dumps([_entry_data(e) for e in entries], ensure_ascii=False, indent=2))
        return
    if not entries:
        out.print(f"站点 {ours.settings.site} 没有搁置的投递")
        return
    out.print(entries_table(ours.settings.site, entries, include_closed))


def _entry_data(entry: ParkedEntry) -> dict[str, object]:
    data = dataclasses.asdict(entry)
    data.update(case_id=str(entry.case_id), status=entry.status.value, seqs=list(entry.seqs),
                types=list(entry.types), held=list(entry.held), parked_at=entry.parked_at.isoformat(),
                closed_at=entry.closed_at.isoformat() if entry.closed_at else None)
    return data


def entries_table(site: str, entries: Sequence[ParkedEntry], include_closed: bool) -> Table:
    table = Table(title=f"站点 {site} 搁置的投递（{len(entries)} 件）", title_justify="left")
    headers = ["伙伴", "办件", "事件序号", "事件类型", "拒收原因", "搁置时间", "其后暂扣"]
    if include_closed:
        headers += ["状态", "处理人", "理由"]
    for header in headers:
        table.add_column(header, overflow="fold")
    for e in entries:
        row = [e.partner, str(e.case_id), ", ".join(map(str, e.seqs)), ", ".join(e.types),
               f"{e.code} {e.reason}：{e.message}", e.parked_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
               ", ".join(map(str, e.held)) or "-"]
        if include_closed:
            row += [_STATUS_LABELS[e.status], e.by or "-", e.why or "-"]
        table.add_row(*row)
    return table


def _nats_parked(nats: NatsAccess, site: str, as_json: bool) -> None:
    messages = _call(lambda: list_parked(nats, site))
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(m) for m in messages], ensure_ascii=False, indent=2))
        return
    if not messages:
        out.print(f"站点 {site} 没有搁置的消息")
        return
    out.print(parked_table(site, messages))


def parked_table(site: str, messages: list[ParkedMessage]) -> Table:
    table = Table(title=f"站点 {site} 搁置的消息（{len(messages)} 条）", title_justify="left")
    for header in ("序号", "原因", "来源站点", "事件", "办件"):
        table.add_column(header, overflow="fold")
    for m in messages:
        table.add_row(str(m.stream_seq), m.reason, m.sender or "-", m.event_id or "-", m.case_id or "-")
    return table


@exchange.command()
@_config_option
@_partner_option
@click.option("--case", "case", default=None, help="只重放这一办件（用于 --config）；不给则按搁置顺序重放该伙伴的全部")
@_by_option
@_nats_option
@_site_option
@_certs_option
@_credentials_option
@click.option("--seq", "stream_seq", type=click.IntRange(min=1), default=None,
              help="只重放这一条（序号见 parked，用于 --nats）；不给则按顺序重放全部")
def replay(config: str | None, partner: str | None, case: str | None, by: str, nats_url: str | None,
           site: str | None, certs_dir: Path | None, credentials: Path | None, stream_seq: int | None) -> None:
    """重新投递搁置的事件（原因排除后使用）；伙伴确认收妥后移出搁置清单。"""
    if _which(config, nats_url, site) == "nats":
        assert nats_url is not None and site is not None
        count = _call(lambda: replay_parked(_access(nats_url, site, certs_dir, credentials), site, stream_seq))
        out.print(f"已重放 {count} 条消息")
        return
    assert config is not None
    if partner is None:
        fail("请用 --partner 指定伙伴站点", 2)
    operator, case_id = _operator(by), _case(case)
    ours = Site(config)
    [target] = ours.partners(partner)
    cases = [case_id] if case_id is not None else [e.case_id for e in _call(lambda: ours.letters.listed(target,
                                                                                                       _CHANNEL))]
    client = ours.client(target)
    replayed, waiting = 0, 0
    try:
        for one in cases:
            entry = _call(lambda: ours.letters.replay(
                target, _CHANNEL, one, lambda events: deliver_or_refuse(client, events), operator))  # noqa: B023
            if entry.status is ParkedStatus.REPLAYED:
                replayed += 1
            else:
                waiting += 1
                err.print(f"办件 {one}：伙伴未确认收妥全部事件，仍保持搁置", highlight=False)
    finally:
        client.close()
    out.print(f"已重放 {replayed} 件" + (f"，{waiting} 件仍搁置" if waiting else ""))
    if waiting:
        sys.exit(4)


@exchange.command()
@_config_option
@_partner_option
@click.option("--case", "case", default=None, help="放弃这一办件的搁置投递（用于 --config）")
@_nats_option
@_site_option
@_certs_option
@_credentials_option
@click.option("--seq", "stream_seq", type=click.IntRange(min=1), default=None, help="放弃这一条（用于 --nats）")
@click.option("--reason", default="", help="放弃的理由（必填，记录在案）")
@_by_option
def discard(config: str | None, partner: str | None, case: str | None, nats_url: str | None, site: str | None,
            certs_dir: Path | None, credentials: Path | None, stream_seq: int | None, reason: str, by: str) -> None:
    """放弃搁置的投递（不再投递），记录操作人与理由，记录保留备查。"""
    channel = _which(config, nats_url, site)
    if not reason.strip():
        fail("请用 --reason 写明放弃的理由（记录在案）", 2)
    operator = _operator(by)
    if channel == "nats":
        assert nats_url is not None and site is not None
        if stream_seq is None:
            fail("请用 --seq 指定要放弃的消息（序号见 parked）", 2)
        access = _access(nats_url, site, certs_dir, credentials)
        _call(lambda: discard_parked(access, site, stream_seq, reason.strip(), operator))
        out.print(f"已放弃消息 {stream_seq}（{operator}：{reason.strip()}）")
        return
    assert config is not None
    if partner is None or case is None:
        fail("请用 --partner 和 --case 指定要放弃的搁置投递", 2)
    case_id = _case(case)
    assert case_id is not None
    ours = Site(config)
    [target] = ours.partners(partner)
    entry = _call(lambda: ours.letters.discard(target, _CHANNEL, case_id, reason, operator))
    out.print(f"已放弃办件 {entry.case_id} 向 {target} 的投递（{entry.by}：{entry.why}）")
