"""A real Prometheus server for tests, and the queries of the provisioned dashboards.

``PrometheusServer`` starts the ``prometheus`` binary (Debian package ``prometheus`` or
``$PROMETHEUS_BIN``) on a free loopback port with a throw-away TSDB, scraping the given
``host:port`` targets every second and evaluating the given rule files every second::

    with PrometheusServer(["127.0.0.1:6066"], rule_files=[RULES]) as prom:
        prom.wait_for('support_open_tickets{team="all"}', lambda r: len(r) == 1)
        print(prom.query("up"), prom.alerts())

``dashboard_queries()`` lists every panel query of ``deploy/grafana/dashboards/*.json``
with Grafana's template variables replaced by values Prometheus accepts. ``promtool()`` runs
promtool; ``metric_names()`` reads the metric names out of a PromQL expression, to compare
with the public metric-name sets (``PUBLIC_METRICS``); ``github_anchors()`` gives the
heading anchors that runbook links point at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from streams_dev.processes import ChildProcess, free_port

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
# The scrape job of the workers in deploy/prometheus/prometheus.yml; rules and dashboards
# filter `up` on it, so the harness uses the same name by default.
WORKER_JOB = "support-kpi-worker"

Sample = dict[str, Any]


class PrometheusError(RuntimeError):
    """Prometheus could not be started or answered a request with an error."""


def find_binary(name: str, env_var: str) -> str | None:
    """The path of a Prometheus tool: ``$env_var`` if set, else ``name`` on ``PATH``."""
    override = os.environ.get(env_var)
    if override:
        return override
    return shutil.which(name)


def sample_value(sample: Sample) -> float:
    """The float value of one instant-vector (or scalar) sample from :meth:`query`."""
    return float(sample["value"][1])


class PrometheusServer:
    """A Prometheus process scraping ``targets`` every second; a context manager.

    ``targets`` are ``host:port`` strings scraped at ``/metrics`` under job ``job``.
    ``rule_files`` are loaded as given (absolute paths are used), evaluated every second.
    """

    def __init__(
        self,
        targets: Sequence[str] = (),
        rule_files: Sequence[str | os.PathLike[str]] = (),
        *,
        job: str = WORKER_JOB,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        startup_timeout: float = 30.0,
        binary: str | None = None,
    ) -> None:
        self.targets = list(targets)
        self.rule_files = [Path(f).resolve() for f in rule_files]
        self.job = job
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.startup_timeout = startup_timeout
        self.binary = binary if binary is not None else find_binary("prometheus", "PROMETHEUS_BIN")
        self.port = 0
        self.workdir: Path | None = None
        self.child: ChildProcess | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The prometheus.yml written for this server (JSON is valid YAML)."""
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(f) for f in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        return json.dumps(config, indent=2) + "\n"

    def start(self) -> Self:
        if self.child is not None:
            raise PrometheusError("already started")
        if not self.binary:
            raise PrometheusError(
                "the `prometheus` binary is not installed: apt-get install prometheus, "
                "or set PROMETHEUS_BIN to its path"
            )
        for rule_file in self.rule_files:
            if not rule_file.is_file():
                raise PrometheusError(f"rule file not found: {rule_file}")
        self.workdir = Path(tempfile.mkdtemp(prefix="prometheus-test-"))
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config_text())
        self.child = ChildProcess("prometheus", self.workdir / "prometheus.log")
        try:
            for _attempt in range(3):  # the free port may be taken between probe and bind
                self.port = free_port()
                if self._launch(config):
                    return self
            raise PrometheusError(f"prometheus did not start:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def _launch(self, config: Path) -> bool:
        assert self.workdir is not None
        assert self.binary is not None
        assert self.child is not None
        self.child.spawn(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ]
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.child.alive():
                self.child.stop()  # reaped
                return False
            if self._ready():
                return True
            time.sleep(0.05)
        self.child.stop(10)
        raise PrometheusError(
            f"prometheus not ready after {self.startup_timeout}s:\n{self.log_tail()}"
        )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Prometheus (SIGTERM, then SIGKILL after 10 s) and delete its files."""
        if self.child is not None:
            self.child.stop(10)
            self.child = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.alive()

    def log_tail(self, lines: int = 40) -> str:
        return "" if self.child is None else self.child.log_tail(lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raise on an error status."""
        if not self.running:
            raise PrometheusError("prometheus is not running")
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            try:
                body = json.load(error)
            except ValueError:
                raise PrometheusError(f"{url}: HTTP {error.code}") from error
        if body.get("status") != "success":
            raise PrometheusError(
                f"{path} {params or ''}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant query. Vector results as returned by the API (``metric``, ``value``);
        a scalar or string result becomes one sample with empty ``metric``; a range-vector
        result gives samples with ``values``."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        samples: list[Sample] = result
        return samples

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[Sample]], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.2,
    ) -> list[Sample]:
        """Poll ``query(expr)`` until ``predicate(result)`` holds; return that result.

        The default predicate waits for a non-empty result. Raises ``TimeoutError`` with
        the last result (and the scrape targets' health) when time runs out.
        """
        deadline = time.monotonic() + timeout
        result: list[Sample] = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                targets = [
                    (t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                    for t in self.targets_status()
                ]
                raise TimeoutError(
                    f"{expr!r}: condition not met after {timeout}s; last result {result}; "
                    f"targets {targets}"
                )
            time.sleep(interval)

    def alerts(self) -> list[Sample]:
        """Active alerts (pending and firing): ``labels``, ``annotations``, ``state``, ..."""
        alerts: list[Sample] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[Sample]:
        """Loaded rule groups with each rule's ``health`` and ``lastError``."""
        groups: list[Sample] = self.api("rules")["groups"]
        return groups

    def targets_status(self) -> list[Sample]:
        """Active scrape targets with ``health`` and ``lastError``."""
        targets: list[Sample] = self.api("targets")["activeTargets"]
        return targets


# -- dashboards ----------------------------------------------------------------------

# Values for Grafana's built-in variables, as the harness scrapes every second.
BUILTIN_VARIABLES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# A query variable (e.g. $team) stands for "any of its values": a regex for `=~`.
ANY_VALUE = ".+"

_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def template_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Substitution values of the dashboard's own template variables."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("type") == "datasource":
            continue  # only ever in datasource fields, never in a query
        current = variable.get("current", {}).get("value")
        if variable.get("type") == "query":
            # A multi-value or "All" variable is a regex of any value (used with =~); a
            # single-value one is its current default (e.g. window 1h, job of the workers).
            single = not variable.get("multi") and isinstance(current, str)
            values[name] = current if single and current != "$__all" else ANY_VALUE
            continue
        if isinstance(current, list):
            current = current[0] if current else None
        if not current or current == "$__all":
            options = [o["value"] for o in variable.get("options", [])]
            current = options[0] if options else ANY_VALUE
        values[name] = str(current)
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``$var``, ``${var}``, ``${var:format}`` and ``[[var]]``; unknown ones raise."""
    known = {**BUILTIN_VARIABLES, **values}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in known:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return known[name]

    return _VARIABLE.sub(replace, expr)


def dashboard_queries() -> list[tuple[str, str, str]]:
    """``(dashboard uid, panel title, expr)`` for every Prometheus target of every panel
    of the provisioned dashboards, with template variables substituted."""
    queries: list[tuple[str, str, str]] = []
    for path in dashboard_files():
        dashboard = load_dashboard(path)
        values = template_values(dashboard)
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    queries.append((dashboard["uid"], panel["title"], substitute(expr, values)))
    return queries


# -- rules and metric names ----------------------------------------------------------


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``promtool *args`` (required: the test fails without it)."""
    binary = find_binary("promtool", "PROMTOOL_BIN")
    if not binary:
        pytest.fail(
            "promtool is required to test the alert rules: apt-get install prometheus "
            "(or set PROMTOOL_BIN to its path)"
        )
    return subprocess.run(
        [binary, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub generates for a Markdown file's headings."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


# The metric names a worker exports (and Prometheus adds), as dashboards and rules use them.
WINDOWED_METRICS = {
    "support_tickets_created",
    "support_tickets_solved",
    "support_tickets_escalated",
    "support_tickets_reopened",
    "support_escalation_ratio",
    "support_first_response_p50_seconds",
    "support_first_response_p90_seconds",
    "support_first_response_mean_seconds",
    "support_first_responses",
    "support_first_response_sla_attainment_ratio",
    "support_resolution_p50_seconds",
    "support_resolution_p90_seconds",
    "support_resolution_mean_seconds",
    "support_first_contact_resolution_ratio",
    "support_requester_wait_p50_seconds",
    "support_requester_wait_p90_seconds",
    "support_requester_wait_mean_seconds",
    "support_resolution_sla_attainment_ratio",
    "support_csat_satisfied_ratio",
    "support_csat_mean_score",
    "support_csat_responses",
    "support_nps_score",
    "support_nps_responses",
    "support_enps_score",
    "support_enps_responses",
}
# Exported only with business calendars (SUPPORT_CALENDARS_FILE).
BUSINESS_METRICS = {
    f"support_{kpi}_business_{stat}_seconds"
    for kpi in ("first_response", "resolution", "requester_wait")
    for stat in ("p50", "p90", "mean")
}
LIVE_METRICS = {
    "support_open_tickets",
    "support_unanswered_tickets",
    "support_oldest_unanswered_age_seconds",
    "support_unanswered_past_sla_tickets",
}
HEALTH_METRICS = {
    "support_events_processed_total",
    "support_events_rejected_total",
    "support_events_late_total",
    "support_events_duplicate_total",
    "support_events_orphaned_total",
    "support_last_event_timestamp_seconds",
    "support_consumer_lag_messages",
    "support_build_info",
    "support_pipeline_ready",  # SPEC §5; added by the pipeline work
}
CUSTOMER_METRICS = {
    "support_customers_active_at_start",
    "support_customers_churned",
    "support_customers_new",
    "support_customer_churn_ratio",
    "support_customer_retention_ratio",
    "support_customers_active",
}
CUMULATIVE_METRICS = {
    "support_tickets_created_total",
    "support_tickets_solved_total",
    "support_first_responses_total",
    "support_first_responses_within_sla_total",
    "support_first_response_duration_seconds_bucket",
    "support_first_response_duration_seconds_sum",
    "support_first_response_duration_seconds_count",
}
# Series Prometheus itself creates: per target, and for its alerts.
PROMETHEUS_METRICS = {"up", "ALERTS"}
PUBLIC_METRICS = (
    WINDOWED_METRICS
    | BUSINESS_METRICS
    | LIVE_METRICS
    | CUSTOMER_METRICS
    | HEALTH_METRICS
    | CUMULATIVE_METRICS
    | PROMETHEUS_METRICS
)

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*(\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (functions, keywords, label names
    in matchers and grouping clauses, and durations are not metric names)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
