"""A real Prometheus scrapes two running sites while cases flow; the dashboard's key queries answer.

The queries are read from ops/dashboards/queries.yml (copied verbatim from the dashboard's panels),
with the Grafana variables filled in as that file says.
"""

from __future__ import annotations

import re
from pathlib import Path

from adapters.launcher import SiteProcess, link, make_certs
from tests.e2e.prometheus import Prometheus
from tests.e2e.two_sites import CLERK, PDS, SZ, actor, eventually, spec, start_sites
from tongban.v1 import case_pb2 as pb

QUERIES = Path(__file__).parents[2] / "ops" / "dashboards" / "queries.yml"
HANDLER = actor(SZ)
ONLY_WITH_FAILURES = {"delivery_failures"}


def key_queries() -> dict[str, str]:
    text = QUERIES.read_text(encoding="utf-8")
    variables = dict(re.findall(r"^  (\w+): '(.*)'$", text.split("queries:")[0], flags=re.MULTILINE))
    queries = dict(re.findall(r"- name: (\w+)\n(?:    \w+: .*\n)*?    expr: '(.*)'", text))
    for name, expr in queries.items():
        for variable in sorted(variables, key=len, reverse=True):
            expr = expr.replace(f"${variable}", variables[variable])
        queries[name] = expr.replace("[5m]", "[30s]")  # the test runs for seconds, not minutes
    return queries


def test_dashboard_key_queries_against_a_real_prometheus(tmp_path: Path, started: list[SiteProcess]) -> None:
    queries = key_queries()
    assert len(queries) >= 15
    certs = make_certs(tmp_path / "certs", PDS, SZ)
    schedule = {"interval": 1.0}  # reconciliation series appear after the first scheduled run
    a, b = spec(PDS, tmp_path, certs, reconcile=schedule), spec(SZ, tmp_path, certs, reconcile=schedule)
    link(a, b)
    processes = [SiteProcess(a, tmp_path / "a"), SiteProcess(b, tmp_path / "b")]
    prometheus = Prometheus(tmp_path / "prometheus", {PDS: a.metrics_port, SZ: b.metrics_port})
    prometheus.start()
    try:
        pds, sz = start_sites(started, *processes)
        cases = []
        for _ in range(3):
            case = pds.receive()
            pds.step("ForwardCase", case.case_id, CLERK)
            cases.append(case)
        for case in cases:
            sz.wait_state(case.case_id, pb.CASE_STATE_FORWARDED)
            sz.step("SignCase", case.case_id, HANDLER)
        for case in cases:
            pds.wait_state(case.case_id, pb.CASE_STATE_PENDING_ACCEPTANCE)

        queries["relayed_total"] = 'tongban_exchange_events_relayed_total{site="410400", partner="320500"}'
        queries["received_total"] = 'tongban_exchange_events_received_total{site="320500", partner="410400"}'

        def answered() -> dict[str, list[dict[str, object]]] | None:
            results = {name: prometheus.query(expr) for name, expr in queries.items()}
            pending = {n for n, r in results.items() if not r} - ONLY_WITH_FAILURES
            states = _values(results, "cases_by_state", state="pending_acceptance")
            relayed = _values(results, "relayed_total")
            rated = _values(results, "events_relayed_per_partner", site=PDS, partner=SZ, channel="grpc")
            return results if not pending and states == [6.0] and relayed == [6.0] and rated else None

        results = eventually(answered, timeout=60, what="every key query to return its series")
    finally:
        prometheus.stop()
    assert sorted(_values(results, "site_up")) == [1.0, 1.0]
    assert _values(results, "received_total") == [6.0]  # 3 cases x (received, forwarded) from 平顶山
    assert len(_values(results, "events_relayed_per_partner", site=PDS, partner=SZ, channel="grpc")) == 1
    assert len(_values(results, "delivery_p99", site=PDS, partner=SZ, channel="grpc")) == 1  # NaN once idle
    assert _values(results, "partner_up", site=PDS, partner=SZ, channel="grpc") == [1.0]
    assert _values(results, "grpc_requests_by_code", code="OK")
    ratio = _values(results, "grpc_error_ratio", site=PDS)
    assert len(ratio) == 1 and not ratio[0] > 0  # 0, or NaN once the window holds no requests
    assert _values(results, "rectification_on_time", site=PDS) == [1.0]
    assert _values(results, "parked_messages", site=PDS) == [0.0]


def _values(results: dict[str, list[dict[str, object]]], name: str, **labels: str) -> list[float]:
    return [float(r["value"][1]) for r in results[name]  # type: ignore[index]
            if all(r["metric"].get(k) == v for k, v in labels.items())]  # type: ignore[attr-defined]
