"""The docker-compose stack, the worker image and the Prometheus config (SPEC §6).

No Docker engine is needed: `docker-compose config` validates and normalizes the compose
file offline, `promtool check config` the Prometheus config, and the topic-creation script
runs against a fake `kafka-topics.sh`. Without docker-compose the compose tests are
skipped locally and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers.compose import (
    TEST_GRAFANA_PASSWORD,
    compose_config,
    environment,
    load_yaml,
    run_compose_config,
    service,
)
from helpers.prom import REPO, WORKER_JOB, find_binary

PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
CREATE_TOPICS = REPO / "deploy" / "kafka" / "create-topics.sh"
INPUT_TOPICS = [
    "ticket-created",
    "ticket-replied",
    "ticket-escalated",
    "ticket-status-changed",
    "survey-submitted",
    "customer-lifecycle",
]
ALL_TOPICS = [*INPUT_TOPICS, "support-events-dlq", "support-kpis"]
# -- compose --------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    result = run_compose_config("-q")
    assert result.returncode == 0, result.stderr
    assert set(compose_config()["services"]) >= {
        "kafka",
        "topics",
        "worker",
        "simulator",
        "prometheus",
        "grafana",
    }


def test_grafana_has_no_default_admin_password() -> None:
    """Without GRAFANA_ADMIN_PASSWORD compose refuses, naming the variable; with it, Grafana
    gets exactly that password."""
    result = run_compose_config("-q", grafana_password=False)
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD" in result.stderr, result.stderr
    assert environment("grafana")["GF_SECURITY_ADMIN_PASSWORD"] == TEST_GRAFANA_PASSWORD


def test_published_ports_bind_loopback_by_default() -> None:
    """Prometheus and Grafana (no authentication / the board) and Kafka's host listener are
    published on 127.0.0.1 only, unless an operator opts in."""
    published = {}
    for name, svc in compose_config()["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                published[(name, int(port["target"]))] = str(port.get("host_ip", ""))
            else:  # "127.0.0.1:9090:9090/tcp"
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else ""
                published[(name, int(parts[-1].split("/")[0]))] = host_ip
    assert {("prometheus", 9090), ("grafana", 3000)} <= set(published), published
    assert all(ip == "127.0.0.1" for ip in published.values()), published


def test_worker_is_scalable() -> None:
    worker = service("worker")
    assert "container_name" not in worker, "a fixed container name breaks --scale"
    assert "ports" not in worker, "a fixed host port breaks --scale; Prometheus uses DNS"
    assert worker["build"]["context"] == str(REPO)
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "6066" in [str(p) for p in worker.get("expose", [])]
    env = environment("worker")
    assert env["SUPPORT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["SUPPORT_WEB_PORT"] == "6066"
    assert env["SUPPORT_CLOCK"] == "wall"
    for name in (
        "SUPPORT_KAFKA_SECURITY_PROTOCOL",
        "SUPPORT_KAFKA_SASL_MECHANISM",
        "SUPPORT_KAFKA_SASL_USERNAME",
        "SUPPORT_KAFKA_SASL_PASSWORD",
        "SUPPORT_KAFKA_SSL_CAFILE",
    ):
        assert name in env, f"worker should pass {name} through"
    # Unset optional settings must stay unset in the container (an empty CA file path
    # would be read as the current directory).
    raw = service("worker")["environment"]
    for name in ("SUPPORT_KAFKA_SSL_CAFILE", "SUPPORT_KAFKA_SASL_USERNAME"):
        assert raw[name] is None, f"{name} should be passed through only when set"


def test_kafka_runs_kraft_and_partition_counts_agree() -> None:
    kafka = service("kafka")
    assert kafka["image"].startswith("apache/kafka:")
    env = environment("kafka")
    assert "controller" in env["KAFKA_PROCESS_ROLES"], "KRaft: the broker is its own controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka["healthcheck"]["test"]
    partitions = {
        environment("topics")["SUPPORT_PARTITIONS"],
        environment("worker")["SUPPORT_PARTITIONS"],
        env["KAFKA_NUM_PARTITIONS"],
    }
    assert partitions == {"8"}, "topic creator, worker and broker default must agree"

    topics = service("topics")
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert any("create-topics.sh" in str(v) for v in topics.get("volumes", []))
    assert "/opt/support/create-topics.sh" in topics["entrypoint"]
    assert service("simulator")["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )


def test_simulator_targets_the_compose_kafka() -> None:
    command = [str(c) for c in service("simulator")["command"]]
    assert command[0] == "support-kpi-simulator"
    assert command[command.index("--bootstrap-servers") + 1] == "kafka:9092"
    assert "--realtime" in command
    assert command[command.index("--profile") + 1] == "steady"


def test_prometheus_and_grafana_services() -> None:
    prometheus = service("prometheus")
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = [
        str(v.get("source", v)) if isinstance(v, dict) else str(v) for v in prometheus["volumes"]
    ]
    assert any(str(REPO / "deploy" / "prometheus") in m for m in mounts), mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    grafana = service("grafana")
    assert grafana["image"].startswith("grafana/grafana")
    env = environment("grafana")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith("support-wallboard.json")
    mounts = [
        str(v.get("source", v)) if isinstance(v, dict) else str(v) for v in grafana["volumes"]
    ]
    assert any(str(REPO / "deploy" / "grafana" / "provisioning") in m for m in mounts), mounts


# -- Prometheus config ------------------------------------------------------------------


def test_prometheus_discovers_every_worker_by_dns() -> None:
    config = load_yaml(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert WORKER_JOB in jobs, "rules and dashboards filter on this job name"
    worker = jobs[WORKER_JOB]
    assert "static_configs" not in worker
    (dns,) = worker["dns_sd_configs"]
    assert dns["names"] == ["worker"]
    assert dns.get("type", "SRV") == "A"
    assert dns["port"] == 6066
    assert config["rule_files"] == ["rules/*.yml"]


def test_promtool_check_config() -> None:
    promtool = find_binary("promtool", "PROMTOOL_BIN")
    if not promtool:
        pytest.fail("promtool is required: apt-get install prometheus (or set PROMTOOL_BIN)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


# -- topic creation -------------------------------------------------------------------

_FAKE_KAFKA_TOPICS = r"""#!/bin/sh
# Records each call; topics live as files "<state>/<topic>" holding the partition count.
echo "$*" >> "$FAKE_STATE/calls"
topic=""; partitions=""; action=""
while [ $# -gt 0 ]; do
    case "$1" in
        --topic) topic="$2"; shift ;;
        --partitions) partitions="$2"; shift ;;
        --create|--describe|--list) action="$1" ;;
    esac
    shift
