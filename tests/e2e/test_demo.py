"""`make demo` keeps working: two sites and a nats-server start, a case crosses both ways, all stop, exit 0."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    result = subprocess.run([sys.executable, "-m", "adapters.demo"], capture_output=True, text=True, timeout=180,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    expected = (
        "【收件】", "【一次性告知补正】", "已同步：待补正", "ILLEGAL_STEP", "【评价】", "【整改反馈】",
        "两地记录对照", "回执", "grpc", "nats", "全部一致", "已停止：站点退出码 [0, 0]",
    )
    for text in expected:
        assert text in result.stdout, text
    assert "✗" not in result.stdout
    assert "410402199003072416" not in result.stdout and "13837512345" not in result.stdout
