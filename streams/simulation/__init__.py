"""Support-traffic simulator: a deterministic event generator and its sinks.

The command-line entry point is :func:`streams.simulator.main`; this package holds the parts:

- :mod:`streams.simulation.model`: :func:`generate`, :class:`SimRecord`, :class:`SimOptions`.
- :mod:`streams.simulation.bad`: how invalid input records are made.
- :mod:`streams.simulation.sinks`: JSON-lines file and Kafka sinks, progress reporting.
"""

from __future__ import annotations

from streams.simulation.model import (
    DEFAULT_RATE,
    DEFAULT_TEAMS,
    PROFILES,
    TOPICS,
    LifecycleOptions,
    Profile,
    SimOptions,
    SimRecord,
    generate,
)
from streams.simulation.sinks import (
    Progress,
    ProgressFn,
    read_jsonl,
    record_from_json,
    record_to_json,
    send_to_kafka,
    write_jsonl,
)

__all__ = [
    "DEFAULT_RATE",
    "DEFAULT_TEAMS",
    "PROFILES",
    "TOPICS",
    "LifecycleOptions",
    "Profile",
    "Progress",
    "ProgressFn",
    "SimOptions",
    "SimRecord",
    "generate",
    "read_jsonl",
    "record_from_json",
    "record_to_json",
    "send_to_kafka",
    "write_jsonl",
]
