"""`tongban certs`: a demo CA and one mutual-TLS certificate per site, for sites that talk to each other."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from adapters.tls import (
    NATS_SERVER,
    TlsError,
    create_ca,
    issue_auditor_cert,
    issue_nats_server_cert,
    issue_service_cert,
    issue_site_cert,
)

__all__ = ["certs"]


@click.command("certs")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="证书目录（不存在则创建）"
)
@click.option("--site", "sites", multiple=True, metavar="CODE", help="站点行政区划代码（6 位），可重复")
@click.option("--auditor", "auditors", multiple=True, metavar="NAME", help="审计人员证书（只读审计端口），可重复")
@click.option("--nats-server", "nats_server", is_flag=True, help="NATS 服务器证书（nats-server.pem/.key）")
@click.option("--service", "services", multiple=True, metavar="SITE:NAME",
              help="服务账号客户端证书（某站点员工端口的系统调用方，如 410400:window-system），可重复")
def certs(out_dir: Path, sites: tuple[str, ...], auditors: tuple[str, ...], nats_server: bool,
          services: tuple[str, ...]) -> None:
    """生成演示 CA（已有则沿用）和各站点的双向 TLS 证书。

    Creates ca.pem/ca.key if missing, then <CODE>.pem/<CODE>.key for every --site (re-issued if present).
    """
    if not sites and not auditors and not nats_server and not services:
        click.echo("错误：至少指定一个 --site、--auditor、--service 或 --nats-server", err=True)
        sys.exit(2)
    if any(":" not in s for s in services):
        click.echo("错误：--service 须为 SITE:NAME，如 410400:window-system", err=True)
        sys.exit(2)
    bad = [site for site in sites if not (len(site) == 6 and site.isascii() and site.isdigit())]
    if bad:
        click.echo(f"错误：站点代码须为 6 位数字（site code must be 6 digits）：{', '.join(bad)}", err=True)
        sys.exit(2)
    try:
        had_ca = (out_dir / "ca.pem").exists()
        create_ca(out_dir)
        if not had_ca:
            click.echo(f"已生成 {out_dir / 'ca.pem'}")
            click.echo(f"已生成 {out_dir / 'ca.key'}")
        for site in dict.fromkeys(sites):
            issue_site_cert(out_dir, site)
            click.echo(f"已生成 {out_dir / f'{site}.pem'}")
            click.echo(f"已生成 {out_dir / f'{site}.key'}")
        for name in dict.fromkeys(auditors):
            issue_auditor_cert(out_dir, name)
            click.echo(f"已生成 {out_dir / f'auditor-{name}.pem'}")
            click.echo(f"已生成 {out_dir / f'auditor-{name}.key'}")
        if nats_server:
            issue_nats_server_cert(out_dir)
            click.echo(f"已生成 {out_dir / f'{NATS_SERVER}.pem'}")
            click.echo(f"已生成 {out_dir / f'{NATS_SERVER}.key'}")
        for service in dict.fromkeys(services):
            site, name = service.split(":", 1)
            issue_service_cert(out_dir, site, name)
            click.echo(f"已生成 {out_dir / f'service-{site}-{name}.pem'}")
            click.echo(f"已生成 {out_dir / f'service-{site}-{name}.key'}")
    except (TlsError, OSError, ValueError) as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(1)
