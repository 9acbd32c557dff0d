"""Start and stop real `tongban serve` processes on loopback: for the demo and the multi-site tests.

Every process is started by us, binds 127.0.0.1 only, and is stopped by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.auth.client import login
from adapters.free_port import free_port
from adapters.tls import create_ca, issue_nats_server_cert, issue_site_cert
from hub.domain.values import Role


@dataclass
class SiteSpec:
    """What a site process needs: its code, ports, partners and where its data lives."""

    site: str
    name: str
    data_dir: Path
    certs_dir: Path
    partner_port: int = field(default_factory=free_port)
    partners: list[tuple[str, str, str]] = field(default_factory=list)  # (site, channel, address)
    nats_url: str = ""
    nats_credentials: Path | None = None  # the site's nkey seed on a secured NATS server
    postgres: dict[str, str | int] | None = None
    metrics_port: int = field(default_factory=free_port)
    audit_port: int = field(default_factory=free_port)
    health_interval: float = 0.5
    reconcile: dict[str, float] = field(default_factory=dict)  # [reconcile] settings, e.g. {"interval": 0}
    store_options: dict[str, int | float] = field(default_factory=dict)  # e.g. group_commit_max
    staff_workers: int = 16
    log_format: str = "json"
    log_level: str = "info"

    def config(self) -> str:
        lines = [
            f'[site]\ncode = "{self.site}"\nname = "{self.name}"\n',
            f'[store]\nkind = "{"postgres" if self.postgres else "sqlite"}"\ndata_dir = "{self.data_dir}"\n'
            + "".join(f"{k} = {v!r}\n" for k, v in self.store_options.items()),
        ]
        if self.postgres:
            lines.append("[store.postgres]\n" + "".join(
                f"{k} = {v!r}\n" if isinstance(v, int) else f'{k} = "{v}"\n' for k, v in self.postgres.items()
            ))
        lines.append(f'[server]\nlisten = "127.0.0.1:0"\nworkers = {self.staff_workers}\n')
        exchange = f'[exchange]\nlisten = "127.0.0.1:{self.partner_port}"\ncerts_dir = "{self.certs_dir}"\n'
        if self.nats_url:
            exchange += f'nats_url = "{self.nats_url}"\n'
        if self.nats_credentials:
            exchange += f'nats_credentials = "{self.nats_credentials}"\n'
        lines.append(exchange)
        for site, channel, address in self.partners:
            lines.append(f'[[partners]]\nsite = "{site}"\nchannel = "{channel}"\naddress = "{address}"\n')
        lines.append(f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n')
        lines.append(f'[audit]\nlisten = "127.0.0.1:{self.audit_port}"\ncheckpoint_interval = 1.0\n')
        lines.append(f"[health]\ninterval = {self.health_interval}\n")
        if self.reconcile:
            lines.append("[reconcile]\n" + "".join(f"{k} = {v!r}\n" for k, v in self.reconcile.items()))
        lines.append(f'[logging]\nformat = "{self.log_format}"\nlevel = "{self.log_level}"\n')
        return "\n".join(lines)


def make_certs(directory: Path, *sites: str) -> Path:
    """A private CA in ``directory``, a certificate for each site and one for the NATS server: what loopback
    sites trust each other by."""
    create_ca(directory)
    for site in sites:
        issue_site_cert(directory, site)
    issue_nats_server_cert(directory)
    return directory


def link(a: SiteSpec, b: SiteSpec, a_to_b: str = "grpc", b_to_a: str = "grpc") -> None:
    """Make a and b partners, each sending on the named channel."""
    a.partners.append((b.site, a_to_b, f"127.0.0.1:{b.partner_port}"))
    b.partners.append((a.site, b_to_a, f"127.0.0.1:{a.partner_port}"))


class SiteProcess:
    def __init__(self, spec: SiteSpec, workdir: Path) -> None:
        self.spec = spec
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{spec.site}.toml"
        self.port_file = workdir / f"{spec.site}.port"
        self.log_path = workdir / f"{spec.site}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.staff_port = 0

    @property
    def staff_address(self) -> str:
        return f"127.0.0.1:{self.staff_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def write_config(self) -> None:
        self.config_path.write_text(self.spec.config(), encoding="utf-8")

    def add_staff(self, staff_id: str, name: str, role: Role, password: str) -> None:
        """An account in this site's staff directory (what `tongban staff add` does), unless it exists."""
        from adapters.auth.passwords import hash_password
        from adapters.bootstrap import build_directory
        from adapters.settings import load_settings

        self.write_config()
        directory = build_directory(load_settings(self.config_path))
        try:
            if directory.get(staff_id) is None:
                directory.add(staff_id, name, role, hash_password(password), by="launcher")
        finally:
            directory.close()

    def sign_in(self, staff_id: str, password: str) -> str:
        """A token for ``staff_id`` from this site's Login."""
        with grpc.insecure_channel(self.staff_address) as channel:
            return login(channel, staff_id, password).token

    def start(self, timeout: float = 30.0) -> None:
        self.write_config()
        self.port_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli.main", "serve", "--config", str(self.config_path),
                 "--port-file", str(self.port_file)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            self._wait_serving(self.process, timeout)
        except BaseException:
            self.kill()  # a site that did not come up is not left running behind the error
            raise

    def _wait_serving(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"site {self.spec.site} did not start:\n{self.log_tail()}")
            time.sleep(0.02)
        self.staff_port = int(self.port_file.read_text())
        with grpc.insecure_channel(self.staff_address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True
            )
        if status.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"site {self.spec.site} is not serving")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
