"""Decoder throughput: ``streams.decoding.decode`` vs ``json.loads`` + jsonschema validation.

Run on demand::

    python bench/bench_decoding.py [--events 20000] [--repeat 5] [--output FILE]

For each input topic it builds realistic, distinct payloads (varied ids, teams, offsets, optional
fields, a few unknown vendor fields), then times, single-threaded:

- ``decode()``: the production path (UTF-8 check, typed msgspec decoding, RFC 3339 form,
  score and future checks);
- msgspec typed decoding alone (the floor ``decode()`` builds on);
- ``json.loads`` + ``Draft202012Validator.is_valid`` (what a schema-driven decoder would cost);
- ``decode()`` on rejected payloads (the slow path that names the reason and field).

Each figure is the best of ``--repeat`` runs over the whole set. Results go to
``bench/RESULTS-decoding.md`` (or ``--output``) with the machine description (CPU model,
nproc, Python) and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from machine import cpu_model, load_average

from streams.decoding import Rejection, decode
from streams.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TEAMS = ["billing", "tech-support", "onboarding", "Tier 2 \N{EN DASH} Hardware", "returns", "vip"]
CHANNELS = ["email", "chat", "phone", "web", "social", "api", "other"]
PRIORITIES = ["low", "normal", "normal", "normal", "high", "urgent"]
OFFSETS = ["Z", "Z", "Z", "+02:00", "-05:00", "+05:30"]


def _timestamp(rng: random.Random) -> str:
    moment = NOW - timedelta(seconds=rng.uniform(0, 86400))
    offset = rng.choice(OFFSETS)
    if offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * sign
        moment = moment + delta
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.7:
        text += f".{moment.microsecond // 1000:03d}"
    return text + offset


def _event(topic: str, n: int, rng: random.Random) -> dict[str, Any]:
    ticket = f"TCK-{rng.randrange(10**6, 10**7)}"
    common: dict[str, Any] = {
        "event_id": f"evt_{rng.getrandbits(80):020x}",
        "occurred_at": _timestamp(rng),
        "schema_version": 1,
    }
    if topic == "ticket-created":
        body: dict[str, Any] = {
            "ticket_id": ticket,
            "customer_id": f"cus_{rng.getrandbits(40):010x}",
            "team": rng.choice(TEAMS),
            "channel": rng.choice(CHANNELS),
            "priority": rng.choice(PRIORITIES),
        }
        if rng.random() < 0.8:
            body["created_by"] = rng.choice(["customer"] * 8 + ["agent", "system"])
        if rng.random() < 0.3:
            body["subject"] = "Cannot log in after password reset"
            body["tags"] = ["login", "sso"]
    elif topic == "ticket-replied":
        author = rng.choice(["agent", "agent", "agent", "customer", "customer", "bot", "system"])
        body = {"ticket_id": ticket, "author_type": author}
        if author == "agent":
            body["agent_id"] = f"agt_{rng.randrange(10**4):04d}"
            body["public"] = rng.random() < 0.85
    elif topic == "ticket-escalated":
        body = {"ticket_id": ticket, "level": rng.choice([1, 1, 1, 2, 3])}
        if rng.random() < 0.6:
            body["to_team"] = rng.choice(TEAMS)
        if rng.random() < 0.5:
            body["reason"] = "Refund above agent approval limit; customer asked for a manager."
    elif topic == "ticket-status-changed":
        body = {
            "ticket_id": ticket,
            "status": rng.choice(["open", "pending", "on_hold", "solved", "solved", "closed"]),
        }
    elif topic == "survey-submitted":
        kind = rng.choice(["csat", "csat", "nps", "enps"])
        body = {
            "survey_id": f"srv_{n}",
            "kind": kind,
            "score": rng.randint(1, 5) if kind == "csat" else rng.randint(0, 10),
        }
        if kind == "enps":
            body["team"] = rng.choice(TEAMS)
        else:
            body["ticket_id"] = ticket
    else:
        body = {
            "customer_id": f"cus_{rng.getrandbits(40):010x}",
            "change": rng.choice(["activated", "churned"]),
            "segment": rng.choice(["smb", "mid-market", "enterprise"]),
        }
    return common | body


def _broken(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    broken = dict(document)
    choice = rng.randrange(4)
    if choice == 0:
        broken.pop("event_id")
    elif choice == 1:
        broken["occurred_at"] = broken["occurred_at"][:19]  # no offset
    elif choice == 2:
        broken["schema_version"] = "1"
    else:
        broken["event_id"] = ""
    return broken


def _rate(function: Callable[[bytes], object], payloads: Sequence[bytes], repeat: int) -> float:
    """Best events/second over ``repeat`` passes."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in payloads:
            function(data)
        best = min(best, time.perf_counter() - start)
    return len(payloads) / best


