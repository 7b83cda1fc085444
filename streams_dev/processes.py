"""Child processes of the dev tooling: the one process manager of the project.

:class:`ChildProcess` runs a command in its own session (so a terminal's Ctrl-C reaches only
the parent, and a signal reaches the child's whole process group), with stdout and stderr
appended to a log file, and stops it with SIGTERM, then SIGKILL after a timeout. On Linux
the child also gets a signal when its parent dies without cleaning up (:func:`die_with_parent`).
The embedded broker, the demo's worker, the tests' workers and Prometheus, and the
benchmarks' contenders are all one of these.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = ["ChildProcess", "die_with_parent", "free_port"]

_LOOPBACK = "127.0.0.1"
_TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TAIL_BYTES = 64_000


def free_port(host: str = _LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child get ``sig`` when its parent dies (Linux only).

    Covers the cases where Python cannot clean up (SIGKILL, default SIGTERM handling). The
    libc function is resolved here, before fork, so the child only calls it. The signal
    belongs to the forking *thread*: arm it only from a thread that outlives the child
    (:class:`ChildProcess` arms it from the main thread only).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class ChildProcess:
    """A command run as a child process in its own session, its output in ``log_path``.

    ``parent_death_signal``: what the child gets when this process dies without stopping it
    (None: nothing). :meth:`stop` sends SIGTERM to the child's process group and SIGKILL
    after ``timeout``; :meth:`kill` is ``kill -9``.
    """

    def __init__(
        self,
        name: str,
        log_path: Path,
        *,
        parent_death_signal: signal.Signals | None = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.parent_death_signal = parent_death_signal
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        """Start the command (raises ``OSError`` if it cannot run); returns at once."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        preexec = None
        if (
            self.parent_death_signal is not None
            and threading.current_thread() is threading.main_thread()
        ):
            preexec = die_with_parent(self.parent_death_signal)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: no stray Ctrl-C, killpg works
                preexec_fn=preexec,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's process group (nothing if it is gone)."""
        if self.process is not None:
            # start_new_session=True makes the child its group leader: pgid == pid.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code once the child has exited (``subprocess.TimeoutExpired`` if not
        within ``timeout`` seconds)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process.wait(timeout)

    def kill(self) -> None:
        """kill -9: no shutdown, no commit, no flush."""
        if self.alive():
            self.signal(signal.SIGKILL)
            self.wait(10)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, SIGKILL if still running after ``timeout`` seconds; reaps the child and
        kills anything left in its process group. Idempotent."""
        if self.process is None:
            return
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.process.wait()
        self.signal(signal.SIGKILL)

    def rss_bytes(self) -> int:
        """The child's resident set size (Linux ``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name} (pid {self.pid})")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the child's output, without terminal control sequences."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - _TAIL_BYTES))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        text = _TERMINAL_CONTROL.sub("", text)
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped"
        return f"<{type(self).__name__} {self.name} pid={self.pid} {state}>"
