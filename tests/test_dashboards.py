"""The provisioned Grafana dashboards, and the real-Prometheus harness in ``prom.py``.

Static checks: valid JSON, stable unique uids, every panel has a query, every metric name
is a public one (SPEC §5), portability (a datasource variable instead of a uid, `job` and
`instance` variables, windows from ``label_values``), the wallboard's self-reporting
panels. Then every dashboard query is parsed by a real Prometheus, and the harness itself
is tested against a tiny ``prometheus_client`` exporter (scrape, query, wait_for, recording
rules, alerts, clean stop).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.prom import (
    DASHBOARDS_DIR,
    HEALTH_METRICS,
    LIVE_METRICS,
    PUBLIC_METRICS,
    REPO,
    RULES_DIR,
    WORKER_JOB,
    PrometheusError,
    PrometheusServer,
    dashboard_files,
    dashboard_queries,
    find_binary,
    iter_panels,
    load_dashboard,
    metric_names,
    sample_value,
    substitute,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from streams_dev.processes import free_port

DATASOURCE_UID = "support-prometheus"  # the provisioned datasource; no dashboard names it
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
EXPECTED_UIDS = {"support-wallboard", "support-team-detail"}


def all_dashboards() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in dashboard_files():
        yield path, load_dashboard(path)


def test_dashboard_files_exist() -> None:
    names = {p.name for p in dashboard_files()}
    assert names == {f"{uid}.json" for uid in EXPECTED_UIDS}


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_is_valid_provisioned_json(path: Path) -> None:
    dashboard = json.loads(path.read_text())  # raises on invalid JSON
    assert dashboard["uid"] == path.stem, "file name and uid must agree (stable URLs)"
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned JSON has no db id"
    assert dashboard["editable"] is False
    panel_ids = [p["id"] for p in iter_panels(dashboard)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard):
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_dashboard_uids_and_titles_unique() -> None:
    dashboards = [d for _, d in all_dashboards()]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert set(uids) == EXPECTED_UIDS
    assert len(uids) == len(set(uids))
    assert len(titles) == len(set(titles))


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_every_panel_queries_the_datasource_variable(path: Path) -> None:
    """Imports into any Grafana: the datasource is a variable, never a uid."""
    text = path.read_text()
    assert DATASOURCE_UID not in text, "a hard-coded datasource uid"
    dashboard = load_dashboard(path)
    datasource = variables(dashboard)["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    assert not datasource.get("current"), "the default datasource of the Grafana it lands in"
    panels = [p for p in iter_panels(dashboard) if p["type"] != "row"]
    assert panels
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        targets = panel.get("targets", [])
        assert targets, f"panel {title!r} has no query"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in targets:
            assert target["datasource"] == DATASOURCE, title
            assert target.get("expr", "").strip(), f"panel {title!r} has an empty query"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_queries_select_the_job_variable_and_pipeline_panels_the_instance(path: Path) -> None:
    dashboard = load_dashboard(path)
    found = variables(dashboard)
    job = found["job"]
    assert job["type"] == "query"
    assert job["query"]["query"] == "label_values(support_build_info, job)"
    assert job["current"]["value"] == WORKER_JOB  # the compose stack's scrape job
    raw = [
        (panel, target["expr"])
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    for panel, expr in raw:
        if "ALERTS" in expr:
            continue  # Prometheus' own series: no job
        for selector in re.findall(r"\b(?:support_\w+|up)(\{[^}]*\})?", expr):
            assert 'job=~"$job"' in selector, (panel["title"], expr)
        pipeline = metric_names(expr) & (HEALTH_METRICS | {"up"}) - {"support_pipeline_ready"}
        if pipeline and "instance" in found:
            assert 'instance=~"$instance"' in expr, (panel["title"], expr)
    if "instance" in found:
        instance = found["instance"]
        assert instance["multi"]
        assert instance["includeAll"]
        assert "$job" in instance["query"]["query"]


def test_windows_come_from_label_values() -> None:
    detail = load_dashboard(DASHBOARDS_DIR / "support-team-detail.json")
    window = variables(detail)["window"]
    assert window["type"] == "query", "not a fixed list"
    assert window["query"]["query"].startswith("label_values(")
    assert window["query"]["query"].endswith(", window)")
    assert window["current"]["value"] == "1h"
    assert "options" not in window or window["options"] == []


def test_wallboard_reports_data_age_pipeline_state_and_firing_alerts() -> None:
    board = load_dashboard(DASHBOARDS_DIR / "support-wallboard.json")
    panels = {p["title"]: p for p in iter_panels(board)}
    age = panels["Data age"]
    assert "time() - max(support_last_event_timestamp_seconds{" in age["targets"][0]["expr"]
    steps = age["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["color"] == "red"
    assert steps[-1]["value"] == 600
    assert age["fieldConfig"]["defaults"]["unit"] == "s"
    ready = panels["Pipeline"]
    assert ready["targets"][0]["expr"] == 'min(support_pipeline_ready{job=~"$job"})'
    texts = {
        value["text"]
        for mapping in ready["fieldConfig"]["defaults"]["mappings"]
        for value in mapping["options"].values()
    }
    assert texts == {"READY", "RECOVERING"}
    assert 'ALERTS{alertstate="firing"}' in panels["Alerts firing"]["targets"][0]["expr"]
    # A panel says "today" exactly when it reads the calendar-day window (a rolling 24 h
    # window is not "today").
    for panel in iter_panels(board):
        exprs = [target.get("expr", "") for target in panel.get("targets", [])]
        says_today = "today" in panel["title"].lower() or any(
            "today" in target.get("legendFormat", "").lower() for target in panel.get("targets", [])
        )
        reads_today = any('window="today"' in expr for expr in exprs)
        assert says_today == reads_today, panel["title"]
    assert 'window="today"' in panels["Created / solved today"]["targets"][0]["expr"]


def test_metric_name_extraction() -> None:
    expr = (
        'max by (team) (support_first_response_p50_seconds{window="1h",'
        'team=~"$team"}) / on (team) group_left sum without (instance) '
        "(rate(support_events_processed_total[5m] offset 1h)) > bool 0.5e3"
        ' and time() - up{job="x"}'
    )
    assert metric_names(expr) == {
        "support_first_response_p50_seconds",
        "support_events_processed_total",
        "up",
    }
    # A typo is a metric name that is not public: the check below would fail on it.
    assert metric_names("max(support_first_respons_p50_seconds)") - PUBLIC_METRICS == {
        "support_first_respons_p50_seconds"
    }


def test_every_dashboard_metric_is_public() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20
    used: set[str] = set()
    for uid, title, expr in queries:
        names = metric_names(expr)
        assert names, f"{uid} / {title}: no metric in {expr!r}"
        unknown = names - PUBLIC_METRICS
        assert not unknown, f"{uid} / {title}: unknown metric(s) {unknown} in {expr!r}"
        used |= names
    # The wallboard and team board together cover the live queue and the main KPIs.
    assert used >= LIVE_METRICS
    assert {
        "support_first_response_p50_seconds",
        "support_first_response_p90_seconds",
        "support_resolution_p50_seconds",
        "support_first_response_sla_attainment_ratio",
        "support_first_responses_within_sla_total",
        "support_tickets_created_total",
        "support_pipeline_ready",
        "support_csat_satisfied_ratio",
        "support_nps_score",
        "support_tickets_created",
        "support_tickets_solved",
        "support_escalation_ratio",
        "support_events_rejected_total",
        "support_consumer_lag_messages",
        "support_last_event_timestamp_seconds",
    } <= used


def test_template_variables_are_substituted_and_used_as_regex() -> None:
    for uid, title, expr in dashboard_queries():
        assert "$" not in expr, f"{uid} / {title}: {expr}"
        assert "[[" not in expr, f"{uid} / {title}: {expr}"
    raw = [
        target["expr"]
        for _, dashboard in all_dashboards()
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    # $team may be a multi-value regex: only `=~` works with it.
    for expr in raw:
        assert not re.search(r'[^~]"\$\{?team\b', expr), expr
    assert any('team=~"$team"' in expr for expr in raw)
    assert substitute('x{team=~"$team"}[$__rate_interval]', {"team": ".+"}) == ('x{team=~".+"}[1m]')
    assert substitute("${window:raw} [[window]]", {"window": "1h"}) == "1h 1h"
    with pytest.raises(KeyError):
        substitute("$nope", {})


# -- against a real Prometheus --------------------------------------------------------


def _require_prometheus() -> None:
    if not find_binary("prometheus", "PROMETHEUS_BIN"):
        pytest.fail(
            "the `prometheus` binary is required (apt-get install prometheus, or set "
            "PROMETHEUS_BIN); it checks dashboard queries and runs the integration tests"
        )


def test_every_dashboard_query_is_valid_promql() -> None:
    _require_prometheus()
    with PrometheusServer() as prom:
        for uid, title, expr in dashboard_queries():
            try:
                prom.query(expr)
            except PrometheusError as error:
                pytest.fail(f"{uid} / {title}: {expr!r} is rejected by Prometheus: {error}")


_TEST_RULES = """\
groups:
  - name: harness
    rules:
      - alert: PastSlaNow
        expr: support_unanswered_past_sla_tickets{team!="all"} > 0
        labels: {severity: test}
        annotations: {summary: "team {{ $labels.team }}: {{ $value }}"}
