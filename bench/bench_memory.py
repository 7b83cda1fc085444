"""Where the bytes per open ticket go: the worker's ticket state and partials, in-process.

Run on demand::

    python bench/bench_memory.py [--tickets 50000] [--tickets-mid 20000] [--output FILE]

The records are those of the memory phase of ``bench/bench_pipeline.py`` (customer tickets
created over 20 hours, never answered), decoded and fed as the worker does: four stage-1
engines (``TicketEngine``) over the record cache of the ``tickets`` table (``FaustStateStore``
over an in-memory stand-in for the Faust table), their partials flushed every 500 records
through the wire format into one stage-2 merge (``KpiMerge``), the cache moved into the table
every 2,000 records (a commit; its changelog records are dropped). Between ``--tickets-mid``
and ``--tickets`` open tickets it reports, per ticket: the growth of each component's objects
(``sys.getsizeof`` of everything reachable from it, each object once, rounded up to the
allocator's 16-byte classes), and the growth of the whole Python heap (``tracemalloc``).
The worker's RSS slope (``bench_pipeline.py``, memory phase) adds allocator slack and what
Faust and aiokafka hold on top.

Results go to ``bench/RESULTS-memory.md`` (or ``--output``) with the machine and the date.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from bench_pipeline import open_tickets
from machine import cpu_model, load_average

from streams.changelog import FaustStateStore
from streams.core.firsts import FirstDerivations
from streams.core.merge import KpiMerge
from streams.core.partials import PartialBatch, batch_updates
from streams.core.replay import partition_for
from streams.core.ticket import TicketState
from streams.core.ticket_engine import InputRecord, TicketEngine
from streams.core.units import to_us
from streams.decoding import Rejection, decode
from streams.settings import Settings
from streams.simulation import SimRecord

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
FLUSH_EVERY = 500  # records between partial flushes
COMMIT_EVERY = 2_000  # records between record-cache writes

_ENCODER = msgspec.msgpack.Encoder()
_BATCH_DECODER = msgspec.msgpack.Decoder(PartialBatch)


class MemoryTable:
    """The part of a Faust table the record cache uses here: its in-memory ``data``."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


def allocated(size: int) -> int:
    """What the allocator hands out for ``size`` bytes: pymalloc's 16-byte classes, malloc
    with its header above 512 bytes."""
    return (size + 15) // 16 * 16 if size <= 512 else size + 16


def deep_size(root: object, seen: set[int]) -> int:
    """Bytes of every object reachable from ``root`` not in ``seen`` (which it extends)."""
    total = 0
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if obj is None or isinstance(obj, bool) or id(obj) in seen:
            continue
        if isinstance(obj, int) and -5 <= obj <= 256:
            continue  # CPython's shared small ints
        seen.add(id(obj))
        total += allocated(sys.getsizeof(obj))
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, msgspec.Struct):
            stack.extend(getattr(obj, name) for name in obj.__struct_fields__)
        elif isinstance(obj, str | bytes | int | float):
            continue
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name))
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.append(vars(obj))
    return total


