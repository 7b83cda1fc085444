"""The Faust app and its topics, built from the settings (no stage logic here).

- :func:`build_app`: the ``faust.App`` of one worker process (broker, SASL/SSL credentials,
  store, web server with only ``/`` and ``/metrics``, the committing transport);
- :func:`credentials`: the one place the Kafka security settings become Faust credentials;
- :func:`raw_topic`: every topic the worker reads or writes carries raw bytes (the stages
  encode and decode themselves); :func:`internal_topic` for the ones the worker always creates;
- :func:`declare_on_start`: topics the worker only writes to, declared when the app starts.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from streams.consumer import KpiTransport
from streams.settings import Settings


def credentials(settings: Settings) -> Any:
    """Faust broker credentials for ``SUPPORT_KAFKA_SECURITY_PROTOCOL`` (None: PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        context = ssl.create_default_context(cafile=cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def build_app(
    settings: Settings,
    before_commit: Callable[[], Awaitable[None]],
    commit_interval_now: Callable[[], float] | None = None,
) -> faust.App:
    """The app of one worker; ``before_commit`` runs just before input offsets are committed,
    ``commit_interval_now`` says how often periodic commits may happen at present (seconds;
    at least Faust's ``broker_commit_interval``)."""
    s = settings
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{server.strip()}" for server in s.kafka_bootstrap.split(",")],
        broker_credentials=credentials(s),
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=min(3.0, s.session_timeout / 3),
        store=s.store,
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        topic_allow_declare=s.create_topics,
        key_serializer="raw",
        value_serializer="raw",
        web_port=s.web_port,
        web_bind=s.web_host,
        web_in_thread=False,
        # Serve /metrics (and Faust's plain "/" status page) only: the built-in views list
        # the tables and read their keys (/table), show the cluster topology (/router),
        # sensor statistics and the assignment (/, /assignment) or the service graph.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        env={},  # Faust's own APP_* variables (APP_WEB_TABLES_ENABLED=1 ...) are ignored
        # Faust checks that the changelog offsets a table has applied are <= the topic's
        # end. With the in-memory store the check only runs across rebalances inside one
        # process, where a broker whose end offset lags its last batch (Tansu) makes it
        # fail and the whole worker exit. Lost broker data is reported by the lag check
        # (support_offset_resets_total) instead. RocksDB keeps the check (local files
        # ahead of the changelog must stop the worker).
        recovery_consistency_check=not s.store.startswith("memory"),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        autodiscover=False,
        table_standby_replicas=0,
    )
    app.transport = KpiTransport(
        app.conf.broker_consumer,
        app,
        fetch_max_wait_ms=max(1, round(s.fetch_max_wait * 1000)),
        before_commit=before_commit,
        commit_interval_now=commit_interval_now,
    )
    return app


def raw_topic(
    app: faust.App, *names: str, partitions: int, internal: bool, compacting: bool = False
) -> faust.TopicT:
    """A topic (or several co-partitioned ones) of raw bytes; ``internal``: the worker
    creates it with ``partitions`` partitions (and compaction when ``compacting``)."""
    extra: dict[str, Any] = {"compacting": True} if compacting else {}
    return app.topic(
        *names,
        partitions=partitions,
        internal=internal,
        key_serializer="raw",
        value_serializer="raw",
        **extra,
    )


def internal_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of raw bytes that only the worker uses (partials, checkpoints): always created."""
    return raw_topic(app, name, partitions=partitions, internal=True)


def declare_on_start(app: faust.App, topics: Callable[[], list[faust.TopicT]]) -> None:
    """Declare ``topics()`` when the app starts. Agents declare the topics they read; the
    ones the worker only writes to get their configured partitions and compaction here."""

    async def declare_output_topics() -> None:
        for topic in topics():
            await topic.maybe_declare()

    app.task(declare_output_topics)


__all__ = ["build_app", "credentials", "declare_on_start", "internal_topic", "raw_topic"]
