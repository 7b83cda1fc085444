"""The embedded broker starts, answers Kafka requests, creates topics, and cleans up."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams_dev.broker import (
    SHORT_SESSION_TIMEOUT_SECONDS,
    BrokerStartError,
    EmbeddedBroker,
    create_topics,
)
from streams_dev.processes import free_port

MakeTopics = Callable[..., dict[str, str]]  # the ``make_topics`` fixture
REPO_ROOT = Path(__file__).resolve().parents[1]


def process_running(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def wait_until_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_running(pid):
            return True
        time.sleep(0.05)
    return False


async def _admin_call(bootstrap: str, call: str, *args: Any) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await getattr(admin, call)(*args)
    finally:
        await admin.close()


def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    described: list[dict[str, Any]] = asyncio.run(_admin_call(bootstrap, "describe_topics", topics))
    return {t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    responses = asyncio.run(
        _admin_call(
            bootstrap, "describe_configs", [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
    )
    config: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            assert resource[0] == 0, resource  # error_code
            for entry in resource[4]:  # config_entries
                config[entry[0]] = entry[1]
    return config


# --- the session broker --------------------------------------------------------------


def test_broker_answers_metadata(broker: EmbeddedBroker, bootstrap_servers: str) -> None:
    assert broker.running
    assert bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    assert broker.startup_seconds is not None
    cluster = asyncio.run(_admin_call(bootstrap_servers, "describe_cluster"))
    advertised = [(b["host"], b["port"]) for b in cluster["brokers"]]
    assert advertised == [("127.0.0.1", broker.port)]


def test_create_topics_with_partition_counts(
    bootstrap_servers: str, unique_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    wanted = {f"{unique_prefix}.one": 1, f"{unique_prefix}.three": 3, f"{unique_prefix}.six": 6}
    asyncio.run(create_topics(bootstrap_servers, wanted))
    assert partition_counts(bootstrap_servers, list(wanted)) == wanted

    # idempotent: again, mixed with a new topic, and with a different count for one
    more = {**wanted, f"{unique_prefix}.new": 2}
    with caplog.at_level(logging.WARNING, logger="streams_dev.broker"):
        asyncio.run(create_topics(bootstrap_servers, more))
        asyncio.run(create_topics(bootstrap_servers, {f"{unique_prefix}.one": 5}))
    assert partition_counts(bootstrap_servers, list(more)) == more
    assert f"{unique_prefix}.one already exists with 1 partitions (wanted 5)" in caplog.text


def test_create_topics_validates_arguments(bootstrap_servers: str) -> None:
    with pytest.raises(ValueError, match="compacted topics not in topics"):
        asyncio.run(create_topics(bootstrap_servers, {"a": 1}, compacted=["b"]))
    with pytest.raises(ValueError, match="invalid topic"):
        asyncio.run(create_topics(bootstrap_servers, {"a": 0}))
    asyncio.run(create_topics(bootstrap_servers, {}))  # nothing to do is fine


def test_compacted_topic(bootstrap_servers: str, make_topics: MakeTopics) -> None:
    names = make_topics({"kpis": 2, "events": 2}, compacted=["kpis"])
    assert partition_counts(bootstrap_servers, list(names.values())) == {
        names["kpis"]: 2,
        names["events"]: 2,
    }
    assert topic_config(bootstrap_servers, names["kpis"]).get("cleanup.policy") == "compact"
    assert topic_config(bootstrap_servers, names["events"]).get("cleanup.policy") != "compact"


def test_produce_consume_round_trip(
    bootstrap_servers: str, make_topics: MakeTopics, unique_prefix: str
) -> None:
    topic = make_topics({"events": 3})["events"]
    sent = [(f"ticket-{i % 5}".encode(), f"event-{i}".encode()) for i in range(30)]

    async def run() -> list[tuple[int, bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
        await producer.start()
        try:
            for key, value in sent:
                await producer.send_and_wait(topic, value=value, key=key)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            group_id=f"{unique_prefix}-group",
            auto_offset_reset="earliest",
            session_timeout_ms=int(SHORT_SESSION_TIMEOUT_SECONDS * 1000),
            heartbeat_interval_ms=1000,
        )
        await consumer.start()
        received: list[tuple[int, bytes, bytes]] = []
        try:
            deadline = time.monotonic() + 30
            while len(received) < len(sent) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    received += [(r.partition, r.key, r.value) for r in records]
        finally:
            await consumer.stop()
        return received

    received = asyncio.run(run())
    assert sorted((k, v) for _, k, v in received) == sorted(sent)
    partitions_by_key: dict[bytes, set[int]] = {}
    for partition, key, _ in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in partitions_by_key.values())  # keyed: one partition each
    assert {p for ps in partitions_by_key.values() for p in ps} <= {0, 1, 2}
    # per-key order is kept
    for key in partitions_by_key:
        assert [v for _, k, v in received if k == key] == [v for k, v in sent if k == key]


# --- lifecycle (own brokers) -----------------------------------------------------------


def test_stop_leaves_no_process() -> None:
    broker = EmbeddedBroker()
    broker.start()
    pid = broker.pid
    assert pid is not None
    assert process_running(pid)
    broker.stop()
    assert not process_running(pid)
    assert not broker.running
    broker.stop()  # idempotent


def test_stop_with_open_client_connection() -> None:
    """Tansu drains open connections for ~5 s on SIGTERM; stop() escalates to SIGKILL."""
    broker = EmbeddedBroker(stop_timeout=0.5).start()
    pid = broker.pid
    assert pid is not None
    with socket.create_connection((broker.host, broker.port)):
        started = time.monotonic()
        broker.stop()
        took = time.monotonic() - started
    assert not process_running(pid)
    assert took < 3.0


def test_context_manager_stops_on_exception() -> None:
    broker = EmbeddedBroker()

    def use_and_fail() -> None:
        with broker:
            assert broker.running
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_and_fail()
    assert broker.pid is not None
    assert not process_running(broker.pid)


def test_async_context_manager_inside_event_loop() -> None:
    async def run() -> int:
        async with EmbeddedBroker() as broker:
            assert broker.pid is not None
            await create_topics(broker.bootstrap_servers, {"t": 2})
            counts = await _admin_call(broker.bootstrap_servers, "describe_topics", ["t"])
            assert len(counts[0]["partitions"]) == 2
            return broker.pid

    pid = asyncio.run(run())
    assert not process_running(pid)


def test_start_failure_is_loud(broker: EmbeddedBroker) -> None:
    # Tansu itself would not fail on a taken port (it panics, exits 0 later): we must
    taken = EmbeddedBroker(port=broker.port, start_timeout=10)
    with pytest.raises(BrokerStartError, match="Address already in use"):
        taken.start()
    assert not taken.running
    assert taken.pid is None

    # a broker that dies during start-up: the error carries its output
    dying = EmbeddedBroker(binary="/bin/false", start_timeout=10)
    with pytest.raises(BrokerStartError, match="exited with code 1") as info:
        dying.start()
    assert "broker output" in str(info.value)

    with pytest.raises(BrokerStartError, match="cannot run the Tansu binary"):
        EmbeddedBroker(binary="/nonexistent/tansu").start()


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_cli_runs_until_interrupted(inherited: signal.Handlers) -> None:
    """Ctrl-C (SIGINT) stops it, also when it inherits SIGINT ignored (a background job of
    a script, e.g. a ``make test`` run with ``&``)."""
    port = free_port()
    cli = subprocess.Popen(
        [sys.executable, "-m", "streams_dev.broker", "--port", str(port), "--topic", "x:2:compact"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    try:
        assert cli.stdout is not None
        line = cli.stdout.readline()
        match = re.search(r"ready at 127\.0\.0\.1:(\d+) \(pid (\d+)", line)
        assert match, (line, cli.stderr.read() if cli.stderr else "")
        assert int(match.group(1)) == port
        broker_pid = int(match.group(2))
        assert partition_counts(f"127.0.0.1:{port}", ["x"]) == {"x": 2}
        assert topic_config(f"127.0.0.1:{port}", "x")["cleanup.policy"] == "compact"
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=15) == 0
        assert not process_running(broker_pid)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_broker_dies_with_killed_parent() -> None:
    """Even a SIGKILLed parent (no atexit) leaves no broker behind (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signal is Linux-only")
    script = (
        "import sys, time\n"
        "from streams_dev.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert process_running(broker_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_until_gone(broker_pid), "broker survived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
