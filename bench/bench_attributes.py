"""Bytes per retired ticket: the attribute record that outlives ticket state (SPEC §3).

Run on demand (not part of the test suite)::

    python bench/bench_attributes.py [--tickets 100000] [--output FILE]

Tickets with realistic lifecycles (36-character event ids, 12-character ticket ids, a creation,
a bot reply, two agent replies, an internal note, a third of them escalated to another team, a
solve, a CSAT survey a day later) go through a :class:`TicketEngine`; housekeeping at a clock
past the retention retires every one of them to its attribute record. Measured per ticket:

- the changelog record: key and msgpack value of the full state before retirement and of the
  record after it (what ``<app>-tickets-changelog`` and the checkpoints carry);
- the worker's heap (tracemalloc): the in-memory table store holds ``{key bytes: value
  bytes}``, and the engine a ``(due, key)`` entry in its retirement heap per record (when
  the record is forgotten); measured by building exactly those objects for every record;
- the heap of the pure engine's :class:`DictTicketStore` (decoded states: tests, replay).

Results go to ``bench/RESULTS-attributes.md`` (or ``--output``) with the machine and the date.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from machine import load_average, machine_lines

from streams.core.attributes import is_record
from streams.core.kpis import EngineConfig
from streams.core.ticket import TicketState
from streams.core.ticket_engine import DictTicketStore, TicketEngine
from streams.core.units import to_us
from streams.events import (
    CHANNELS,
    PRIORITIES,
    Event,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
)

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = EngineConfig()  # production defaults: retention 7 d, attribute retention 30 d
TEAMS = tuple(f"{name}-{region}" for name in ("billing", "tech", "sales") for region in "abc")
ENCODER = msgspec.msgpack.Encoder()


def lifecycle(i: int) -> list[Event]:
    ticket = f"TCK-{i:08d}"
    t0 = START + timedelta(seconds=i % 86400)
    n = 0

    def common(minutes: float) -> dict[str, object]:
        nonlocal n
        n += 1
        return {
            "event_id": f"{i:08x}-{n:04x}-4c2e-9a1f-{i * 7 + n:012x}",
            "occurred_at": t0 + timedelta(minutes=minutes),
            "schema_version": 1,
            "ticket_id": ticket,
        }

    team = TEAMS[i % len(TEAMS)]
    events: list[Event] = [
        TicketCreated(
            **common(0),  # type: ignore[arg-type]
            customer_id=f"cus-{i % 5000:06d}",
            team=team,
            channel=CHANNELS[i % len(CHANNELS)],
            priority=PRIORITIES[i % len(PRIORITIES)],
        ),
        TicketReplied(**common(1), author_type="bot"),  # type: ignore[arg-type]
        TicketReplied(**common(20), author_type="agent", agent_id="agent-17"),  # type: ignore[arg-type]
        TicketReplied(**common(25), author_type="agent", public=False),  # type: ignore[arg-type]
    ]
    if i % 3 == 0:
        events.append(TicketEscalated(**common(30), level=1, to_team=TEAMS[(i + 1) % 9]))  # type: ignore[arg-type]
    events += [
        TicketReplied(**common(60), author_type="agent", agent_id="agent-4"),  # type: ignore[arg-type]
        TicketStatusChanged(**common(90), status="solved"),  # type: ignore[arg-type]
    ]
    survey = common(24 * 60)
    events.append(
        SurveySubmitted(
            event_id=str(survey["event_id"]),
            occurred_at=survey["occurred_at"],  # type: ignore[arg-type]
            schema_version=1,
            survey_id=f"srv-{i:08d}",
            kind="csat",
            score=1 + i % 5,
            ticket_id=ticket,
        )
    )
    return events


def heap_bytes(build: object) -> float:
    """Python heap growth (tracemalloc) while ``build()`` makes what it returns."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()  # type: ignore[operator]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return float(after - before)


