"""A real Prometheus (Debian's `prometheus` package) on loopback, scraping our site processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from adapters.free_port import free_port


def require(binary: str) -> str:
    """The binary's path; missing: fail when TONGBAN_REQUIRE_PROMETHEUS=1 (CI), else skip with the package."""
    found = shutil.which(binary)
    if found:
        return found
    message = f"{binary} not found: install Debian's 'prometheus' package"
    if os.environ.get("TONGBAN_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + " (TONGBAN_REQUIRE_PROMETHEUS=1)")
    pytest.skip(message)


class Prometheus:
    def __init__(self, workdir: Path, targets: dict[str, int], interval: str = "1s") -> None:
        self.binary = require("prometheus")
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        jobs = "".join(
            f"      - targets: ['127.0.0.1:{port}']\n        labels: {{site: '{site}'}}\n"
            for site, port in targets.items()
        )
        (workdir / "prometheus.yml").write_text(
            f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            f"rule_files: ['{Path(__file__).parents[2] / 'ops' / 'alerts' / 'tongban.rules.yml'}']\n"
            f"scrape_configs:\n  - job_name: tongban\n    static_configs:\n{jobs}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "prometheus.log").read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("prometheus did not become ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
