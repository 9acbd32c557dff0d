"""`make demo` keeps working: it starts a site, drives a real case end to end, stops, exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run([sys.executable, "-m", "adapters.demo"], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = (
        "【收件】", "【一次性告知补正】", "【拒绝】", "ILLEGAL_STEP", "【评价】", "已归档", "办理记录", "站点已停止",
    )
    for text in expected:
        assert text in result.stdout, text
    assert "410402199003072416" not in result.stdout and "13837512345" not in result.stdout