def measure(count: int) -> dict[str, float]:
    store = DictTicketStore()
    engine = TicketEngine(0, store, CONFIG)
    clock = 0
    for i in range(count):
        for event in lifecycle(i):
            clock = max(clock, to_us(event.occurred_at))
            engine.process(event, clock)
    full = {key: ENCODER.encode(state) for key, state in store.data.items()}
    retire_at = clock + round(CONFIG.retention_seconds * 1e6) + 3600 * 10**6
    engine.housekeeping(retire_at)
    records = {key: ENCODER.encode(state) for key, state in store.data.items()}
    assert len(records) == count
    assert all(is_record(state) for state in store.data.values())
    decoder = msgspec.msgpack.Decoder(TicketState)
    due = retire_at + round(CONFIG.attribute_retention_seconds * 1e6)

    def worker_table() -> dict[bytes, bytes]:
        # What the in-memory Faust store holds: key bytes -> value bytes, fresh objects.
        return {key.encode(): bytes(bytearray(value)) for key, value in records.items()}

    def retirement_heap() -> list[tuple[int, str]]:
        entries = [(due + n, "".join(key)) for n, key in enumerate(records)]
        heapq.heapify(entries)
        return entries

    def decoded() -> dict[str, TicketState]:
        return {"".join(key): decoder.decode(value) for key, value in records.items()}

    keys = sum(len(key.encode()) for key in records)
    return {
        "tickets": count,
        "key": keys / count,
        "full": sum(map(len, full.values())) / count,
        "record": sum(map(len, records.values())) / count,
        "table": heap_bytes(worker_table) / count,
        "heap_entry": heap_bytes(retirement_heap) / count,
        "decoded": heap_bytes(decoded) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-attributes.md")
    args = parser.parse_args()
    started = datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y")
    load = load_average()
    m = measure(args.tickets)
    worker = m["table"] + m["heap_entry"]
    lines = [
        "# Retired-ticket attributes benchmark",
        "",
        f"Run `python bench/bench_attributes.py` on {started} ({args.tickets:,} tickets, one "
        "thread).",
        "",
        *machine_lines(load),
        "",
        "Tickets: 12-character ids, 36-character event ids, teams of 6-8 characters; a creation, "
        "a bot reply, two public agent replies, an internal note, an escalation to another team "
        "(one in three), a solve and a CSAT survey a day later. Production defaults (retention "
        "7 d, attribute retention 30 d).",
        "",
        "## Changelog record per ticket (bytes)",
        "",
        "| key | full state before retirement (msgpack) | attribute record (msgpack) |",
        "|---:|---:|---:|",
        f"| {m['key']:.0f} | {m['full']:.0f} | {m['record']:.0f} |",
        "",
        "## Memory per retired ticket (Python heap bytes, tracemalloc)",
        "",
        "| worker: table entry (key + value bytes objects, dict slot) | worker: retirement-heap "
        "entry | worker total | pure engine's DictTicketStore (decoded) |",
        "|---:|---:|---:|---:|",
        f"| {m['table']:.0f} | {m['heap_entry']:.0f} | {worker:.0f} | {m['decoded']:.0f} |",
        "",
        "## Reading the figures",
        "",
        f"- The record itself is {m['record']:.0f} bytes of msgpack (the team at retirement is "
        "the only string; channel, priority and creator are one-byte codes; creation and last "
        "event times and the requester wait so far 5-9 bytes each), against the full state's "
        "hundreds: the changelog and every checkpoint shrink by that much per finished ticket.",
        "- In the worker's memory a retired ticket costs the bytes objects of its key and value "
        "in the in-memory table store (33 bytes of object header each) and their dict slot, "
        "plus the engine's (due, key) entry of its retirement heap (a tuple, an int and a str) "
        "that tells when to forget it. That is Python's per-object overhead, several times the "
        "payload: the record is a few dozen bytes, its bookkeeping is not. A packed index "
        "(fixed-size rows in one array, expiry by day) would bring it near the payload; not "
        "built. With `SUPPORT_STORE=rocksdb://` the table entry is on disk, not in the heap.",
        "- Retention of attributes is 30 days against the state's 7: at a steady rate of R "
        "solved tickets per day the worker holds about 23 R records, e.g. 10,000 tickets/day "
        f"-> {23 * 10_000 * worker / 1e6:.0f} MB.",
        "",
    ]
    text = "\n".join(lines)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
