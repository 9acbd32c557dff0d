"""Alert rules, their unit tests, the dashboard and the metrics exposition, checked by the real promtool.

The rules and the dashboard name metrics by string; nothing but these tests ties them to ops/metrics.py, so a
renamed metric would otherwise leave an alert that never fires and a panel that shows "No data".

promtool comes from Debian's `prometheus` package. Without it these tests skip, except when
TONGBAN_REQUIRE_PROMETHEUS=1 (set by .ci/run), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from ops.metrics import CaseCounts, SiteMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "alerts" / "tongban.rules.yml"
RULE_TESTS = ROOT / "ops" / "alerts" / "tongban.rules.test.yml"
DASHBOARD = ROOT / "ops" / "dashboards" / "tongban.json"
QUERIES = ROOT / "ops" / "dashboards" / "queries.yml"

METRIC_NAME = re.compile(r"\btongban_[a-z_]+")
# Grafana variables the dashboard uses, and what stands in for them when promtool parses an expression.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$partner": ".*", "$site": ".*"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",)}
COLLECTOR_FAMILIES = {"tongban_cases", "tongban_cases_due", "tongban_bad_reviews_awaiting_rectification",
                      "tongban_rectification_on_time_ratio"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("TONGBAN_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("promtool not found (TONGBAN_REQUIRE_PROMETHEUS=1: install Debian's 'prometheus' package)")
        pytest.skip("promtool not found: install Debian's 'prometheus' package")
    return found


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def site_metrics() -> SiteMetrics:
    """A site's registry with the business collector and one sample in each kind of metric."""
    metrics = SiteMetrics("410400")
    metrics.watch_cases(lambda: CaseCounts(
        by_state_and_partner={("received", "320500"): 2, ("accepted", "320500"): 1},
        warning=1, breached=0, bad_reviews_awaiting=1, rectified_on_time=3, rectified_total=4))
    metrics.events_relayed.labels("320500", "grpc").inc(3)
    metrics.relay_lag_events.labels("320500", "nats").set(7)
    metrics.delivery_seconds.labels("320500", "grpc").observe(0.02)
    metrics.reconcile_runs.labels("320500", "ok").inc()
    metrics.rpc_handled.labels("/tongban.v1.CaseService/ReceiveCase", "OK").inc()
    metrics.rpc_seconds.labels("/tongban.v1.CaseService/ReceiveCase").observe(0.004)
    metrics.batch_size.observe(3)
    metrics.parked_deliveries("320500", "grpc", 1)
    metrics.supplement_requests.inc()
    return metrics


def exposed_names() -> dict[str, str]:
    """Every series name the registry can expose, mapped to its family's name."""
    names: dict[str, str] = {}
    for family in site_metrics().registry.collect():
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


@dataclass(frozen=True)
class Query:
    name: str
    panel: str
    expr: str


def read_queries() -> tuple[dict[str, str], list[Query]]:
    """Read queries.yml, which is kept flat (see its header) so no YAML library is needed here."""
    variables: dict[str, str] = {}
    queries: list[Query] = []
    section = ""
    entry: dict[str, str] = {}
    for line in QUERIES.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.rstrip(":")
            continue
        match = re.fullmatch(r"\s*(?:- )?(\w+): '((?:[^']|'')*)'|\s*- (name): (\w+)", line)
        assert match, f"queries.yml: line not in the flat shape: {line!r}"
        key = match.group(1) or match.group(3)
        value = (match.group(2) if match.group(1) else match.group(4)).replace("''", "'")
        if section == "variables":
            variables[key] = value
        elif key == "name":
            entry = {"name": value}
        else:
            entry[key] = value
            if key == "expr":
                queries.append(Query(entry["name"], entry["panel"], entry["expr"]))
    return variables, queries


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> dict[str, str]:
    """Every PromQL expression on the dashboard, by where it is, with variable queries' selectors."""
    exprs = {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels(board) for t in p.get("targets", [])}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), *\w+\)", variable["definition"])
            assert match, f"variable {variable['name']}: expected label_values(selector, label)"
            exprs[f"variable {variable['name']}"] = match.group(1)
    return exprs


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${name.lstrip('$')}", variables[name])
    return expr


