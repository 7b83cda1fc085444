"""What machine a benchmark ran on: shared by the bench scripts' result files."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("unknown" elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    """The 1/5/15-minute load average ("unknown" elsewhere): other work skews figures."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_lines(load: str) -> list[str]:
    """The machine block of a results file: CPU, cores, Python, OS, msgspec, ``load``."""
    import msgspec

    return [
        f"- CPU: {cpu_model()}",
        f"- nproc: {os.cpu_count()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- OS: {platform.platform()}",
        f"- msgspec: {msgspec.__version__}",
        f"- load average at start (1/5/15 min): {load}",
    ]