def _machine() -> dict[str, str]:
    model = cpu_model()
    load = load_average()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": model,
        "nproc": str(usable),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": platform.platform(),
        "msgspec": version("msgspec"),
        "jsonschema": version("jsonschema"),
        "load average at start (1/5/15 min; other work on the machine skews figures)": load,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20000, help="payloads per topic")
    parser.add_argument("--repeat", type=int, default=5, help="passes; the best one counts")
    parser.add_argument(
        "--schema-events", type=int, default=2000, help="payloads per topic for jsonschema"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-decoding.md")
    args = parser.parse_args(argv)

    rng = random.Random(20240501)
    now = NOW.timestamp()
    rows: list[tuple[str, int, float, float, float, float]] = []
    for topic, event_type in EVENT_TYPES.items():
        documents = [_event(topic, n, rng) for n in range(args.events)]
        payloads = [json.dumps(d, ensure_ascii=False).encode() for d in documents]
        broken = [json.dumps(_broken(d, rng)).encode() for d in documents[: args.schema_events]]
        schema = json.loads((ROOT / "schemas" / f"{topic}.schema.json").read_text())
        validator = Draft202012Validator(schema)
        typed = msgspec.json.Decoder(event_type)

        # Every payload must really be accepted (and every broken one rejected) for a fair figure.
        for data in payloads:
            result = decode(topic, data, now=now, future_tolerance_seconds=300.0)
            assert not isinstance(result, Rejection), (topic, result, data)
        for data in broken:
            result = decode(topic, data, now=now, future_tolerance_seconds=300.0)
            assert isinstance(result, Rejection), (topic, data)
        assert all(validator.is_valid(json.loads(d)) for d in payloads[: args.schema_events])

        def run_decode(data: bytes, topic: str = topic) -> object:
            return decode(topic, data, now=now, future_tolerance_seconds=300.0)

        def run_schema(data: bytes, validator: Any = validator) -> object:
            return validator.is_valid(json.loads(data))

        decoded = _rate(run_decode, payloads, args.repeat)
        floor = _rate(typed.decode, payloads, args.repeat)
        schema_rate = _rate(run_schema, payloads[: args.schema_events], args.repeat)
        rejected = _rate(run_decode, broken, args.repeat)
        mean_size = statistics.fmean(len(p) for p in payloads)
        rows.append((topic, round(mean_size), decoded, floor, schema_rate, rejected))
        print(
            f"{topic:24s} decode {decoded:>12,.0f}/s  msgspec {floor:>12,.0f}/s  "
            f"json+jsonschema {schema_rate:>9,.0f}/s  rejected {rejected:>10,.0f}/s"
        )

    total_decode = len(rows) / sum(1 / r[2] for r in rows)
    total_schema = len(rows) / sum(1 / r[4] for r in rows)
    machine = _machine()
    lines = [
        "# Decoder benchmark",
        "",
        f"Run `python bench/bench_decoding.py` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{args.events} payloads per topic, best of {args.repeat} passes, one thread).",
        "",
        *[f"- {key}: {value}" for key, value in machine.items()],
        "",
        "Events per second (higher is better). *decode* is `streams.decoding.decode` on valid "
        "events; *msgspec only* is typed msgspec decoding without the extra checks; "
        "*json + jsonschema* is `json.loads` + `Draft202012Validator.is_valid` against the same "
        f"schema ({args.schema_events} payloads); *rejected* is `decode` on invalid payloads "
        "(missing field, naive timestamp, wrong type, empty id).",
        "",
        "| topic | mean bytes | decode | msgspec only | json + jsonschema | decode / jsonschema "
        "| rejected |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for topic, size, decoded, floor, schema_rate, rejected in rows:
        lines.append(
            f"| {topic} | {size} | {decoded:,.0f} | {floor:,.0f} | {schema_rate:,.0f} "
            f"| {decoded / schema_rate:,.0f}x | {rejected:,.0f} |"
        )
    lines += [
        "",
        f"Equal mix of the six topics: **{total_decode:,.0f} events/s** with `decode` "
        f"({1e6 / total_decode:.2f} µs/event) vs {total_schema:,.0f} events/s with "
        f"json + jsonschema ({total_decode / total_schema:,.0f}x).",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"\nmix: {total_decode:,.0f} events/s decode, {total_schema:,.0f} json+jsonschema")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
