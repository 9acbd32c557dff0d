"""docs/benchmarks.md's generated block: the last `make bench` run as a table of ratios to its raw baselines.

The throughput bench calls :func:`refresh` after writing bench-results/bench.json; ``python -m bench.report``
does the same from a bench.json already written. Only the text between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` is rewritten, so the prose around it (how to run, the write ceiling) stays as
written. A page without exactly one pair of markers, in that order, is refused, not patched: writing
the table somewhere else would be a guess.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
RESULTS = Path("bench-results") / "bench.json"
RAW_BATCHED_INSERT = "raw psycopg batched insert"
END_TO_END_FULL = "end to end: full load"


class ReportError(ValueError):
    """The page cannot take the generated block (markers missing, repeated or out of order)."""


def render(results: Mapping[str, Any]) -> str:
    """Markdown for one run of bench.json: when and where, each figure with its ratio to the raw baseline
    it was measured against in the same run, the write ceiling if the run counted rows, and the bars."""
    machine = results.get("machine") or {}
    lines = [
        f"Run of {results.get('at', '?')} on {machine.get('cpus', '?')} CPUs, Python {machine.get('python', '?')} "
        f"({machine.get('platform', '?')}); written by `make bench`, do not edit by hand.",
        "",
        "| measurement | what | events/s | p50 ms | p99 ms | RSS MB | ratio to raw baseline |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    figures: Sequence[Mapping[str, Any]] = results.get("figures") or []
    for f in figures:
        lines.append(f"| {f['name']} | {_cell(f.get('what', ''))} | {f.get('events_per_s', 0):.1f} "
                     f"| {f.get('p50_ms', 0):.2f} | {f.get('p99_ms', 0):.2f} | {f.get('rss_mb', 0):.1f} "
                     f"| {_ratio(f)} |")
    ceiling = _write_ceiling(figures)
    if ceiling:
        lines += ["", ceiling]
    bars: Mapping[str, Mapping[str, Any]] = results.get("bar") or {}
    if bars:
        lines += ["", "| bar | met | measured |", "|---|---|---|"]
        lines += [f"| {_cell(bar)} | {'yes' if v.get('met') else '**no**'} | {_cell(str(v.get('measured', '')))} |"
                  for bar, v in bars.items()]
    return "\n".join(lines)


def replace_block(page: str, block: str) -> str:
    """``page`` with what lies between the markers replaced by ``block``; everything else unchanged."""
    begins, ends = page.count(BEGIN), page.count(END)
    if begins != 1 or ends != 1:
        raise ReportError(f"expected one {BEGIN} and one {END}, found {begins} and {ends}")
    head, rest = page.split(BEGIN)
    if END not in rest:
        raise ReportError(f"{END} comes before {BEGIN}")
    _old, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def refresh(results: Path = RESULTS, page: Path = PAGE) -> Path:
    """Rewrite ``page``'s generated block from the bench.json at ``results``; the page is left alone on error."""
    text = page.read_text(encoding="utf-8")
    rendered = replace_block(text, render(json.loads(results.read_text(encoding="utf-8"))))
    page.write_text(rendered, encoding="utf-8")
    return page


def _ratio(figure: Mapping[str, Any]) -> str:
    if figure.get("ratio") is not None:
        return f"{figure['ratio']:.2f}x {figure.get('baseline', '')}"
    return "(raw baseline)" if str(figure.get("name", "")).startswith("raw ") else ""


def _write_ceiling(figures: Sequence[Mapping[str, Any]]) -> str:
    """The rows PostgreSQL stores per case end to end, and the cases/s the raw batched-insert rate allows."""
    by_name = {f.get("name"): f for f in figures}
    raw, full = by_name.get(RAW_BATCHED_INSERT), by_name.get(END_TO_END_FULL)
    rows: Mapping[str, Mapping[str, float]] = ((full or {}).get("extra") or {}).get("rows_per_case") or {}
    total = sum(sum(tables.values()) for tables in rows.values())
    if not raw or not total:
        return ""
    rate = float(raw.get("events_per_s", 0))
    return (f"Write ceiling: {total:g} PostgreSQL rows per case; at this run's raw batched-insert rate "
            f"({rate:.0f} rows/s) at most {rate / total:.0f} cases/s, even if the hubs' own work cost nothing.")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=RESULTS, help=f"bench.json (default {RESULTS})")
    parser.add_argument("page", nargs="?", type=Path, default=PAGE, help="the page holding the markers")
    args = parser.parse_args(argv)
    try:
        print(f"refreshed {refresh(args.results, args.page)}")
    except (OSError, ValueError) as error:
        print(f"{args.page} not refreshed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
