"""`support-kpi-worker` manners (SPEC §7): --help and --version answer without Kafka or disk,
the log level takes any case, JSON logs for shippers, version and revision logged at start.

The real console script runs in a subprocess, in an empty temporary folder, pointed at a
listening socket that records whether anyone connected.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.logs import JsonFormatter
from streams.settings import (
    Settings,
    SettingsError,
    default_text,
    load_settings,
)
from streams.version import VERSION, revision
from streams_dev.processes import free_port

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(sys.executable).parent / "support-kpi-worker"


class FakeBroker:
    """A listening TCP socket: ``touched()`` tells whether anything connected to it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"

    def touched(self) -> bool:
        try:
            connection, _ = self.socket.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True


@pytest.fixture
def broker_socket() -> Iterator[FakeBroker]:
    fake = FakeBroker()
    yield fake
    fake.socket.close()


def run_worker(
    cwd: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORT_")}
    return subprocess.run(
        [str(WORKER), *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help_lists_every_setting_with_its_default_and_touches_nothing(
    tmp_path: Path, broker_socket: FakeBroker
) -> None:
    result = run_worker(
        tmp_path,
        "--help",
        SUPPORT_KAFKA_BOOTSTRAP=broker_socket.address,
        SUPPORT_BUCKET="not a duration",  # --help reads no setting, so a bad one is fine
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    help_text = result.stdout
    assert help_text.startswith("usage: support-kpi-worker")
    for name, field in Settings.model_fields.items():
        assert f"SUPPORT_{name.upper()}={default_text(name)}" in help_text, name
        assert field.description, f"SUPPORT_{name.upper()} has no docstring for --help"
        assert field.description in help_text
    assert "SUPPORT_WINDOWS=15m,1h,24h" in help_text
    assert "SUPPORT_SLA_TARGETS=urgent=15m,high=1h,normal=4h,low=8h" in help_text
    assert "SUPPORT_LOG_FORMAT=text  (one of: text, json)" in help_text
    assert list(tmp_path.iterdir()) == [], "--help created files"
    assert not broker_socket.touched(), "--help connected to the broker"


def test_version_prints_version_and_revision_and_touches_nothing(
    tmp_path: Path, broker_socket: FakeBroker
) -> None:
    result = run_worker(
        tmp_path,
        "--version",
        SUPPORT_KAFKA_BOOTSTRAP=broker_socket.address,
        BUILD_REVISION="0123456789ab",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"support-kpi-worker {VERSION} (revision 0123456789ab)\n"
    assert list(tmp_path.iterdir()) == []
    assert not broker_socket.touched()


def test_an_unknown_option_is_a_usage_error_and_starts_nothing(
    tmp_path: Path, broker_socket: FakeBroker
) -> None:
    result = run_worker(tmp_path, "--bootstrap", SUPPORT_KAFKA_BOOTSTRAP=broker_socket.address)
    assert result.returncode == 2
    assert "unrecognized arguments: --bootstrap" in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not broker_socket.touched()


def test_the_version_is_the_packages_and_the_revision_comes_from_git_or_the_build() -> None:
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "show", "support-kpi-streams"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"Version: {VERSION}\n" in installed
    env = {k: v for k, v in os.environ.items() if k != "BUILD_REVISION"}
    probe = [sys.executable, "-c", "from streams.version import revision; print(revision())"]
    found = subprocess.run(probe, capture_output=True, text=True, env=env, check=True)
    if (REPO / ".git").exists():  # a checkout (CI's clean clone is one)
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert found.stdout.strip() == head
    else:
        assert found.stdout.strip() == "unknown"
    given = subprocess.run(
        probe, capture_output=True, text=True, env={**env, "BUILD_REVISION": "r1"}, check=True
    )
    assert given.stdout.strip() == "r1"


def test_every_default_in_help_reads_back_as_that_default() -> None:
    """What --help shows is valid input: set it and you get the default again."""
    defaults = load_settings()
    for name in Settings.model_fields:
        text = default_text(name)
        if text == "(unset)":
            assert getattr(defaults, name) is None, name
            continue
        assert not re.search(r"[{}'\[\]]", text), f"{name}: {text} is not the setting syntax"
        assert getattr(load_settings(**{name: text}), name) == getattr(defaults, name), name


def test_log_level_and_format_accept_any_case() -> None:
    assert load_settings(log_level="DEBUG").log_level == "debug"
    assert load_settings(log_level="Warning").log_level == "warning"
    assert load_settings(log_format="JSON").log_format == "json"
    assert load_settings().log_format == "text"
    with pytest.raises(SettingsError, match="SUPPORT_LOG_LEVEL"):
        load_settings(log_level="verbose")
    with pytest.raises(SettingsError, match="SUPPORT_LOG_FORMAT"):
        load_settings(log_format="xml")


def test_log_level_from_the_environment_in_upper_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPPORT_LOG_LEVEL", "ERROR")
    assert load_settings().log_level == "error"


def test_json_lines_from_start_to_crash_with_version_and_revision_first(
    tmp_path: Path, broker_socket: FakeBroker
) -> None:
    """A worker whose broker hangs up: everything it says, start line to the crash, is
    one JSON object per line; the first names the version and revision."""
    unreachable = broker_socket.address
    broker_socket.socket.close()  # nothing listens there any more: the worker gives up
    result = run_worker(
        tmp_path,
        SUPPORT_KAFKA_BOOTSTRAP=unreachable,
        SUPPORT_LOG_FORMAT="json",
        SUPPORT_LOG_LEVEL="INFO",
        SUPPORT_WEB_PORT=str(free_port()),
        BUILD_REVISION="feedc0ffee12",
    )
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) > 3, result.stderr
    records = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert {"time", "level", "logger", "message", "process"} <= set(records[0])
    assert records[0]["level"] == "info"
    assert (
        f"support-kpi-worker {VERSION} (revision feedc0ffee12) starting" in (records[0]["message"])
    )
    failures = [r for r in records if r["level"] == "error"]
    assert failures, "the connection failure is logged"
    assert any("Traceback" in r.get("exception", "") for r in failures)


def test_text_logs_start_with_version_and_revision(
    tmp_path: Path, broker_socket: FakeBroker
) -> None:
    unreachable = broker_socket.address
    broker_socket.socket.close()
    result = run_worker(
        tmp_path, SUPPORT_KAFKA_BOOTSTRAP=unreachable, SUPPORT_WEB_PORT=str(free_port())
    )
    assert result.returncode != 0
    expected = f"support-kpi-worker {VERSION} (revision {revision()}) starting"
    assert expected in result.stdout + result.stderr


def test_json_formatter_keeps_the_traceback_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "streams.app", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed x"
    assert entry["level"] == "error"
    assert entry["time"].endswith("Z")
    assert "ValueError: boom" in entry["exception"]


def test_the_worker_collects_cyclic_garbage_seldom() -> None:
    """Python's default (700, 10, 10) cost the worker 10-20 % of its CPU in a catch-up."""
    import gc

    from streams.worker import GC_THRESHOLDS, tune_garbage_collector

    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        young, middle, old = gc.get_threshold()
        assert (young, middle, old) == GC_THRESHOLDS
        assert young >= 50 * 700
    finally:
        gc.set_threshold(*before)
