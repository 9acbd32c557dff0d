"""`tongban exchange`: what a site's NATS inbox parked, and sending it back once the cause is fixed.

These commands talk to the NATS server directly, not to a running site, so they work while the site
is down. Errors are one line on stderr: exit 2 bad input, 3 no such stream or parked message,
6 NATS unreachable, 1 anything else.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import TypeVar

import click
from rich.table import Table

from adapters.cli.console import fail, out
from adapters.exchange.nats_channel import (
    NatsChannelError,
    NatsUnavailable,
    NotParked,
    ParkedMessage,
    StreamMissing,
    list_parked,
    replay_parked,
)
from ops.logging import configure_logging

_T = TypeVar("_T")

_nats_option = click.option("--nats", "nats_url", required=True, envvar="TONGBAN_NATS_URL",
                            help="NATS 服务器地址，如 nats://127.0.0.1:4222")
_site_option = click.option("--site", required=True, help="站点行政区划代码（6 位）")


def _call(work: Callable[[], _T]) -> _T:
    try:
        return work()
    except ValueError as error:
        fail(str(error), 2)
    except NatsUnavailable as error:
        fail(f"无法连接 NATS（{error.where}）：{error.cause}", 6)
    except StreamMissing as error:
        fail(f"站点 {error.site} 的流不存在（该站点从未在此 NATS 上启动收件）", 3)
    except NotParked as error:
        fail(f"序号 {error.stream_seq} 不是站点 {error.site} 的搁置消息", 3)
    except NatsChannelError as error:
        fail(str(error), 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def exchange() -> None:
    """站点间交换（NATS JetStream）：查看与重放搁置的消息。"""
    configure_logging(level=logging.WARNING)  # connection retries are debug noise here; errors are our one line


@exchange.command()
@_nats_option
@_site_option
@click.option("--json", "as_json", is_flag=True, help="输出 JSON（供脚本使用）")
def parked(nats_url: str, site: str, as_json: bool) -> None:
    """列出本站收件时搁置（无法应用）的消息。"""
    messages = _call(lambda: list_parked(nats_url, site))
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
@_nats_option
@_site_option
@click.option("--seq", "stream_seq", type=click.IntRange(min=1), default=None,
              help="只重放这一条（序号见 parked）；不给则按顺序重放全部")
def replay(nats_url: str, site: str, stream_seq: int | None) -> None:
    """把搁置的消息重新投递给本站收件（原因排除后使用）。"""
    count = _call(lambda: replay_parked(nats_url, site, stream_seq))
    out.print(f"已重放 {count} 条消息")