"""


class Exporter:
    """A tiny exporter with a few support_* series, served on a free loopback port."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        dims = ["team", "channel", "priority"]
        self.unanswered = Gauge("support_unanswered_tickets", "", dims, registry=self.registry)
        self.past_sla = Gauge(
            "support_unanswered_past_sla_tickets", "", dims, registry=self.registry
        )
        self.frt = Gauge(
            "support_first_response_p50_seconds", "", ["window", *dims], registry=self.registry
        )
        self.processed = Counter("support_events_processed", "", ["topic"], registry=self.registry)
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    exp.unanswered.labels("all", "all", "all").set(7)
    exp.unanswered.labels("billing", "all", "all").set(3)
    exp.past_sla.labels("billing", "all", "all").set(2)
    exp.frt.labels("15m", "all", "all", "all").set(312.5)
    exp.processed.labels("ticket-created").inc(5)
    server, thread = start_http_server(exp.port, addr="127.0.0.1", registry=exp.registry)
    try:
        yield exp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prom(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """One Prometheus for the harness tests: its first scrape waits for the service
    discovery update (about 5 s in Prometheus 2.x), so it is shared."""
    _require_prometheus()
    test_rules = tmp_path_factory.mktemp("rules") / "harness.yml"
    test_rules.write_text(_TEST_RULES)
    rule_files = [*sorted(RULES_DIR.glob("*.yml")), test_rules]
    with PrometheusServer([exporter.target], rule_files=rule_files) as server:
        yield server


def test_harness_scrapes_and_queries(prom: PrometheusServer, exporter: Exporter) -> None:
    assert prom.running
    result = prom.wait_for(
        'support_unanswered_tickets{team="all",channel="all",priority="all"}',
        lambda r: len(r) == 1,
        timeout=20,
    )
    assert sample_value(result[0]) == 7
    assert result[0]["metric"]["job"] == "support-kpi-worker"
    assert result[0]["metric"]["instance"] == exporter.target

    # Values change: the next scrape (1 s) is visible.
    exporter.unanswered.labels("all", "all", "all").set(11)
    prom.wait_for(
        'support_unanswered_tickets{team="all"}',
        lambda r: bool(r) and sample_value(r[0]) == 11,
        timeout=10,
    )
    exporter.processed.labels("ticket-created").inc(3)
    counted = prom.wait_for(
        'support_events_processed_total{topic="ticket-created"}',
        lambda r: bool(r) and sample_value(r[0]) == 8,
        timeout=10,
    )
    assert counted[0]["metric"]["topic"] == "ticket-created"

    # Scalars come back as one sample; a bad query raises with Prometheus' message.
    assert sample_value(prom.query("1 + 1")[0]) == 2
    with pytest.raises(PrometheusError, match="parse error"):
        prom.query("sum(")
    with pytest.raises(TimeoutError, match="never_there"):
        prom.wait_for("never_there", timeout=0.5)


def test_harness_evaluates_the_project_rules(prom: PrometheusServer) -> None:
    # The recording rule drops instance and window.
    recorded = prom.wait_for("support:first_response_p50_seconds:15m", timeout=20)
    assert recorded[0]["metric"] == {
        "__name__": "support:first_response_p50_seconds:15m",
        "job": "support-kpi-worker",
        "team": "all",
        "channel": "all",
        "priority": "all",
    }
    assert sample_value(recorded[0]) == 312.5
    groups = prom.rules()
    assert {g["name"] for g in groups} == {"support-kpi-recording", "support-kpi-alerts", "harness"}
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] in ("ok", "unknown"), rule


