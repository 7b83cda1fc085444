"""The Prometheus rules pass `promtool check rules` and their unit tests.

The unit tests (deploy/prometheus/tests/*.yml) pin when each alert must fire (an
incident: first-response median from ~5 to ~40 minutes with volume; a stalled worker;
workers down or absent; a dead-letter burst) and when it must not (noise around the
baseline, a quiet night with a p50 spike on one or two responses, healthy or idle workers).
promtool is required: CI installs it (Debian package `prometheus`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prom import REPO, RULES_DIR, find_binary

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


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
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


def test_alerts_carry_severity_summary_description_runbook() -> None:
    for path in RULE_FILES:
        blocks = path.read_text().split("- alert:")[1:]
        for block in blocks:
            name = block.split()[0]
            for key in ("severity:", "summary:", "description:", "runbook:", "for:"):
                assert key in block, f"{path.name}: alert {name} has no {key}"


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
