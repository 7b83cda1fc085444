"""The baseline of ``bench/bench_pipeline.py``: a bare Faust agent that only counts events.

One agent consumes the six input topics (raw bytes, no decoding) with the broker settings the
KPI worker uses (session timeout, heartbeat, offset reset, acks, memory store, web server in
the event loop); it keeps no state besides a counter. It serves ``/count`` on its web port::

    {"count": 1234, "first_at": ..., "last_at": ..., "assigned_at": ..., "probes": {key: t}}

``first_at`` / ``last_at`` are the wall-clock times (``time.time()``) of the first and latest
event received, ``assigned_at`` of the latest partition assignment, and ``probes`` the receive
time of every record whose key starts with ``probe`` (latency probes). It logs
``bare agent owns input partitions [...]`` on each assignment.

Settings by environment variables (the benchmark sets them)::

    BARE_BOOTSTRAP=127.0.0.1:9092 BARE_TOPICS=a,b,c BARE_APP_ID=bare BARE_PARTITIONS=4 \
    BARE_WEB_PORT=6067 BARE_SESSION_TIMEOUT=6 python bench/bare_faust_agent.py
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import faust

log = logging.getLogger("bare_agent")

PROBE_PREFIX = b"probe"


class Counter:
    """What the agent observed; served as JSON."""

    def __init__(self) -> None:
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.assigned_at: float | None = None
        self.probes: dict[str, float] = {}

    def saw(self, key: bytes | None) -> None:
        now = time.time()
        self.count += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        if key is not None and key.startswith(PROBE_PREFIX):
            self.probes[key.decode()] = now

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "assigned_at": self.assigned_at,
            "probes": self.probes,
        }


def build_app(env: dict[str, str]) -> tuple[faust.App, Counter]:
    session_timeout = float(env.get("BARE_SESSION_TIMEOUT", "6"))
    partitions = int(env.get("BARE_PARTITIONS", "4"))
    topics = [name for name in env["BARE_TOPICS"].split(",") if name]
    app = faust.App(
        env.get("BARE_APP_ID", "bare-agent"),
        broker=[f"kafka://{server.strip()}" for server in env["BARE_BOOTSTRAP"].split(",")],
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=min(3.0, session_timeout / 3),
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        key_serializer="raw",
        value_serializer="raw",
        web_port=int(env.get("BARE_WEB_PORT", "6067")),
        web_bind="127.0.0.1",
        web_in_thread=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
        table_standby_replicas=0,
    )
    counter = Counter()
    inputs = app.topic(*topics, partitions=partitions, key_serializer="raw", value_serializer="raw")

    async def count_events(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            counter.saw(event.key)

    app.agent(inputs, name="count-events")(count_events)

    async def count_page(web: Any, request: Any) -> Any:
        return web.json(counter.as_json())

    app.page("/count")(count_page)

    def on_assigned(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        assigned = args[0] if args else kwargs.get("assigned", set())
        counter.assigned_at = time.time()
        owned = sorted({tp.partition for tp in assigned if tp.topic in topics})
        log.info("bare agent owns input partitions %s", owned)

    app.on_partitions_assigned.connect(on_assigned)
    return app, counter


def main() -> None:
    app, _ = build_app(dict(os.environ))
    faust.Worker(app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
