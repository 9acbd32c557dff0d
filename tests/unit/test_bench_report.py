"""docs/benchmarks.md's generated block: rendered from bench.json, written only between its markers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import BEGIN, END, PAGE, ReportError, main, refresh, render, replace_block


def _figure(name: str, events: int, seconds: float, baseline: str = "", ratio: float | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"name": name, "what": f"{name} | sizes", "events": events, "seconds": seconds, "p50_ms": 1.5,
            "p99_ms": 9.25, "rss_mb": 80.0, "baseline": baseline, "ratio": ratio, "extra": extra,
            "events_per_s": round(events / seconds, 1)}


RESULTS: dict[str, Any] = {
    "at": "2026-05-04T10:00:00+00:00",
    "machine": {"cpus": 2, "python": "3.11.9", "platform": "Linux-x86_64"},
    "settings": {"batch": 500},
    "figures": [
        _figure("raw psycopg batched insert", 50_000, 2.0),
        _figure("raw JetStream publish_async", 50_000, 1.0),
        _figure("hub store: batched ingest", 20_000, 1.5, "raw psycopg batched insert", 0.533),
        _figure("raw grpc.aio unary", 100_000, 10.0),
        _figure("end to end: full load", 30_000, 60.0, "raw grpc.aio unary", 0.05,
                rows_per_case={"A": {"events": 6, "links": 5}, "B": {"events": 2, "links": 1}}),
    ],
    "bar": {
        "store path >= 50% of raw batched insert": {"met": True, "measured": "0.53 of raw"},
        "end to end >= 5000 events/s sustained": {"met": False, "measured": "500/s over 60 s"},
    },
}


def test_each_figure_is_a_row_with_its_ratio_to_the_raw_baseline_of_the_same_run() -> None:
    text = render(RESULTS)
    assert "Run of 2026-05-04T10:00:00+00:00 on 2 CPUs, Python 3.11.9" in text
    rows = [line for line in text.splitlines() if line.startswith("| hub store") or line.startswith("| raw psycopg")]
    assert rows == [
        "| raw psycopg batched insert | raw psycopg batched insert \\| sizes | 25000.0 | 1.50 | 9.25 | 80.0 "
        "| (raw baseline) |",
        "| hub store: batched ingest | hub store: batched ingest \\| sizes | 13333.3 | 1.50 | 9.25 | 80.0 "
        "| 0.53x raw psycopg batched insert |",
    ]
    assert "| end to end: full load |" in text and "| 0.05x raw grpc.aio unary |" in text


def test_the_write_ceiling_and_the_bars_come_with_the_table() -> None:
    text = render(RESULTS)
    assert ("Write ceiling: 14 PostgreSQL rows per case; at this run's raw batched-insert rate (25000 rows/s) "
            "at most 1786 cases/s") in text
    assert "| store path >= 50% of raw batched insert | yes | 0.53 of raw |" in text
    assert "| end to end >= 5000 events/s sustained | **no** | 500/s over 60 s |" in text


def test_a_run_that_counted_no_rows_has_no_ceiling_line() -> None:
    figures = [f for f in RESULTS["figures"] if f["name"] != "end to end: full load"]
    assert "Write ceiling" not in render({**RESULTS, "figures": figures})


def test_only_the_text_between_the_markers_is_replaced() -> None:
    page = f"# Benchmarks\n\nhow to run\n\n{BEGIN}\nold table\n{END}\n\n## The write ceiling\n\nprose\n"
    new = replace_block(page, "new table")
    assert new == f"# Benchmarks\n\nhow to run\n\n{BEGIN}\nnew table\n{END}\n\n## The write ceiling\n\nprose\n"
    assert replace_block(new, "new table") == new


@pytest.mark.parametrize("page", [
    "# Benchmarks\n\nno markers at all\n",
    f"{BEGIN}\nonly the beginning\n",
    f"only the end\n{END}\n",
    f"{END}\nbackwards\n{BEGIN}\n",
    f"{BEGIN}\none\n{END}\n{BEGIN}\ntwo\n{END}\n",
], ids=["none", "no-end", "no-begin", "reversed", "twice"])
def test_a_page_without_one_pair_of_markers_in_order_is_refused(page: str) -> None:
    with pytest.raises(ReportError):
        replace_block(page, "table")


def test_refresh_rewrites_the_page_from_bench_json(tmp_path: Path) -> None:
    results, page = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    results.write_text(json.dumps(RESULTS), encoding="utf-8")
    page.write_text(f"intro\n{BEGIN}\n{END}\noutro\n", encoding="utf-8")
    assert refresh(results, page) == page
    assert page.read_text(encoding="utf-8") == f"intro\n{BEGIN}\n{render(RESULTS)}\n{END}\noutro\n"


def test_without_markers_the_command_complains_and_leaves_the_page_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results, page = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    results.write_text(json.dumps(RESULTS), encoding="utf-8")
    page.write_text("a page someone rewrote\n", encoding="utf-8")
    assert main([str(results), str(page)]) == 1
    assert page.read_text(encoding="utf-8") == "a page someone rewrote\n"
    assert "not refreshed" in capsys.readouterr().err


def test_the_committed_page_has_its_markers() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.index(BEGIN) < text.index(END)
