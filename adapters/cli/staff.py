"""`tongban staff add | disable | enable | passwd | list --config site.toml`: the site's staff directory.

Opens the directory beside the site's stores directly (like `tongban reconcile --config`), whether or
not the site is running. Passwords are read from a prompt, or from stdin with ``--password-stdin``,
never from the command line. Every change is recorded with who made it (``--by``, default $USER).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from adapters.auth.directory import STAFF_ROLES, DirectoryError, SqlStaffDirectory
from adapters.auth.passwords import hash_password
from adapters.cli.console import out
from adapters.settings import ConfigError, load_settings
from hub.domain.values import Role

__all__ = ["read_password", "staff"]

CONFIG = click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                      help="站点配置文件 (TOML)")
BY = click.option("--by", default=lambda: os.environ.get("USER", "operator"), show_default="$USER",
                  help="操作人（记入账号变更记录）")


def read_password(from_stdin: bool, confirm: bool = False) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("密码: ")
    if confirm and getpass.getpass("再次输入密码: ") != first:
        click.echo("错误：两次输入的密码不一致", err=True)
        sys.exit(2)
    return first


@contextmanager
def _directory(config_path: str) -> Iterator[SqlStaffDirectory]:
    from adapters.bootstrap import build_directory

    try:
        settings = load_settings(Path(config_path))
    except ConfigError as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(2)
    if settings.auth.mode != "embedded":
        click.echo("错误：本站点使用统一身份认证（[auth] mode = \"oidc\"），员工账号由省统一身份平台管理", err=True)
        sys.exit(2)
    directory = build_directory(settings)
    try:
        yield directory
    except DirectoryError as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(2)
    finally:
        directory.close()


def _hash(password: str) -> str:
    try:
        return hash_password(password)
    except ValueError as error:
        click.echo(f"错误：{error}", err=True)
        sys.exit(2)


@click.group("staff")
def staff() -> None:
    """本站点员工账号（内置账号目录）。"""


@staff.command("add")
@CONFIG
@click.argument("staff_id")
@click.option("--name", required=True, help="姓名")
@click.option("--role", required=True, type=click.Choice(sorted(r.value for r in STAFF_ROLES)), help="角色")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取密码（一行）")
@BY
def add(config_path: str, staff_id: str, name: str, role: str, password_stdin: bool, by: str) -> None:
    """添加员工账号。"""
    password_hash = _hash(read_password(password_stdin, confirm=True))
    with _directory(config_path) as directory:
        account = directory.add(staff_id, name, Role(role), password_hash, by=by)
    click.echo(f"已添加 {account.staff_id}（{account.name}，{account.role.label}，站点 {account.site}）")


@staff.command("disable")
@CONFIG
@click.argument("staff_id")
@BY
def disable(config_path: str, staff_id: str, by: str) -> None:
    """停用账号：不能再登录，已签发的令牌随即失效。"""
    with _directory(config_path) as directory:
        directory.set_active(staff_id, False, by=by)
    click.echo(f"已停用 {staff_id}")


@staff.command("enable")
@CONFIG
@click.argument("staff_id")
@BY
def enable(config_path: str, staff_id: str, by: str) -> None:
    """重新启用账号。"""
    with _directory(config_path) as directory:
        directory.set_active(staff_id, True, by=by)
    click.echo(f"已启用 {staff_id}")


@staff.command("passwd")
@CONFIG
@click.argument("staff_id")
@click.option("--password-stdin", is_flag=True, help="从标准输入读取新密码（一行）")
@BY
def passwd(config_path: str, staff_id: str, password_stdin: bool, by: str) -> None:
    """重设密码。"""
    password_hash = _hash(read_password(password_stdin, confirm=True))
    with _directory(config_path) as directory:
        directory.set_password(staff_id, password_hash, by=by)
    click.echo(f"已重设 {staff_id} 的密码")


@staff.command("list")
@CONFIG
def list_staff(config_path: str) -> None:
    """列出账号。"""
    with _directory(config_path) as directory:
        accounts = directory.accounts()
    for a in accounts:
        out.print(f"{a.staff_id}\t{a.name}\t{a.role.value}\t{a.site}\t{'启用' if a.active else '停用'}",
                  highlight=False)
