"""The staff CLI against a real `tongban serve` process: exit codes, Chinese output, --json, masking."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import ID_NUMBER

PHONE = "13837512345"
CLERK = ["--staff", "PDS-0107", "--role", "window_clerk", "--site", "410400"]
HANDLER = ["--staff", "SZ-2231", "--role", "handler", "--site", "320500"]


def tongban(*args: str, target: str | None = None) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "adapters.cli.main"] + (["--target", target] if target else [])
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("site")
    config = workdir / "site.toml"
    config.write_text('[site]\ncode = "410400"\n[store]\ndata_dir = "data"\n[server]\nlisten = "127.0.0.1:0"\n')
    port_file, log_path = workdir / "port", workdir / "site.log"
    with log_path.open("wb") as log:  # a file, not a pipe nobody reads: a full pipe would block the site
        process = subprocess.Popen(
            [sys.executable, "-m", "adapters.cli.main", "serve", "--config", str(config), "--port-file",
             str(port_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None, log_path.read_text(encoding="utf-8", errors="replace")
            assert time.monotonic() < deadline, "site did not start"
            time.sleep(0.05)
        yield f"127.0.0.1:{port_file.read_text()}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def receive(target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return tongban("case", *CLERK, "--json", "receive", "--item", "KSTB-006", "--handling-site", "320500",
                   "--name", "王建国", "--id-number", ID_NUMBER, "--phone", PHONE, "--material", "居民身份证",
                   "--consent", "--identity-verified", *extra, target=target)


def test_lifecycle_steps_from_the_cli(target: str) -> None:
    received = receive(target)
    assert received.returncode == 0, received.stderr
    case = json.loads(received.stdout)["case"]
    assert case["state_label"] == "已收件" and ID_NUMBER not in received.stdout and PHONE not in received.stdout
    case_id = case["case_id"]
    steps = [
        (CLERK, ["forward"]), (HANDLER, ["sign"]), (HANDLER, ["request-supplement", "--missing", "参保缴费凭证"]),
        (CLERK, ["submit-supplement", "--material", "参保缴费凭证"]), (HANDLER, ["accept", "--days", "10"]),
    ]
    for who, step in steps:
        done = tongban("case", *who, step[0], case_id, *step[1:], target=target)
        assert done.returncode == 0, done.stderr
    shown = tongban("case", "show", case_id, target=target)
    assert shown.returncode == 0
    for text in ("审查中", "承诺办结", "一次性告知补正", "办理记录", "受理", "410***********2416"):
        assert text in shown.stdout, text
    assert ID_NUMBER not in shown.stdout and PHONE not in shown.stdout
    listed = tongban("case", "--json", "list", "--state", "in_review", target=target)
    assert case_id in listed.stdout


def test_errors_are_one_clear_line_with_distinct_exit_codes(target: str) -> None:
    bad = tongban("case", *CLERK, "receive", "--item", "KSTB-006", "--handling-site", "999999", "--name", "王",
                  "--id-number", "410402199003072417", "--consent", "--identity-verified", target=target)
    assert bad.returncode == 2
    assert "handling_site" in bad.stderr and "applicant.id_number" in bad.stderr and "Traceback" not in bad.stderr
    case_id = json.loads(receive(target).stdout)["case"]["case_id"]
    illegal = tongban("case", *HANDLER, "decide", case_id, "--outcome", "approved", target=target)
    assert illegal.returncode == 4 and "已收件" in illegal.stderr and "ILLEGAL_STEP" in illegal.stderr
    missing = tongban("case", *CLERK, "forward", "01a22500-0000-7000-8000-000000000000", target=target)
    assert missing.returncode == 3
    stale = tongban("case", *CLERK, "forward", case_id, "--expected-version", "7", target=target)
    assert stale.returncode == 5 and "刷新后重试" in stale.stderr
    down = tongban("case", "show", case_id, target="127.0.0.1:1")
    assert down.returncode == 6 and "无法连接" in down.stderr and "Traceback" not in down.stderr


def test_serve_with_a_bad_config_fails_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[site]\ncode = "4104"\n')
    result = tongban("serve", "--config", str(config))
    assert result.returncode == 2 and "6-digit" in result.stderr and "Traceback" not in result.stderr
    missing = tongban("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such configuration file" in missing.stderr
