"""The compose stack's Alertmanager: wired into Prometheus, routes alerts per team.

`amtool` (Debian package `prometheus-alertmanager`) validates the config and resolves the
routes offline; without it the amtool tests are skipped locally and fail in CI (CI=true).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from helpers.ci import missing_tool
from helpers.compose import service
from helpers.prom import REPO, RULES_DIR, find_binary

ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"


def amtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = find_binary("amtool", "AMTOOL_BIN")
    if not binary:
        missing_tool("amtool (apt-get install prometheus-alertmanager)")
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def route(**labels: str) -> str:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_compose_runs_alertmanager_with_this_config() -> None:
    alertmanager = service("alertmanager")
    assert alertmanager["image"].startswith("prom/alertmanager:")
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    mounts = [
        str(v.get("source", v)) if isinstance(v, dict) else str(v) for v in alertmanager["volumes"]
    ]
    assert any(str(ALERTMANAGER_CONFIG.parent) in m for m in mounts), mounts
    prometheus = service("prometheus")
    assert "alertmanager" in prometheus["depends_on"]


def test_prometheus_sends_alerts_to_it() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    (static,) = manager["static_configs"]
    assert static["targets"] == ["alertmanager:9093"]


def test_amtool_check_config() -> None:
    result = amtool("check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_routes_per_team_and_pipeline_alerts_to_the_platform() -> None:
    assert route(alertname="UnansweredPastSla", team="Billing", severity="warning") == (
        "team-billing"
    )
    assert route(alertname="FirstResponseTimeRising", team="Technical") == "team-technical"
    assert route(alertname="FirstResponseTimeRising", team="all", scope="overall") == (
        "support-leads"
    )
    assert route(alertname="UnansweredPastSla", team="Accounts") == "support-leads"
    # Every pipeline alert of the rules goes to the platform on-call.
    rules = yaml.safe_load((RULES_DIR / "support.yml").read_text())
    pipeline = {
        rule["alert"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule and "team" not in rule["expr"]
    }
    assert pipeline >= {"WorkerDown", "WorkerAbsent", "PipelineStalled"}
    for name in sorted(pipeline):
        assert route(alertname=name, job="support-kpi-worker") == "platform-oncall", name


def test_a_broken_config_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    broken.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: somebody\n")
    assert amtool("check-config", broken).returncode != 0
