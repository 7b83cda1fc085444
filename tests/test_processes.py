"""``streams_dev.processes.ChildProcess``: the one process manager of the dev tooling."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from streams_dev.processes import ChildProcess, free_port


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_output_goes_to_the_log_and_the_tail_drops_terminal_control(tmp_path: Path) -> None:
    child = ChildProcess("echo", tmp_path / "echo.log")
    child.spawn(python("import sys\nfor i in range(50): print(f'\\x1b[1mline {i}\\x1b[0m')"))
    assert child.wait(30) == 0
    tail = child.log_tail(3)
    assert tail.splitlines() == ["line 47", "line 48", "line 49"]
    assert "line 0" in child.log()


def test_stop_terminates_and_reaps(tmp_path: Path) -> None:
    child = ChildProcess("sleeper", tmp_path / "sleeper.log")
    child.spawn(python("import time\nprint('up', flush=True)\ntime.sleep(600)"))
    assert child.alive()
    child.stop(30)
    assert not child.alive()
    assert child.returncode == -signal.SIGTERM


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    child = ChildProcess("stubborn", tmp_path / "stubborn.log")
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring', flush=True)\n"
        "time.sleep(600)"
    )
    child.spawn(python(code))
    while "ignoring" not in child.log():  # the handler is installed
        assert child.alive(), child.log_tail()
        time.sleep(0.02)
    child.stop(0.5)
    assert child.returncode == -signal.SIGKILL


def test_kill_is_sigkill_and_a_second_spawn_is_refused_while_running(tmp_path: Path) -> None:
    child = ChildProcess("victim", tmp_path / "victim.log")
    child.spawn(python("import time\ntime.sleep(600)"))
    with pytest.raises(RuntimeError, match="already running"):
        child.spawn(python("pass"))
    child.kill()
    assert child.returncode == -signal.SIGKILL
    child.stop()  # idempotent on a dead child


def test_the_child_lives_in_its_own_process_group(tmp_path: Path) -> None:
    child = ChildProcess("group", tmp_path / "group.log")
    child.spawn(python("import os\nprint(os.getpgrp(), os.getpid())"))
    assert child.wait(30) == 0
    pgrp, pid = child.log().split()
    assert pgrp == pid


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
