"""Label safety: team (and customer segment) names become bounded, printable label values
that cannot collide with the reserved values ``all``, ``other`` and ``unknown`` (SPEC §5)."""

from __future__ import annotations

import re
from functools import lru_cache

from streams.core.kpis import ALL, OTHER, UNKNOWN

MAX_LABEL_LENGTH = 64
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\"\\|]+")
_SPACES = re.compile(r"\s+")
_RESERVED = frozenset({ALL, OTHER, UNKNOWN})


@lru_cache(maxsize=4096)
def team_label(team: str) -> str:
    """A safe label value for a team name (idempotent)."""
    return _label(team, "team")


@lru_cache(maxsize=4096)
def segment_label(segment: str | None) -> str:
    """A safe label value for a customer segment; ``unknown`` when absent (idempotent)."""
    return UNKNOWN if segment is None else _label(segment, "segment")


def _label(value: str, prefix: str) -> str:
    clean = _SPACES.sub(" ", _UNSAFE.sub(" ", value)).strip()[:MAX_LABEL_LENGTH].strip()
    if not clean:
        return UNKNOWN
    if clean.lower() in _RESERVED and clean != UNKNOWN:
        return f"{prefix}-{clean}"
    return clean
