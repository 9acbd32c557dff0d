"""`tongban nats-config`: the nats-server configuration for exchanging sites, and each site's nkey seed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from adapters.nats.config import write_nats_config

__all__ = ["nats_config"]


@click.command("nats-config")
@click.option("--certs", "certs_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="证书目录（ca.pem、nats-server.pem/.key：`tongban certs --nats-server`）")
@click.option("--site", "sites", multiple=True, required=True, metavar="CODE", help="站点行政区划代码（6 位），可重复")
@click.option("--listen", default="127.0.0.1:4222", show_default=True, help="NATS 监听地址 host:port")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="配置文件路径")
@click.option("--seeds", "seeds_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="各站点 nkey 种子文件目录（默认与配置文件同目录）")
def nats_config(certs_dir: Path, sites: tuple[str, ...], listen: str, out: Path, seeds_dir: Path | None) -> None:
    """生成 NATS 服务器配置：站点 CA 的双向 TLS、每站点一个 nkey 用户及按主题的发布权限。

    Writes OUT and <seeds>/<CODE>.nk (mode 0600) for every --site; an existing seed is kept. Each site's
    [exchange] nats_credentials names its seed file.
    """
    try:
        users = write_nats_config(certs_dir, list(sites), out, listen, seeds_dir)
    except (ValueError, FileNotFoundError) as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(2)
    except OSError as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(1)
    click.echo(f"已生成 {out}")
    for user in users:
        click.echo(f"已生成 {user.seed_file}（站点 {user.site}，公钥 {user.public_key}）")
