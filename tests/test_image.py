"""The worker image and the packaging, checked without a Docker engine.

The Dockerfile is parsed into stages and instructions: multi-stage, dependencies installed
in a layer of their own before the source is copied, the runtime stage takes only the
virtual environment and runs as a non-root user, OCI labels agree with the package. The
dependency step's own script runs here on the real pyproject.toml; the LICENSE file is the
Apache License 2.0 that pyproject.toml declares.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.compose import compose_config

import streams

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OCI = "org.opencontainers.image."


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def find(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def arg_defaults(self) -> dict[str, str]:
        return {name: default for name, _, default in (a.partition("=") for a in self.find("ARG"))}

    def index(self, keyword: str, contains: str) -> int:
        for position, (kw, args) in enumerate(self.instructions):
            if kw == keyword and contains in args:
                return position
        raise AssertionError(f"no {keyword} with {contains!r} in stage {self.name}")


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages, each a list of (INSTRUCTION, arguments) with the
    continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            assert [p.upper() for p in parts[1:2]] == ["AS"], f"unnamed stage: {line}"
            assert len(parts) == 3, line
            stages.append(Stage(parts[0], parts[2]))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def key_values(args: str) -> dict[str, str]:
    """``LABEL``/``ENV`` arguments ``a=1 b="two words"`` as a dict."""
    pairs = (item.partition("=") for item in shlex.split(args))
    return {key: value for key, _, value in pairs}


GLOBAL_ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text())
BUILD, RUNTIME = STAGES[0], STAGES[-1]


def test_two_stages_from_the_same_python_base() -> None:
    assert [s.name for s in STAGES] == ["build", "runtime"]
    assert GLOBAL_ARGS["PYTHON_IMAGE"] == "python:3.11-slim"
    assert all(s.base == "${PYTHON_IMAGE}" for s in STAGES), "the venv's python must match"
    assert PYPROJECT["requires-python"] == ">=3.11"


def test_dependencies_are_installed_in_their_own_layer_before_the_source() -> None:
    requirements_file = BUILD.index("COPY", "pyproject.toml")
    install_requirements = BUILD.index("RUN", "pip install -r requirements.txt")
    copy_source = BUILD.index("COPY", "streams")
    install_package = BUILD.index("RUN", "pip install --no-deps .")
    assert requirements_file < install_requirements < copy_source < install_package
    copied_first = BUILD.instructions[requirements_file][1].split()
    assert "streams" not in " ".join(copied_first), "the dependency layer must not see source"
    assert "pyproject.toml" in copied_first


def test_the_dependency_step_lists_the_runtime_requirements_and_the_rocksdb_extra(
    tmp_path: Path,
) -> None:
    """Runs scripts/pyproject-requirements.py as the build stage does, with the default
    EXTRAS and with none."""
    default_extras = BUILD.arg_defaults()["EXTRAS"]
    assert default_extras == "rocksdb"
    script = REPO / "scripts" / "pyproject-requirements.py"
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())

    def listed(extras: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={**os.environ, "EXTRAS": extras},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.split()

    runtime = PYPROJECT["dependencies"]
    assert listed("") == runtime
    assert listed(default_extras) == runtime + PYPROJECT["optional-dependencies"]["rocksdb"]
    assert not any(r.startswith(("pytest", "mypy", "ruff")) for r in listed(default_extras))


def test_the_runtime_stage_takes_only_the_venv_and_runs_as_a_non_root_user() -> None:
    copies = RUNTIME.find("COPY")
    assert copies == ["--from=build /opt/venv /opt/venv"], "no build context in the runtime"
    users = RUNTIME.find("USER")
    assert users, "the image must switch to a non-root user"
    assert users[-1] not in ("root", "0")
    assert RUNTIME.instructions[-1] == ("CMD", '["support-kpi-worker"]')
    assert RUNTIME.find("HEALTHCHECK"), "compose and orchestrators need a health check"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "streams_dev", "*-data"} <= set(ignored)  # no dev tooling


def test_oci_labels_agree_with_the_package() -> None:
    labels: dict[str, str] = {}
    for line in RUNTIME.find("LABEL"):
        labels |= key_values(line)
    args = RUNTIME.arg_defaults()
    assert labels[OCI + "title"] == PYPROJECT["name"]
    assert labels[OCI + "licenses"] == PYPROJECT["license"]["text"] == "Apache-2.0"
    assert labels[OCI + "version"] == "$VERSION"
    assert args["VERSION"] == streams.__version__, "bump the image's VERSION with the package"
    assert labels[OCI + "revision"] == "$REVISION"
    assert args["REVISION"] == "unknown"
    assert labels[OCI + "description"]
    # The revision label and the worker's start line tell the same revision.
    env: dict[str, str] = {}
    for line in RUNTIME.find("ENV"):
        env |= key_values(line)
    assert env["BUILD_REVISION"] == "$REVISION"


def test_compose_builds_the_image_with_the_revision_and_passes_the_log_settings() -> None:
    services = compose_config()["services"]
    for name in ("worker", "simulator"):
        build = services[name]["build"]
        assert build["context"] == str(REPO)
        assert build["args"]["REVISION"] == "unknown", name  # REVISION=... overrides it
    worker_env = services["worker"]["environment"]
    assert worker_env["SUPPORT_LOG_FORMAT"] == "text"  # SUPPORT_LOG_FORMAT=json overrides it
    assert worker_env["SUPPORT_LOG_LEVEL"] == "info"


def test_license_is_the_apache_license_2_0_declared_in_pyproject() -> None:
    text = (REPO / "LICENSE").read_text()
    assert re.match(r"\s*Apache License\s+Version 2\.0, January 2004\s", text)
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert text.rstrip().endswith("limitations under the License.")
    assert len(text.split()) > 1500, "the full text, not a notice"
    assert PYPROJECT["license"] == {"text": "Apache-2.0"}
