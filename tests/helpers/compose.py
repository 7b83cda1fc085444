"""The docker-compose stack as Compose itself reads it (``docker-compose config``), offline.

No Docker engine is needed. Without docker-compose (or PyYAML in any python3) a test that
needs it is skipped locally and fails in CI (:func:`helpers.ci.missing_tool`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from helpers.ci import missing_tool
from helpers.prom import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"

_YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


def compose_command() -> list[str]:
    """docker-compose v1, else the `docker compose` plugin."""
    if binary := shutil.which("docker-compose"):
        return [binary]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    missing_tool("docker-compose")


#: The one variable the compose file requires (there is no default admin password).
TEST_GRAFANA_PASSWORD = "compose-test-password"


def clean_env(*, grafana_password: bool = True) -> dict[str, str]:
    """The environment without overrides of the compose file's variables (except the
    required Grafana admin password, unless ``grafana_password`` is False)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SUPPORT_", "COMPOSE_", "GRAFANA_", "SIMULATOR_", "PROMETHEUS_"))
    }
    if grafana_password:
        env["GRAFANA_ADMIN_PASSWORD"] = TEST_GRAFANA_PASSWORD
    return env


def _yaml_interpreters() -> list[str]:
    """Python interpreters that may have PyYAML: ours, docker-compose's, the system's."""
    candidates = [sys.executable]
    if compose := shutil.which("docker-compose"):
        with open(compose, "rb") as script:
            first = script.readline().decode(errors="replace")
        if first.startswith("#!"):
            candidates.append(first[2:].split()[0])
    candidates += [p for p in (shutil.which("python3"), "/usr/bin/python3") if p]
    return list(dict.fromkeys(candidates))


def load_yaml(text: str) -> Any:
    """Parse YAML with PyYAML from any interpreter that has it (the venv may not)."""
    for interpreter in _yaml_interpreters():
        if not Path(interpreter).exists():
            continue
        result = subprocess.run(
            [interpreter, "-c", _YAML_TO_JSON],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return json.loads(result.stdout)
    missing_tool("PyYAML (in any python3)")


def run_compose_config(
    *options: str, grafana_password: bool = True
) -> subprocess.CompletedProcess[str]:
    """``docker compose -f docker-compose.yml config *options`` in the clean environment."""
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE_FILE), "config", *options],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(grafana_password=grafana_password),
        check=False,
        timeout=60,
    )


@cache
def compose_config() -> dict[str, Any]:
    """The normalized, interpolated compose model (as `docker compose up` would use it)."""
    result = run_compose_config()
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = load_yaml(result.stdout)
    return config


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose_config()["services"]
    assert name in services, f"service {name!r} missing from docker-compose.yml"
    svc: dict[str, Any] = services[name]
    return svc


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}
