"""Containment: an unexpected exception while processing one record never stops a partition.

SPEC §2: bad input never crashes or stalls the worker, and every rejected record is
dead-lettered and counted. The decoder turns malformed input into rejections; this guard
covers everything else, i.e. bugs. A record whose processing raised is dead-lettered with
reason ``internal_error`` (original bytes, source topic/partition/offset, the exception's
type name in ``detail``), counted in ``support_events_rejected_total{reason="internal_error"}``
and in ``support_internal_errors_total{stage}``, and logged at error level at most once per
exception type and interval; the worker then goes on with the next record.

Neither the dead letter nor the log carries the exception's message or a stack with values:
messages often repeat payload content (``KeyError('T-1234')``). The log names the exception
type and the code locations of its traceback, which is what a developer needs.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter

from streams.dead_letters import internal_error, letter

log = logging.getLogger(__name__)

#: Where an exception was contained: stage 1 (an input record), stage 2 (a partial), or the
#: KPI publisher's timer (no record: the tick is skipped and the next one retries).
Stage = Literal["events", "partials", "publish"]
STAGES: Final[tuple[Stage, ...]] = ("events", "partials", "publish")

DEFAULT_LOG_INTERVAL_SECONDS: Final = 60.0
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.]")


def error_type(error: BaseException) -> str:
    """The exception's class name (code, never data), made safe for a record or a log line."""
    return _NOT_NAME.sub("?", type(error).__qualname__)[:100] or "?"


class RecordGuard:
    """Turns one record's unexpected exception into a dead letter, a count and a log line."""

    def __init__(
        self,
        registry: CollectorRegistry,
        rejected: Counter,
        *,
        log_interval: float = DEFAULT_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rejected = rejected
        self.errors = Counter(
            "support_internal_errors",
            "Unexpected exceptions contained by the worker, by stage: the record was "
            "dead-lettered as internal_error (events, partials) or the publish tick skipped.",
            ["stage"],
            registry=registry,
        )
        for stage in STAGES:
            self.errors.labels(stage)
        self._interval = log_interval
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def dead_letter(
        self,
        error: BaseException,
        *,
        stage: Stage,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes | None,
        now: float | None = None,
    ) -> tuple[bytes, bytes]:
        """Count and log ``error``; return the (key, value) of the record's dead letter."""
        name = error_type(error)
        self.rejected.labels(topic, "internal_error").inc()
        self.report(error, stage, f"{topic}[{partition}]@{offset}, dead-lettered")
        return letter(
            internal_error(name, stage),
            topic=topic,
            partition=partition,
            offset=offset,
            raw=raw,
            now=time.time() if now is None else now,
        )

    def report(self, error: BaseException, stage: Stage, where: str) -> None:
        """Count ``error`` and log it unless its type was logged less than an interval ago."""
        self.errors.labels(stage).inc()
        name = error_type(error)
        now = self._clock()
        last = self._last_logged.get(name)
        if last is not None and now - last < self._interval:
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return
        self._last_logged[name] = now
        suppressed = self._suppressed.pop(name, 0)
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        log.error(
            "internal error %s in %s at %s%s; message withheld, traceback: %s",
            name,
            stage,
            where,
            more,
            _locations(error),
        )


def _locations(error: BaseException) -> str:
    """``file:line in function`` of each traceback frame, innermost first (no values)."""
    frames = traceback.extract_tb(error.__traceback__)
    return " <- ".join(
        f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"
        for frame in reversed(frames)
    )
