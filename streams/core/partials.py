"""The message between the stages: partial aggregates, from a stage-1 engine to a stage-2 merge.

A stage-1 engine (:mod:`streams.core.ticket_engine`) flushes the *absolute value* of every
partial aggregate that changed, per (group, source partition, bucket); the worker groups them
by dimension into one :class:`PartialBatch` per flush, source partition and dimension (one
Kafka message on ``<app>-kpi-partials``, keyed and routed by dimension), and a stage-2 merge
(:mod:`streams.core.merge`) keeps the latest value of each. Both import these types from here.

The wire format is msgpack of these structs as arrays: field names are not sent, field order
and types are.
"""

from __future__ import annotations

import msgspec

from streams.core.aggregate import LiveAggregate, WindowAggregate
from streams.core.kpis import ALL

Group = tuple[str, str, str]  # (team, channel, priority), "all" where not broken down
OVERALL: Group = ("all", "all", "all")
# A live update with this bucket carries nothing but the stream time (no ticket is created in
# bucket -1 of the epoch).
HEARTBEAT_BUCKET = -1


def dimension_of(group: Group) -> str:
    """Which dimension a group breaks down: overall, team, channel or priority."""
    team, channel, priority = group
    if team != ALL:
        return "team"
    if channel != ALL:
        return "channel"
    if priority != ALL:
        return "priority"
    return "overall"


class PartialUpdate(msgspec.Struct, array_like=True, kw_only=True):
    """The absolute value of one partial aggregate (None: it is empty now).

    Windowed partials (``is_live`` False) are per bucket of *measurement* time; live-backlog
    partials per bucket of *creation* time of the open tickets, so one ticket's change
    re-sends only the tickets created in the same bucket, whatever the backlog.
    """

    group: Group
    source_partition: int  # the stage-1 (input) partition whose tickets it sums
    bucket: int
    window: WindowAggregate | None = None
    live: LiveAggregate | None = None
    stream_time_us: int = 0
    is_live: bool = False
    # A reset drops everything stage 2 holds from this source partition for the dimension of
    # ``group``; the partials that follow it are a complete snapshot (sent after a rebuild,
    # so a partial that emptied while its tombstone was lost in a crash cannot linger).
    reset: bool = False


class PartialBatch(msgspec.Struct, array_like=True, kw_only=True):
    """Every changed partial of one source partition for one dimension: one stage-2 message.

    ``reset``: stage 2 first drops everything it holds from this source for this dimension
    (the batches that follow, up to the one marked ``complete``, are a full snapshot).
    ``complete``: after this batch stage 2 holds this source's complete state for the
    dimension. ``caught_up``: the source partition had (almost) no input lag when it was sent.
    """

    source_partition: int  # the stage-1 (input) partition that sent it
    dimension: str
    stream_time_us: int
    updates: list[PartialUpdate]
    reset: bool = False
    complete: bool = True
    caught_up: bool = True


DIMENSIONS: tuple[str, ...] = ("overall", "team", "channel", "priority")


def batch_updates(
    source_partition: int,
    updates: list[PartialUpdate],
    stream_time_us: int,
    *,
    caught_up: bool = True,
    announce: bool = False,
    max_updates: int = 1000,
) -> list[PartialBatch]:
    """Group one flush's updates by dimension into batches of at most ``max_updates``.

    Reset updates (after a rebuild) mark the first batch of their dimension; its snapshot is
    ``complete`` only with the last chunk. ``announce`` sends a (possibly empty) batch to
    every dimension, e.g. when ``caught_up`` changed, so stage 2 learns it.
    """
    by_dimension: dict[str, list[PartialUpdate]] = {d: [] for d in DIMENSIONS} if announce else {}
    resets: set[str] = set()
    for update in updates:
        dimension = dimension_of(update.group)
        if update.reset:
            resets.add(dimension)
            by_dimension.setdefault(dimension, [])
        else:
            by_dimension.setdefault(dimension, []).append(update)
    batches = []
    for dimension, mine in by_dimension.items():
        chunks = [mine[i : i + max_updates] for i in range(0, len(mine), max_updates)] or [[]]
        for index, chunk in enumerate(chunks):
            batches.append(
                PartialBatch(
                    source_partition=source_partition,
                    dimension=dimension,
                    stream_time_us=stream_time_us,
                    updates=chunk,
                    reset=dimension in resets and index == 0,
                    complete=index == len(chunks) - 1,
                    caught_up=caught_up,
                )
            )
    return batches


__all__ = [
    "DIMENSIONS",
    "HEARTBEAT_BUCKET",
    "OVERALL",
    "Group",
    "PartialBatch",
    "PartialUpdate",
    "batch_updates",
    "dimension_of",
]