def test_harness_reports_alerts(prom: PrometheusServer) -> None:
    firing = prom.wait_for('ALERTS{alertname="PastSlaNow"}', timeout=20)
    assert firing[0]["metric"]["alertstate"] == "firing"
    alerts = [a for a in prom.alerts() if a["labels"]["alertname"] == "PastSlaNow"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["state"] == "firing"
    assert alert["labels"]["team"] == "billing"
    assert alert["labels"]["severity"] == "test"
    assert alert["annotations"]["summary"] == "team billing: 2"


def test_wallboard_lists_the_firing_alerts(prom: PrometheusServer) -> None:
    """The wallboard's alert table query returns the alert the harness rules fire."""
    board = load_dashboard(DASHBOARDS_DIR / "support-wallboard.json")
    panel = next(p for p in iter_panels(board) if p["title"] == "Alerts firing")
    expr = substitute(panel["targets"][0]["expr"], {})
    rows = prom.wait_for(expr, lambda r: any(s["metric"]["alertname"] == "PastSlaNow" for s in r))
    row = next(s for s in rows if s["metric"]["alertname"] == "PastSlaNow")
    assert row["metric"] == {"alertname": "PastSlaNow", "severity": "test", "team": "billing"}


def test_harness_stops_cleanly() -> None:
    _require_prometheus()
    with PrometheusServer() as server:
        child, workdir = server.child, server.workdir
        assert child is not None
        assert workdir is not None
        assert workdir.is_dir()
        assert server.query("vector(1)")
    assert child.returncode is not None, "prometheus must be stopped on exit"
    assert not server.running
    assert not workdir.exists()
    with pytest.raises(PrometheusError, match="not running"):
        server.query("vector(1)")


def test_harness_fails_clearly_without_binary_or_rules(tmp_path: Path) -> None:
    with pytest.raises(PrometheusError, match="not installed"):
        PrometheusServer(binary="").start()
    missing = PrometheusServer(rule_files=[tmp_path / "missing.yml"], binary="/bin/true")
    with pytest.raises(PrometheusError, match="rule file not found"):
        missing.start()
    assert missing.workdir is None


def test_dashboards_dir_is_the_provisioned_one() -> None:
    assert DASHBOARDS_DIR == REPO / "deploy" / "grafana" / "dashboards"
