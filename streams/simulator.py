"""Traffic simulator command line: ``python -m streams.simulator`` / ``support-kpi-simulator``.

Drives the demo (``--realtime``: event time follows the wall clock), load tests and benchmarks
(backfill: as fast as possible, event time from ``--start``). The generator and the sinks live in
:mod:`streams.simulation`; this module re-exports their public API.

Examples::

    support-kpi-simulator --realtime --bootstrap-servers 127.0.0.1:9092 --profile incident
    support-kpi-simulator --duration 24h --profile daily --rate 300 --output day.jsonl
    support-kpi-simulator --duration 10d --profile churn --rate 60 --output churn.jsonl
    support-kpi-simulator --duration 3d --profile office-hours --calendars deploy/calendars.toml \
        --output week.jsonl
    support-kpi-simulator --count 1000000 --rate 20000 --bootstrap-servers kafka:9092
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
from collections.abc import Sequence
from datetime import datetime

from streams.calendar_file import load_calendars
from streams.durations import positive_duration
from streams.simulation import (
    DEFAULT_RATE,
    DEFAULT_TEAMS,
    PROFILES,
    TOPICS,
    Profile,
    Progress,
    ProgressFn,
    SimOptions,
    SimRecord,
    generate,
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
    "Profile",
    "Progress",
    "ProgressFn",
    "SimOptions",
    "SimRecord",
    "generate",
    "main",
    "read_jsonl",
    "record_from_json",
    "record_to_json",
    "send_to_kafka",
    "write_jsonl",
]

# Events per ticket to expect from a short run (a ticket makes ~8 over its life, but only its
# first few in its first minutes), used only to pick a default --start for a --count backfill:
# low, so that the count is reached before "now" and no event lies in the future.
_EVENTS_PER_TICKET = 2.5


def parse_time(text: str) -> float:
    """POSIX seconds, or an RFC 3339 / ISO 8601 timestamp with offset -> POSIX seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a timestamp: {text!r}") from None
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs an offset (e.g. +00:00): {text!r}")
    return dt.timestamp()


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _topic_rename(text: str) -> tuple[str, str]:
    default, sep, actual = text.partition("=")
    if not sep or default not in TOPICS or not actual:
        raise argparse.ArgumentTypeError(
            f"expected DEFAULT=ACTUAL with DEFAULT one of {', '.join(TOPICS)}: {text!r}"
        )
    return default, actual


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="support-kpi-simulator",
        description="Simulated helpdesk traffic (tickets, replies, escalations, status "
        "changes, surveys; customer lifecycle with --profile churn) to Kafka or a JSON-lines "
        "file.",
    )
    sink = p.add_mutually_exclusive_group(required=True)
    sink.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (host:port[,...])")
    sink.add_argument("--output", help="JSON-lines file to write ('-' for stdout)")
    p.add_argument("--profile", choices=PROFILES, default="steady", help="traffic profile")
    p.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    p.add_argument(
        "--rate",
        type=_positive,
        default=DEFAULT_RATE,
        help=f"ticket arrivals per hour (daily: the mid-day peak) [default {DEFAULT_RATE:g}]",
    )
    p.add_argument("--duration", type=positive_duration, help="event-time length: 90s, 15m, 2h")
    p.add_argument("--count", type=_count, help="stop after this many records")
    p.add_argument("--teams", default=",".join(DEFAULT_TEAMS), help="comma-separated team names")
    p.add_argument(
        "--calendars",
        help="office-hours profile: the calendar file of the agents' working hours (as "
        "SUPPORT_CALENDARS_FILE) [default: Mon-Fri 09:00-18:00 with a lunch break, Sat "
        "10:00-14:00, Europe/Berlin]",
    )
    p.add_argument("--duplicate-rate", type=_fraction, default=0.0, help="share re-sent later")
    p.add_argument(
        "--out-of-order", type=_fraction, default=0.0, help="share of records delivered late"
    )
    p.add_argument(
        "--out-of-order-delay",
        type=_positive,
        default=120.0,
        help="maximum delivery delay of late records, seconds [default 120]",
    )
    p.add_argument(
        "--bad-input-rate", type=_fraction, default=0.0, help="invalid records per valid one"
    )
    p.add_argument(
        "--realtime",
        action="store_true",
        help="event time follows the wall clock from now (demo); default: backfill fast",
    )
    p.add_argument(
        "--start",
        type=parse_time,
        help="backfill start (POSIX seconds or RFC 3339) [default: now minus the duration]",
    )
    p.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="multiply delays inside a ticket's life (0.1 = ten times livelier) [default 1]",
    )
    p.add_argument(
        "--incident-start",
        type=positive_duration,
        help="incident profile: start, after the run start [default: a third of the "
        "duration, or 10m]",
    )
    p.add_argument(
        "--incident-ramp",
        type=positive_duration,
        default=1500.0,
        help="incident profile: time to full strength [default 25m]",
    )
    p.add_argument(
        "--incident-backlog-growth",
        type=_positive,
        default=0.6,
        help="incident profile: at full strength, seconds of first-response wait added per "
        "second (below 1) [default 0.6]",
    )
    p.add_argument(
        "--incident-volume",
        type=_positive,
        default=1.6,
        help="incident profile: arrival rate multiplied up to this [default 1.6]",
    )
    p.add_argument(
        "--late-survey-share",
        type=_fraction,
        help="share of solved customer tickets with a CSAT survey days after the solve (median "
        "4 days, event time) [default: 0.3 with --profile churn, else 0]",
    )
    p.add_argument(
        "--late-reopen-share",
        type=_fraction,
        help="share of solved tickets reopened 7-10 days after the solve (event time) "
        "[default: 0.03 with --profile churn, else 0]",
    )
    p.add_argument(
        "--topic",
        action="append",
        type=_topic_rename,
        default=[],
        metavar="DEFAULT=ACTUAL",
        help="rename a topic (Kafka sink), e.g. ticket-created=prod.ticket-created",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    teams = [t.strip() for t in args.teams.split(",") if t.strip()]
    seed: int = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    now = time.time()
    duration: float | None = args.duration
    if args.realtime:
        if args.start is not None:
            parser.error("--start is for backfill; --realtime starts now")
        start = now
    elif args.start is not None:
        start = args.start
    elif duration is not None:
        start = now - duration
    elif args.count is not None:
        # End the backfill at "now" at the latest: a generous guess of the span the count needs.
        rate = args.rate * (1.6 if args.profile == "incident" else 1.0)
        duration = 1.5 * args.count / (rate / 3600.0 * _EVENTS_PER_TICKET)
        start = now - duration
    else:
        parser.error("a backfill needs --duration or --count (or use --realtime)")
    try:
        calendars = None if args.calendars is None else load_calendars(args.calendars)
        options = SimOptions(
            duplicate_rate=args.duplicate_rate,
            out_of_order=args.out_of_order,
            out_of_order_delay=args.out_of_order_delay,
            bad_input_rate=args.bad_input_rate,
            time_scale=args.time_scale,
            incident_start=args.incident_start,
            incident_ramp=args.incident_ramp,
            incident_backlog_growth=args.incident_backlog_growth,
            incident_volume_factor=args.incident_volume,
            late_survey_share=args.late_survey_share,
            late_reopen_share=args.late_reopen_share,
        )
        records = generate(
            args.profile,
            seed=seed,
            start=start,
            duration_seconds=duration,
            count=args.count,
            rate=args.rate,
            teams=teams,
            options=options,
            calendars=calendars,
        )
    except ValueError as exc:
        parser.error(str(exc))

    mode = "realtime" if args.realtime else "backfill"
    target = args.bootstrap_servers or args.output
    print(
        f"support-kpi-simulator: profile={args.profile} seed={seed} rate={args.rate:g}/h "
        f"{mode} from {datetime.fromtimestamp(start).astimezone().isoformat(timespec='seconds')}"
        f" -> {target}",
        file=sys.stderr,
    )
    progress = None if args.quiet else Progress(sys.stderr)
    interrupted = False
    try:
        if args.bootstrap_servers:
            asyncio.run(
                send_to_kafka(
                    records,
                    args.bootstrap_servers,
                    realtime=args.realtime,
                    progress=progress,
                    topics=dict(args.topic),
                )
            )
        else:
            write_jsonl(records, args.output, realtime=args.realtime, progress=progress)
    except KeyboardInterrupt:
        interrupted = True
    except OSError as exc:
        print(f"support-kpi-simulator: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if type(exc).__module__.startswith("aiokafka"):
            print(f"support-kpi-simulator: Kafka error: {exc}", file=sys.stderr)
            return 1
        raise
    finally:
        if progress is not None:
            progress.finish()
    if interrupted:
        print("support-kpi-simulator: interrupted, flushed and stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