def test_rules_pass_promtool_check(promtool: str) -> None:
    output = run(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in output, output


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    run(promtool, "test", "rules", str(RULE_TESTS))


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(encoding="utf-8"), re.MULTILINE))
    tests = RULE_TESTS.read_text(encoding="utf-8")
    assert len(alerts) >= 8
    for alert in sorted(alerts):
        blocks = re.findall(rf"alertname: {alert}\n\s+exp_alerts:(.*)", tests)
        assert any(b.strip() == "[]" for b in blocks), f"{alert}: no test where it stays quiet"
        assert any(b.strip() == "" for b in blocks), f"{alert}: no test where it fires"


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    text = RULES.read_text(encoding="utf-8")
    for block in re.split(r"\n\s*- alert: ", text)[1:]:
        name = block.split("\n", 1)[0]
        for key in ("severity:", "summary:", "description:", "runbook:"):
            assert re.search(rf"^\s+{key}", block, re.MULTILINE), f"{name}: no {key}"


@pytest.mark.parametrize("path", [RULES, RULE_TESTS, DASHBOARD, QUERIES], ids=lambda p: p.name)
def test_every_metric_used_is_defined_in_ops_metrics(path: Path) -> None:
    exposed = exposed_names()
    assert set(exposed.values()) >= COLLECTOR_FAMILIES
    used = set(METRIC_NAME.findall(path.read_text(encoding="utf-8")))
    assert used, f"{path.name}: no metric found"
    unknown = sorted(name for name in used if name not in exposed)
    assert not unknown, f"{path.name} uses series ops/metrics.py does not expose: {unknown}"


def test_every_metric_has_a_panel() -> None:
    exposed = exposed_names()
    used = {exposed.get(name) for e in dashboard_exprs(dashboard()).values() for name in METRIC_NAME.findall(e)}
    missing = sorted(set(exposed.values()) - used)
    assert not missing, f"metrics without a panel on the dashboard: {missing}"


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    assert all(isinstance(i, int) for i in ids)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert {"site", "partner"} <= variables.keys()
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
            assert panel["targets"], panel["title"]


def test_dashboard_exprs_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    exprs = dashboard_exprs(dashboard())
    rules = [{"record": f"dashboard:expr_{i}", "expr": substitute(e, GRAFANA_VARIABLES)}
             for i, e in enumerate(exprs.values())]
    leftover = [r["expr"] for r in rules if "$" in r["expr"]]
    assert not leftover, f"unknown Grafana variables in {leftover}"
    # JSON is YAML, so promtool reads this without a YAML library on our side.
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120,
                          check=False)
    where = "\n".join(f"  dashboard:expr_{i} is {location}" for i, location in enumerate(exprs))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{where}"


def test_key_queries_are_dashboard_queries() -> None:
    variables, queries = read_queries()
    assert {f"${v}" for v in variables} == set(GRAFANA_VARIABLES)
    names = [q.name for q in queries]
    assert len(names) == len(set(names)), "duplicate query names in queries.yml"
    assert {"cases_by_state", "events_relayed_per_partner", "relay_lag_events", "delivery_p99",
            "grpc_requests_by_code", "grpc_error_ratio"} <= set(names)
    board = dashboard()
    by_panel = {p["title"]: {t["expr"] for t in p.get("targets", [])} for p in panels(board)}
    for query in queries:
        assert query.expr in by_panel.get(query.panel, set()), f"{query.name}: not on panel {query.panel!r}"


def test_exposition_passes_promtool_check_metrics(promtool: str) -> None:
    exposition = generate_latest(site_metrics().registry).decode()
    assert "tongban_cases{" in exposition
    output = run(promtool, "check", "metrics", stdin=exposition)
    assert not output.strip(), output
