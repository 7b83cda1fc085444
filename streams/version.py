"""The running version and the source revision it was built from.

One place for both: ``--version``, the worker's first log line and ``support_build_info``.
The version is the package's (``pyproject.toml`` reads it from ``streams.__version__``).
The revision is, in this order: ``$BUILD_REVISION`` (the image sets it from the Docker build
argument ``REVISION``), the git commit of a source checkout the package runs from (an
editable install), else ``unknown``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from streams import __version__

VERSION = __version__
REVISION_VARIABLE = "BUILD_REVISION"
UNKNOWN = "unknown"


def revision() -> str:
    """The source revision (a git commit, 12 hex digits when read from git) or ``unknown``."""
    given = os.environ.get(REVISION_VARIABLE, "").strip()
    if given:
        return given
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # installed from a wheel or an image: no checkout here
        return UNKNOWN
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else UNKNOWN


def describe() -> str:
    """``0.1.0 (revision 1a2b3c4d5e6f)``."""
    return f"{VERSION} (revision {revision()})"