class Pipeline:
    """Stage 1 and stage 2 of the tickets, in-process, as the worker wires them."""

    def __init__(self) -> None:
        config = Settings().engine_config()
        self.table = MemoryTable()
        table: Any = self.table
        self.store = FaustStateStore(table, msgspec.msgpack.Decoder(TicketState))
        self.firsts = FirstDerivations()
        self.engines = [TicketEngine(p, self.store, config, self.firsts) for p in range(PARTITIONS)]
        self.merge = KpiMerge(config)
        self.fed = 0

    def feed(self, records: Sequence[SimRecord]) -> None:
        for record in records:
            event = decode(
                "ticket-created",
                record.value,
                now=time.time(),
                future_tolerance_seconds=300.0,
                max_bytes=1 << 20,
            )
            assert not isinstance(event, Rejection), event
            partition = partition_for(record.key.decode(), PARTITIONS)
            engine = self.engines[partition]
            clock = max(engine.stream_time_us, to_us(event.occurred_at))
            engine.process(event, clock, InputRecord("ticket-created", partition, self.fed))
            engine.housekeeping(clock)
            self.fed += 1
            if self.fed % COMMIT_EVERY == 0:
                self.store.take_dirty()  # (the changelog records are dropped)
            if self.fed % FLUSH_EVERY == 0:
                self.flush_partials()
        self.store.take_dirty()  # (the changelog records are dropped)
        self.flush_partials()

    def flush_partials(self) -> None:
        for engine in self.engines:
            for batch in batch_updates(engine.partition, engine.flush(), engine.stream_time_us):
                self.merge.apply_batch(_BATCH_DECODER.decode(_ENCODER.encode(batch)))

    def components(self) -> dict[str, int]:
        """Bytes held by each component (shared objects counted once, with the first)."""
        seen: set[int] = set()
        groups = list(self.merge.groups.values())

        def of(*roots: object) -> int:
            return sum(deep_size(root, seen) for root in roots)

        parts: dict[str, Callable[[], int]] = {
            "tickets table: key, msgpack value, dict slot": lambda: of(self.table.data),
            "fact identities (FirstDerivations, capped at 65,536)": lambda: of(self.firsts),
            "stage 1: windowed partials (+ expiry index)": lambda: of(
                *(e.windows for e in self.engines),
                *(e._bucket_set for e in self.engines),
                *(e._buckets for e in self.engines),
            ),
            "stage 1: live partials": lambda: of(*(e.live for e in self.engines)),
            "stage 2: windowed partials per source partition": lambda: of(
                *(g.parts for g in groups)
            ),
            "stage 2: merged buckets": lambda: of(*(g.buckets for g in groups)),
            "stage 2: live partials per source partition": lambda: of(
                *(g.live_parts for g in groups)
            ),
        }
        return {name: measure() for name, measure in parts.items()}


def measure(tickets: int, mid: int) -> tuple[dict[str, float], float, dict[str, float]]:
    """Per open ticket between ``mid`` and ``tickets``: component bytes, traced heap bytes,
    objects per ticket (partials, table entries)."""
    records = open_tickets(tickets, time.time() - 3600)
    pipeline = Pipeline()
    tracemalloc.start()
    pipeline.feed(records[:mid])
    gc.collect()
    heap_mid = tracemalloc.get_traced_memory()[0]
    at_mid = pipeline.components()
    counts_mid = counts(pipeline)
    pipeline.feed(records[mid:])
    gc.collect()
    heap_top = tracemalloc.get_traced_memory()[0]
    at_top = pipeline.components()
    counts_top = counts(pipeline)
    tracemalloc.stop()
    n = tickets - mid
    per_ticket = {name: (at_top[name] - at_mid[name]) / n for name in at_top}
    per_count = {name: (counts_top[name] - counts_mid[name]) / n for name in counts_top}
    return per_ticket, (heap_top - heap_mid) / n, per_count


def counts(pipeline: Pipeline) -> dict[str, int]:
    groups = pipeline.merge.groups.values()
    return {
        "stage 1 windowed partials": sum(len(e.windows) for e in pipeline.engines),
        "stage 1 live partials": sum(len(e.live) for e in pipeline.engines),
        "stage 2 windowed partials": sum(len(g.parts) for g in groups),
        "stage 2 merged buckets": sum(len(g.buckets) for g in groups),
        "stage 2 live partials": sum(len(g.live_parts) for g in groups),
        "table entries": len(pipeline.table.data),
    }


def report(
    args: argparse.Namespace,
    per_ticket: dict[str, float],
    heap: float,
    per_count: dict[str, float],
    started: str,
) -> str:
    lines = [
        "# Memory per open ticket: the worker's state, in-process",
        "",
        f"`python bench/bench_memory.py --tickets {args.tickets} --tickets-mid "
        f"{args.tickets_mid}`, {started}; {cpu_model()}, CPython {platform.python_version()}, "
        f"load average {load_average()}.",
        "",
        f"Per open ticket between {args.tickets_mid:,} and {args.tickets:,} open tickets "
        "(the memory phase's records of `bench/bench_pipeline.py`):",
        "",
        "| component | B/ticket |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:,.0f} |" for name, value in per_ticket.items()]
    lines += [
        f"| **sum of the components** | **{sum(per_ticket.values()):,.0f}** |",
        f"| Python heap (tracemalloc) | {heap:,.0f} |",
        "",
        "Objects per open ticket: "
        + ", ".join(f"{name} {value:.2f}" for name, value in per_count.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--tickets-mid", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-memory.md")
    args = parser.parse_args(argv)
    if not 0 < args.tickets_mid < args.tickets:
        parser.error("need 0 < --tickets-mid < --tickets")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    per_ticket, heap, per_count = measure(args.tickets, args.tickets_mid)
    text = report(args, per_ticket, heap, per_count, started)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
