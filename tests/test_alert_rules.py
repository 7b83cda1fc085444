"""The Prometheus rules pass `promtool check rules` and their unit tests.

The unit tests (deploy/prometheus/tests/*.yml) pin when each alert must fire (an
incident: first-response median from ~5 to ~40 minutes with volume; a stalled worker;
workers down or absent; a dead-letter burst) and when it must not (noise around the
baseline, a quiet night with a p50 spike on one or two responses, healthy or idle workers).
promtool is required: CI installs it (Debian package `prometheus`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from helpers.prom import REPO, RULES_DIR, WORKER_JOB, github_anchors, promtool

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
TESTS_DIR = PROMETHEUS_DIR / "tests"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))

# Every alert the rules define must be exercised by at least one promtool test.
ALERTS = {
    "FirstResponseTimeRising",
    "UnansweredPastSla",
    "WorkerDown",
    "WorkerAbsent",
    "PipelineStalled",
    "NoEventsIngested",
    "DeadLetterRateHigh",
    "ConsumerLagHigh",
    "InternalErrors",
    "BrokerLostData",
}


def test_rule_and_test_files_exist() -> None:
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    assert TEST_FILES, f"no promtool tests in {TESTS_DIR}"


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_has_a_promtool_test() -> None:
    rules = "\n".join(p.read_text() for p in RULE_FILES)
    tests = "\n".join(p.read_text() for p in TEST_FILES)
    defined = set(_names(rules, "- alert:"))
    assert defined == ALERTS
    tested = set(_names(tests, "alertname:"))
    assert tested >= ALERTS, f"alerts without promtool tests: {ALERTS - tested}"


def rules() -> list[dict[str, Any]]:
    loaded = [yaml.safe_load(path.read_text()) for path in RULE_FILES]
    return [rule for doc in loaded for group in doc["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def test_alerts_carry_severity_summary_description_runbook_and_links() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = github_anchors(operations)
    assert "workerdown" in anchors
    assert "using-an-existing-kafka-cluster-sasl--tls" in anchors  # the slug rules hold
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("for"), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        for key in ("summary", "description", "runbook", "runbook_url", "dashboard_url"):
            assert annotations.get(key), f"alert {name} has no {key}"
        runbook = re.fullmatch(r"docs/operations\.md#([\w-]+)", annotations["runbook_url"])
        assert runbook, f"{name}: runbook_url {annotations['runbook_url']!r}"
        assert runbook.group(1) in anchors, f"{name}: no heading for #{runbook.group(1)}"
        dashboard = re.match(r"http://localhost:3000/d/([\w-]+)", annotations["dashboard_url"])
        assert dashboard, f"{name}: dashboard_url {annotations['dashboard_url']!r}"
        assert (REPO / "deploy/grafana/dashboards" / f"{dashboard.group(1)}.json").is_file()


_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_][\w:]*)?\s*(\{[^{}]*\})?")
_JOB = f'job="{WORKER_JOB}"'


def unselected(expr: str) -> list[str]:
    """Selectors of raw series in ``expr`` without the one job matcher (recorded series,
    which carry the job of their source, and function names are left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', lambda m: m.group(0).replace("(", " "), expr)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    missing = []
    for match in _SELECTOR.finditer(text):
        name, matchers = match.group(1), match.group(2)
        if not name and not matchers:
            continue
        end = match.end()
        is_call = name is not None and not matchers and text[end : end + 1] == "("
        if is_call or (name and (":" in name or name in _KEYWORDS)) or (name and name[0].isdigit()):
            continue
        if name is None and matchers is None:
            continue
        if _JOB not in (matchers or ""):
            missing.append(match.group(0).strip())
    return missing


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "inf", "nan"}


def test_one_documented_job_selector() -> None:
    header = RULE_FILES[0].read_text()
    assert f"sed -i 's/{_JOB}/" in header, "the header documents how to change the job"
    for rule in rules():
        name = rule.get("alert") or rule.get("record")
        missing = unselected(rule["expr"])
        assert not missing, f"{name}: selectors without {_JOB}: {missing}"
        assert "job=" not in rule["expr"].replace(_JOB, ""), f"{name}: another job selector"
    # The check bites: a selector without the job is found.
    assert unselected('max(up{job="x"}) and rate(foo_total[5m]) > 0') == [
        'up{job="x"}',
        "foo_total",
    ]
    assert unselected(f"sum by (team) (a:b:c) / on (x) sum(foo{{{_JOB}}})") == []


def test_worker_down_waits_out_a_restart_and_past_sla_is_not_any_ticket() -> None:
    by_name = {alert["alert"]: alert for alert in alerts()}
    down = by_name["WorkerDown"]
    assert down["labels"]["severity"] == "warning"
    # A restart plus recovery takes about 1-2 minutes (bench/RESULTS-pipeline.md).
    assert _minutes(down["for"]) >= 5
    past = " ".join(by_name["UnansweredPastSla"]["expr"].split())
    assert not re.search(r"\)\s*>\s*0\b", past), past
    assert ">= 10" in past
    assert "/ max without (instance) (support_unanswered_tickets{" in past


def _minutes(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[match.group(2)]


def test_a_broken_rule_file_is_detected(tmp_path: Path) -> None:
    # The checks above are not vacuous: promtool rejects a bad expression.
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: sum(up\n")
    result = promtool("check", "rules", bad)
    assert result.returncode != 0


def _names(text: str, marker: str) -> list[str]:
    return [
        line.split(marker, 1)[1].strip()
        for line in text.splitlines()
        if marker in line and not line.lstrip().startswith("#")
    ]