done
case "$action" in
    --list) ls "$FAKE_STATE/topics" ;;
    --create) f="$FAKE_STATE/topics/$topic"; [ -f "$f" ] || echo "$partitions" > "$f" ;;
    --describe) printf 'Topic: %s\tTopicId: x\tPartitionCount: %s\tReplicationFactor: 1\n' \
        "$topic" "$(cat "$FAKE_STATE/topics/$topic")" ;;
esac
"""


def _run_create_topics(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "kafka-topics.sh"
    fake.write_text(_FAKE_KAFKA_TOPICS)
    fake.chmod(0o755)
    (tmp_path / "topics").mkdir(exist_ok=True)
    return subprocess.run(
        ["sh", str(CREATE_TOPICS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={
            "PATH": os.environ["PATH"],
            "KAFKA_BIN": str(bin_dir),
            "FAKE_STATE": str(tmp_path),
            **env,
        },
    )


def test_create_topics_script(tmp_path: Path) -> None:
    result = _run_create_topics(tmp_path, SUPPORT_PARTITIONS="6")
    assert result.returncode == 0, result.stderr
    created = {p.name: p.read_text().strip() for p in (tmp_path / "topics").iterdir()}
    assert created == dict.fromkeys(ALL_TOPICS, "6")
    calls = (tmp_path / "calls").read_text().splitlines()
    creates = {c.split("--topic ")[1].split()[0]: c for c in calls if "--create" in c}
    assert "cleanup.policy=compact" in creates["support-kpis"]
    assert all("cleanup.policy" not in creates[t] for t in INPUT_TOPICS)
    assert all("--bootstrap-server kafka:9092" in c for c in calls)

    # Idempotent: a second run succeeds and changes nothing.
    assert _run_create_topics(tmp_path, SUPPORT_PARTITIONS="6").returncode == 0


def test_create_topics_refuses_a_partition_mismatch(tmp_path: Path) -> None:
    (tmp_path / "topics").mkdir()
    (tmp_path / "topics" / "ticket-replied").write_text("3\n")
    result = _run_create_topics(tmp_path, SUPPORT_PARTITIONS="8")
    assert result.returncode != 0
    assert "ticket-replied has 3 partitions, expected 8" in result.stderr
