"""The Faust app and its topics (streams/faust_app.py): credentials, raw topics."""

from __future__ import annotations

import ssl

import faust
import pytest

from streams.consumer import KpiConsumer
from streams.faust_app import build_app, credentials, internal_topic, raw_topic
from streams.settings import load_settings


async def nothing() -> None:
    return None


def test_plaintext_has_no_credentials() -> None:
    assert credentials(load_settings(kafka_security_protocol="PLAINTEXT")) is None


def test_ssl_without_sasl_is_an_ssl_context() -> None:
    found = credentials(load_settings(kafka_security_protocol="SSL"))
    assert isinstance(found, faust.SSLCredentials)
    assert isinstance(found.context, ssl.SSLContext)


@pytest.mark.parametrize(("protocol", "with_ssl"), [("SASL_SSL", True), ("SASL_PLAINTEXT", False)])
def test_sasl_carries_user_password_mechanism_and_ssl_only_when_asked(
    protocol: str, with_ssl: bool
) -> None:
    settings = load_settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="kpi",
        kafka_sasl_password="s3cret",
    )
    found = credentials(settings)
    assert isinstance(found, faust.SASLCredentials)
    assert (found.username, found.password) == ("kpi", "s3cret")
    assert found.mechanism.value == "SCRAM-SHA-512"
    assert isinstance(found.ssl_context, ssl.SSLContext) == with_ssl


def test_topics_carry_raw_bytes_with_the_requested_declaration() -> None:
    app = build_app(load_settings(kafka_bootstrap="127.0.0.1:1"), nothing)
    both = raw_topic(app, "a", "b", partitions=3, internal=False)
    assert list(both.topics) == ["a", "b"]
    kpis = raw_topic(app, "kpis", partitions=3, internal=True, compacting=True)
    partials = internal_topic(app, "partials", 5)
    assert (kpis.compacting, kpis.internal, kpis.partitions) == (True, True, 3)
    assert (partials.compacting, partials.internal, partials.partitions) == (None, True, 5)
    for topic in (both, kpis, partials):
        assert isinstance(topic, faust.Topic)
        assert topic.key_serializer == "raw"
        assert topic.value_serializer == "raw"


def test_periodic_commits_are_throttled_and_seldom_while_catching_up() -> None:
    catching_up = False

    def interval_now() -> float:
        return 10.0 if catching_up else 0.0

    settings = load_settings(kafka_bootstrap="127.0.0.1:1")
    consumer = build_app(settings, nothing, commit_interval_now=interval_now).consumer
    assert isinstance(consumer, KpiConsumer)
    assert consumer.commit_interval == 2.8  # Faust's broker_commit_interval
    due = consumer.periodic_commit_due
    assert due(100.0)
    assert not due(101.0)  # Faust's timer fired early (seen on a loaded machine)
    assert due(102.8)
    catching_up = True
    assert not due(105.6)  # a Faust interval later, but the backlog's interval is 10 s
    assert not due(111.0)
    assert due(112.8)
    catching_up = False
    assert due(115.6)  # caught up: Faust's interval again, at once
