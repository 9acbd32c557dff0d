"""The staff CLI against real `tongban serve` processes: staff accounts, login, exit codes, Chinese output,
--json, masking. Each window signs in at its own site: 平顶山's clerk at 410400, 苏州's handler at 320500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.launcher import SiteProcess, SiteSpec, link, make_certs
from tests.builders import ID_NUMBER
from tests.e2e.two_sites import PDS, SZ

PHONE = "13837512345"
PASSWORD = "cli-password-1"


def tongban(*args: str, target: str | None = None, token: Path | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "adapters.cli.main"] + (["--target", target] if target else [])
    env = {**os.environ, "COLUMNS": "200", "TONGBAN_TOKEN_FILE": str(token or "/nonexistent/token.json")}
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=60, env=env, check=False,
                          input=stdin)


@dataclass
class Window:
    """A terminal signed in (its own token file) at one site."""

    target: str
    token: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return tongban(*args, target=self.target, token=self.token)


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Window, Window]]:
    """平顶山 and 苏州 as linked processes; staff added with `tongban staff add` and signed in with
    `tongban login` at their own site."""
    root = tmp_path_factory.mktemp("sites")
    certs = make_certs(root / "certs", PDS, SZ)
    a, b = (SiteSpec(site, name, root / site / "data", certs) for site, name in ((PDS, "平顶山市"), (SZ, "苏州市")))
    link(a, b)
    processes = [SiteProcess(a, root / "a"), SiteProcess(b, root / "b")]
    try:
        out = []
        for process, (staff_id, name, role) in zip(processes, (("PDS-0107", "李敏", "window_clerk"),
                                                               ("SZ-2231", "周婷", "handler")), strict=True):
            process.write_config()
            added = tongban("staff", "add", "--config", str(process.config_path), staff_id, "--name", name,
                            "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
            assert added.returncode == 0, added.stderr
            process.start()
            token = root / f"{staff_id}.token.json"
            logged = tongban("login", "--staff-id", staff_id, "--password-stdin", target=process.staff_address,
                             token=token, stdin=PASSWORD + "\n")
            assert logged.returncode == 0 and "已登录" in logged.stdout, logged.stderr
            assert token.stat().st_mode & 0o777 == 0o600 and PASSWORD not in token.read_text()
            out.append(Window(process.staff_address, token))
        yield out[0], out[1]
    finally:
        for process in processes:
            process.stop()


def receive(clerk: Window, *extra: str) -> subprocess.CompletedProcess[str]:
    return clerk("case", "--json", "receive", "--item", "KSTB-006", "--handling-site", "320500",
                 "--name", "王建国", "--id-number", ID_NUMBER, "--phone", PHONE, "--material", "居民身份证",
                 "--consent", "--identity-verified", *extra)


def wait_for(window: Window, case_id: str, state_label: str) -> None:
    deadline = time.monotonic() + 20
    while state_label not in window("case", "show", case_id).stdout:
        assert time.monotonic() < deadline, f"{window.target} never showed {state_label}"
        time.sleep(0.1)


def test_lifecycle_steps_from_the_cli(windows: tuple[Window, Window]) -> None:
    clerk, handler = windows
    received = receive(clerk)
    assert received.returncode == 0, received.stderr
    case = json.loads(received.stdout)["case"]
    assert case["state_label"] == "已收件" and ID_NUMBER not in received.stdout and PHONE not in received.stdout
    case_id = case["case_id"]
    steps = [
        (clerk, ["forward"], "已流转"), (handler, ["sign"], ""),
        (handler, ["request-supplement", "--missing", "参保缴费凭证"], "待补正"),
        (clerk, ["submit-supplement", "--material", "参保缴费凭证"], "待受理"),
        (handler, ["accept", "--days", "10"], ""),
    ]
    for window, step, then in steps:
        done = window("case", step[0], case_id, *step[1:])
        assert done.returncode == 0, done.stderr
        if then:
            wait_for(handler if window is clerk else clerk, case_id, then)
    wait_for(clerk, case_id, "审查中")
    shown = clerk("case", "show", case_id)
    assert shown.returncode == 0
    for text in ("审查中", "承诺办结", "一次性告知补正", "办理记录", "受理", "410***********2416", "周婷", "李敏"):
        assert text in shown.stdout, text
    assert ID_NUMBER not in shown.stdout and PHONE not in shown.stdout
    listed = clerk("case", "--json", "list", "--state", "in_review")
    assert case_id in listed.stdout
    me = handler("whoami")
    assert me.returncode == 0 and me.stdout.split("\t")[:4] == ["SZ-2231", "周婷", "handler", SZ]


def test_errors_are_one_clear_line_with_distinct_exit_codes(windows: tuple[Window, Window], tmp_path: Path) -> None:
    clerk, handler = windows
    bad = clerk("case", "receive", "--item", "KSTB-006", "--handling-site", "999999", "--name", "王",
                "--id-number", "410402199003072417", "--consent", "--identity-verified")
    assert bad.returncode == 2
    assert "handling_site" in bad.stderr and "applicant.id_number" in bad.stderr and "Traceback" not in bad.stderr
    case_id = json.loads(receive(clerk).stdout)["case"]["case_id"]
    illegal = clerk("case", "deliver", case_id, "--received-by", "王建国")  # the clerk's step, not yet
    assert illegal.returncode == 4 and "已收件" in illegal.stderr and "ILLEGAL_STEP" in illegal.stderr
    outside_role = clerk("case", "decide", case_id, "--outcome", "approved")  # the handler's step
    assert outside_role.returncode == 8 and "WRONG_ROLE" in outside_role.stderr
    missing = clerk("case", "forward", "01a22500-0000-7000-8000-000000000000")
    assert missing.returncode == 3
    stale = clerk("case", "forward", case_id, "--expected-version", "7")
    assert stale.returncode == 5 and "刷新后重试" in stale.stderr
    down = tongban("case", "show", case_id, target="127.0.0.1:1", token=clerk.token)
    assert down.returncode == 6 and "无法连接" in down.stderr and "Traceback" not in down.stderr
    nobody = tongban("case", "show", case_id, target=clerk.target, token=tmp_path / "none.json")
    assert nobody.returncode == 7 and "tongban login" in nobody.stderr and len(nobody.stderr.splitlines()) == 1
    elsewhere = tongban("case", "show", case_id, target=clerk.target, token=handler.token)  # 苏州's token at 平顶山
    assert elsewhere.returncode == 7 and "TOKEN_INVALID" in elsewhere.stderr
    wrong = tongban("login", "--staff-id", "PDS-0107", "--password-stdin", target=clerk.target,
                    token=tmp_path / "w.json", stdin="not-the-password\n")
    assert wrong.returncode == 7 and "LOGIN_FAILED" in wrong.stderr and "not-the-password" not in wrong.stderr


def test_serve_with_a_bad_config_fails_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[site]\ncode = "4104"\n')
    result = tongban("serve", "--config", str(config))
    assert result.returncode == 2 and "6-digit" in result.stderr and "Traceback" not in result.stderr
    missing = tongban("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "no such configuration file" in missing.stderr


def test_a_production_site_with_unsafe_settings_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text('[site]\ncode = "410400"\nenvironment = "production"\n[store]\ndata_dir = "data"\n'
                      '[server]\nlisten = "127.0.0.1:0"\n')
    env = {k: v for k, v in os.environ.items() if k != "TONGBAN_PII_KEY"}
    result = subprocess.run([sys.executable, "-m", "adapters.cli.main", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    output = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(output) == 1 and "start_failed" in output[0], output
    for problem in ("PII key", "plaintext", "embedded"):
        assert problem in output[0]
    assert not (tmp_path / "data").exists()  # refused before anything was built
