"""The worker's outputs end to end (SPEC §2, §5), on the real embedded broker with real
worker processes:

- the compacted KPI topic ``support-kpis``: keys, schema, latest values equal to the
  brute-force reference, compaction, idempotent republish after ``kill -9``;
- the dead-letter topic ``support-events-dlq``: every bad record once, with its reason,
  original bytes and source position; the valid records around it still processed;
- label safety on ``/metrics`` and the KPI topic: a capped, sanitized team label under a
  flood of hostile team names, and no customer, agent or ticket id anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import pytest
from helpers.pipeline import (
    INPUT_TOPICS,
    Deployment,
    TopicRecord,
    WorkerProcess,
    assert_kpis_converge,
    counter_total,
    decoded_events,
    expected_kpis,
    latest_by_key,
    parse_metrics,
    produce_located,
    read_topic,
    scrape_all,
    simulated,
    wait_until,
)
from helpers.reference import differences, format_differences
from helpers.schemas import validator

from streams.core.kpis import ALL, OTHER, UNKNOWN, KpiKey
from streams.core.labels import team_label
from streams.decoding import REJECTION_REASONS
from streams.events import Event, SurveySubmitted, TicketCreated, TicketEscalated
from streams.records import DEFAULT_MAX_ORIGINAL_BYTES
from streams.simulation.model import SimRecord
from streams_dev.broker import create_topics
from streams_dev.metrics import samples

pytestmark = pytest.mark.integration

KPI_SCHEMA = validator("support-kpis")
DLQ_SCHEMA = validator("support-events-dlq")
PUBLISH_INTERVAL = 1.0  # the harness sets SUPPORT_PUBLISH_INTERVAL=1s
MAX_TEAMS = 20
MAX_LABEL_LENGTH = 64
KPI_LABELS = ("window", "team", "channel", "priority")


# -- helpers ----------------------------------------------------------------------------------


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    async def describe() -> Any:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()

    config: dict[str, str] = {}
    for response in asyncio.run(describe()):
        for resource in response.resources:
            assert resource[0] == 0, f"describe_configs({topic}) failed: {resource}"
            for entry in resource[4]:
                config[entry[0]] = entry[1]
    return config


def check_kpi_records(records: Sequence[TopicRecord]) -> dict[KpiKey, float | None]:
    """Validate every KPI record (schema, key matches value); return the latest values."""
    problems: list[str] = []
    for record in records:
        where = f"{record.partition}@{record.offset}"
        if record.value is None:
            continue  # a tombstone: the key no longer exists (e.g. a team folded into "other")
        document = json.loads(record.value)
        for error in KPI_SCHEMA.iter_errors(document):
            problems.append(f"{where}: {error.message} at {list(error.absolute_path)}")
        dims = document.get("dimensions", {})
        key = "|".join(
            str(x)
            for x in (
                document.get("kpi"),
                document.get("window"),
                dims.get("team"),
                dims.get("channel"),
                dims.get("priority"),
            )
        )
        if record.key != key.encode():
            problems.append(f"{where}: key {record.key!r} but the record says {key!r}")
    assert not problems, f"{len(problems)} bad KPI record(s):\n" + "\n".join(problems[:30])
    values: dict[KpiKey, float | None] = {}
    for raw_key, raw_value in latest_by_key(records).items():
        parts = raw_key.decode().split("|")
        assert len(parts) == 5, f"key {raw_key!r} is not kpi|window|team|channel|priority"
        if raw_value is None:
            continue  # deleted
        value = json.loads(raw_value)["value"]
        values[KpiKey(*parts)] = None if value is None else float(value)
    return values


def kpi_topic_values(
    deployment: Deployment,
) -> tuple[list[TopicRecord], dict[KpiKey, float | None]]:
    records = read_topic(deployment.bootstrap, deployment.topic("support-kpis"))
    return records, check_kpi_records(records)


def wait_for_topic_to_match(
    deployment: Deployment, expected: Mapping[KpiKey, float | None], timeout: float = 15.0
) -> tuple[list[TopicRecord], dict[KpiKey, float | None]]:
    """Re-read the KPI topic until its latest values equal ``expected``."""
    found: list[tuple[list[TopicRecord], dict[KpiKey, float | None]]] = []
    last = ["nothing read"]

    def matches() -> bool:
        records, values = kpi_topic_values(deployment)
        diffs = differences(values, expected)
        last[0] = format_differences(diffs, actual_name="support-kpis")
        found[:] = [(records, values)]
        return not diffs and bool(values)

    wait_until(matches, timeout, lambda: last[0], step=1.0)
    return found[0]


def assert_never_crashed(worker: WorkerProcess) -> None:
    assert worker.alive(), f"{worker.name} died; log:\n{worker.log_tail()}"
    assert "Crashed" not in worker.log(), f"{worker.name} crashed; log:\n{worker.log_tail()}"


# -- 1. the KPI topic -------------------------------------------------------------------------


def test_kpi_topic_records_compaction_and_idempotent_republish_after_kill_9(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """Every record on ``support-kpis`` is schema-valid and keyed
    ``kpi|window|team|channel|priority`` after its content; the worker declared the topic
    compacted; its latest values equal the reference, and stay so after ``kill -9`` and a
    restart whose republished records carry the same (reference) values."""
    deployment = Deployment(bootstrap_servers, unique_prefix)
    # Only the inputs: the worker must declare the KPI and dead-letter topics itself.
    asyncio.run(
        create_topics(
            bootstrap_servers,
            {deployment.topic(name): deployment.partitions for name in INPUT_TOPICS},
        )
    )
    records = simulated(seed=41, hours=1.0, duplicate_rate=0.02, out_of_order=0.05)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())

    first = WorkerProcess(deployment, "first").start()
    workers.append(first)
    first.wait_ready()
    deployment.produce(records)
    assert_kpis_converge(lambda: scrape_all([first]).values, expected)
    time.sleep(2.5 * PUBLISH_INTERVAL)
    before_records, before = wait_for_topic_to_match(deployment, expected)
    assert {k.kpi for k in before} >= {k.kpi for k in expected}, "a KPI is never published"
    config = topic_config(bootstrap_servers, deployment.topic("support-kpis"))
    assert config.get("cleanup.policy") == "compact", config

    first.kill()
    restarted_at = time.time()
    second = WorkerProcess(deployment, "second").start()
    workers.append(second)
    second.wait_ready(90)
    assert_kpis_converge(lambda: scrape_all([second]).values, expected)
    time.sleep(2.5 * PUBLISH_INTERVAL)
    after_records, after = wait_for_topic_to_match(deployment, expected)

    seen = {(r.partition, r.offset) for r in before_records}
    republished: dict[KpiKey, float | None] = {}
    for record in after_records:
        if (record.partition, record.offset) in seen or record.value is None:
            continue
        document = json.loads(record.value)
        computed_at = datetime.fromisoformat(document["computed_at"]).timestamp()
        assert computed_at >= restarted_at - 1, f"{record.key!r} computed before the restart"
        assert record.key is not None
        value = document["value"]
        republished[KpiKey(*record.key.decode().split("|"))] = (
            None if value is None else float(value)
        )
    assert republished, "the restarted worker published nothing"
    # Republishing is idempotent: what the restarted worker sends is the reference value.
    diffs = differences(republished, {k: v for k, v in expected.items() if k in republished})
    assert not diffs, format_differences(diffs, actual_name="republished")
    assert set(after) == set(before), set(after) ^ set(before)
    assert_never_crashed(second)


def test_kpi_topic_catches_up_after_a_small_last_update(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """Reading ``support-kpis`` from the beginning gives every KPI's reference value, also
    after a small second wave of events (the last publish is then a handful of records)."""
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    records = simulated(seed=43, hours=0.5)
    cut = len(records) - 5
    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    for start, end in ((0, cut), (cut, len(records))):
        deployment.produce(records[start:end])
        expected = expected_kpis(decoded_events(records[:end]), deployment.engine_config())
        assert_kpis_converge(lambda: scrape_all([worker]).values, expected)
        # Publishes every PUBLISH_INTERVAL: the topic gets there within a few of them.
        wait_for_topic_to_match(deployment, expected, timeout=10 + 2.5 * PUBLISH_INTERVAL)
    assert_never_crashed(worker)


# -- 2. the dead-letter topic -----------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad input record and what the worker must say about it."""

    topic: str  # default (logical) topic name
    key: bytes | None
    value: bytes | None
    reason: str
    secrets: tuple[str, ...] = ()  # payload content that must not show in `detail`/`field`


def _json(document: Any) -> bytes:
    return msgspec.json.encode(document)


def bad_corpus(records: Sequence[SimRecord]) -> tuple[list[Bad], list[Bad]]:
    """(bad records to interleave anywhere, before_created records with their ticket ids).

    Built from valid simulator events so that only the named defect is wrong.
    """
    templates: dict[str, dict[str, Any]] = {}
    for record in records:
        templates.setdefault(record.topic, json.loads(record.value))
    created = dict(templates["ticket-created"])
    reply = dict(templates["ticket-replied"])
    status = dict(templates["ticket-status-changed"])
    escalated = dict(templates["ticket-escalated"])
    survey = dict(templates["survey-submitted"])
    far_future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 10 * 86400))

    def variant(base: dict[str, Any], n: int, **changes: Any) -> dict[str, Any]:
        doc = dict(base, event_id=f"bad-event-{n:03d}")
        if "ticket_id" in doc:
            doc["ticket_id"] = f"T-secret-{n:03d}"
        if "customer_id" in doc:
            doc["customer_id"] = f"cus-secret-{n:03d}"
        for name, value in changes.items():
            if value is _DROP:
                del doc[name]
            else:
                doc[name] = value
        return doc

    def bad(topic: str, doc: dict[str, Any] | None, value: bytes, reason: str) -> Bad:
        secrets: tuple[str, ...] = ()
        key = None
        if doc is not None:
            secrets = tuple(
                str(doc[k]) for k in ("event_id", "ticket_id", "customer_id") if k in doc
            )
            key = str(doc.get("ticket_id", doc.get("event_id"))).encode()
        return Bad(topic, key, value, reason, secrets)

    items: list[Bad] = []
    n = 0

    def add(topic: str, base: dict[str, Any], reason: str, **changes: Any) -> None:
        nonlocal n
        n += 1
        doc = variant(base, n, **changes)
        items.append(bad(topic, doc, _json(doc), reason))

    good = _json(variant(created, 0))
    items += [
        Bad("ticket-created", b"T-secret-m1", good[:-7], "malformed_json"),
        Bad("ticket-created", b"T-secret-m2", good[:-1] + b",}", "malformed_json"),
        Bad("ticket-replied", None, b"ticket T-secret-m3 replied", "malformed_json"),
        Bad("ticket-created", None, b"", "malformed_json"),  # an empty value
        Bad("ticket-status-changed", b"T-secret-m4", None, "malformed_json"),  # a tombstone
        Bad("ticket-created", None, _json([variant(created, 1)]), "not_an_object"),
        Bad("survey-submitted", None, b"42", "not_an_object"),
        Bad("ticket-created", None, good.replace(b"T-secret", b"T-\xff\xfe"), "invalid_utf8"),
        Bad(
            "ticket-replied",
            None,
            _json(variant(reply, 2)).replace(b"bad-event", b"bad\xc3\x28event"),
            "invalid_utf8",
        ),
    ]
    add("ticket-created", created, "wrong_type", ticket_id=48213)
    add("ticket-replied", reply, "wrong_type", public="false")
    add("ticket-escalated", escalated, "wrong_type", level="2")
    add("survey-submitted", survey, "wrong_type", score="9")
    add("ticket-created", created, "missing_field", customer_id=_DROP)
    add("ticket-status-changed", status, "missing_field", status=_DROP)
    add("ticket-replied", reply, "missing_field", occurred_at=_DROP)
    add("ticket-created", created, "unknown_enum", channel="fax")
    add("ticket-status-changed", status, "unknown_enum", status="deleted")
    add("survey-submitted", survey, "unknown_enum", kind="ces")
    add("ticket-created", created, "unsupported_schema_version", schema_version=2)
    add("ticket-created", created, "invalid_timestamp", occurred_at="2025-03-01T12:00:00")
    add("ticket-replied", reply, "invalid_timestamp", occurred_at="2025-03-01 12:00:00.000")
    add("ticket-created", created, "future_timestamp", occurred_at=far_future)
    add("survey-submitted", survey, "future_timestamp", occurred_at=far_future)
    add("survey-submitted", survey, "out_of_range", kind="nps", score=11)
    add("survey-submitted", survey, "out_of_range", kind="csat", score=7)
    add("ticket-escalated", escalated, "out_of_range", level=0)
    add("ticket-created", created, "oversized", notes="x" * 70_000)  # > 64 KiB, kept whole
    add("ticket-created", created, "oversized", notes="y" * 300_000)  # > the 256 KiB copy cap

    # "Negative durations": valid updates of real tickets, timed before their creation.
    creations = [json.loads(r.value) for r in records if r.topic == "ticket-created"]
    negatives: list[Bad] = []
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("ticket-replied", {"author_type": "agent", "agent_id": "agt-x-01", "public": True}),
        ("ticket-status-changed", {"status": "solved"}),
        ("ticket-replied", {"author_type": "agent", "public": True}),
        ("ticket-status-changed", {"status": "closed"}),
    ]
    for index, (topic, body) in enumerate(bodies):
        ticket = creations[len(creations) // 3 + 7 * index]
        created_at = _parse_time(ticket["occurred_at"])
        doc = {
            "event_id": f"bad-negative-{index}",
            "occurred_at": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_at - 600 - 60 * index)
            ),
            "schema_version": 1,
            "ticket_id": ticket["ticket_id"],
            **body,
        }
        negatives.append(Bad(topic, ticket["ticket_id"].encode(), _json(doc), "before_created", ()))
    return items, negatives


_DROP = object()


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_dead_letters_once_each_with_reason_and_original(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """A corpus of bad records interleaved with valid traffic: each lands on the DLQ once,
    with the right reason, its original bytes and source position; the rejected-events
    counter counts them; the valid events give the reference KPIs; the worker never crashes."""
    deployment = Deployment(bootstrap_servers, unique_prefix)
    deployment.create_topics()
    records = simulated(seed=53, hours=1.0, out_of_order=0.05)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    anywhere, negatives = bad_corpus(records)

    # Interleave: spread the corpus evenly through the valid stream. Two before_created
    # records go before their ticket is even created (held, then rejected), two after.
    stream: list[tuple[str, bytes | None, bytes | None, Bad | None]] = [
        (r.topic, r.key, r.value, None) for r in records
    ]
    step = len(stream) // (len(anywhere) + 1)
    for i, item in enumerate(anywhere):
        stream.insert((i + 1) * step + i, (item.topic, item.key, item.value, item))
    for i, item in enumerate(negatives):
        assert item.key is not None
        created_at = next(
            j
            for j, (topic, key, _, _) in enumerate(stream)
            if topic == "ticket-created" and key == item.key
        )
        stream.insert(created_at if i % 2 == 0 else created_at + 5, (*_as_item(item), item))

    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    positions = produce_located(
        bootstrap_servers, [(deployment.topic(t), k, v) for t, k, v, _ in stream]
    )
    wanted: dict[bytes, tuple[Bad, int, int]] = {}
    for (_, _, _, bad), (partition, offset) in zip(stream, positions, strict=True):
        if bad is not None:
            key = f"{deployment.topic(bad.topic)}|{partition}|{offset}".encode()
            wanted[key] = (bad, partition, offset)
    assert len(wanted) == len(anywhere) + len(negatives)

    assert_kpis_converge(lambda: scrape_all([worker]).values, expected)

    dlq_topic = deployment.topic("support-events-dlq")
    letters: list[TopicRecord] = []

    def all_dead_lettered() -> bool:
        letters[:] = read_topic(bootstrap_servers, dlq_topic)
        return {r.key for r in letters} >= set(wanted)

    wait_until(
        all_dead_lettered,
        30,
        lambda: (
            "missing dead letters: "
            + ", ".join(
                f"{k!r} ({wanted[k][0].reason})" for k in set(wanted) - {r.key for r in letters}
            )
        ),
    )

    by_key: dict[bytes, list[dict[str, Any]]] = defaultdict(list)
    problems: list[str] = []
    for letter in letters:
        assert letter.key is not None
        assert letter.value is not None
        document = json.loads(letter.value)
        by_key[letter.key].append(document)
        for error in DLQ_SCHEMA.iter_errors(document):
            problems.append(f"{letter.key!r}: {error.message} at {list(error.absolute_path)}")
    unexpected = set(by_key) - set(wanted)
    assert not unexpected, f"valid records dead-lettered: {sorted(unexpected)[:10]}"
    for key, (item, partition, offset) in wanted.items():
        copies = by_key[key]
        first = copies[0]
        label = f"{key.decode()} ({item.reason})"
        # At-least-once delivery may repeat a letter, but a repeat must say the same thing.
        stable = {json.dumps({k: v for k, v in c.items() if k != "rejected_at"}) for c in copies}
        if len(stable) != 1:
            problems.append(f"{label}: {len(copies)} differing copies")
        if first["reason"] != item.reason:
            problems.append(f"{label}: reason {first['reason']!r}, field {first['field']!r}")
        source = first["source"]
        if (source["topic"], source["partition"], source["offset"]) != (
            deployment.topic(item.topic),
            partition,
            offset,
        ):
            problems.append(f"{label}: source {source}")
        original = item.value or b""
        copy = base64.b64decode(first["original_base64"])
        if first["original_size"] != len(original):
            problems.append(f"{label}: original_size {first['original_size']} != {len(original)}")
        if copy != original[:DEFAULT_MAX_ORIGINAL_BYTES]:
            problems.append(f"{label}: original bytes differ ({len(copy)} bytes)")
        told = f"{first['detail']} {first['field']}"
        leaked = [s for s in item.secrets if s in told]
        if leaked:
            problems.append(f"{label}: detail/field repeat payload content {leaked}")
    assert not problems, f"{len(problems)} dead-letter problem(s):\n" + "\n".join(problems)
    repeats = {k: len(v) for k, v in by_key.items() if len(v) > 1}
    assert not repeats, f"dead-lettered more than once without a restart: {repeats}"

    scrape = scrape_all([worker])
    counted: Counter[tuple[str, str]] = Counter(
        (deployment.topic(item.topic), item.reason) for item, _, _ in wanted.values()
    )
    wrong = {}
    for kind in INPUT_TOPICS:
        topic = deployment.topic(kind)
        for reason in REJECTION_REASONS:
            got = counter_total(scrape, "support_events_rejected_total", topic=topic, reason=reason)
            if got != counted[(topic, reason)]:
                wrong[(kind, reason)] = (got, counted[(topic, reason)])
    assert not wrong, f"support_events_rejected_total (got, expected): {wrong}"
    processed = counter_total(scrape, "support_events_processed_total")
    assert len(records) <= processed <= len(records) + len(negatives), processed
    assert_never_crashed(worker)


def _as_item(item: Bad) -> tuple[str, bytes | None, bytes | None]:
    return item.topic, item.key, item.value


# -- 3. label safety --------------------------------------------------------------------------

HOSTILE_TEAMS: tuple[str, ...] = (
    'Quote "q" team',
    "single ' quote",
    "new\nline team",
    "carriage\rreturn",
    "pipe|team",
    "a|b|c|d",
    "tab\tteam",
    "back\\slash",
    'brace{team="x"}',
    "# HELP support_tickets_created fake",
    "nul\x00byte",
    "del\x7fchar",
    "c1\x85control",
    "line\u2028separator",
    "all",
    "ALL",
    "all ",
    "other",
    "Other",
    "unknown",
    "   ",
    " padded ",
    "x" * 128,
    '"|\n' * 42 + "zz",  # 128 characters, nearly all of them unsafe
    "Équipe Montréal",
    "support 🎧 team",
)
LONG_TEAM = "L" * 500  # longer than the event contract allows: rejected, never a label


def _team_sanitized(event: Event) -> Event:
    """The event with its team names as the worker labels them (for the reference)."""
    if isinstance(event, TicketCreated):
        return msgspec.structs.replace(event, team=team_label(event.team))
    if isinstance(event, TicketEscalated) and event.to_team is not None:
        return msgspec.structs.replace(event, to_team=team_label(event.to_team))
    if isinstance(event, SurveySubmitted) and event.team is not None:
        return msgspec.structs.replace(event, team=team_label(event.team))
    return event


def _private_strings(values: Iterable[bytes]) -> set[str]:
    """Customer, agent and ticket ids (and escalation reasons) in the produced events."""
    found: set[str] = set()
    for value in values:
        try:
            document = json.loads(value)
        except ValueError:
            continue
        if isinstance(document, dict):
            for name in ("ticket_id", "customer_id", "agent_id", "reason"):
                if isinstance(document.get(name), str):
                    found.add(document[name])
    return found


def _samples(text: str) -> list[tuple[str, dict[str, str]]]:
    return [(sample.name, sample.labels) for sample in samples(text)]


def _unsafe(value: str) -> bool:
    return any(c in '"|' or unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def test_team_labels_capped_sanitized_and_no_ids_in_outputs(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    """300 teams, hostile names among them, SUPPORT_MAX_TEAMS=20: the KPI gauges, and the
    cumulative series, show at most 20 team values besides all/other/unknown; label values
    are safe and short; no series is doubled; overall values are unaffected; no id reaches
    /metrics or the topic."""
    deployment = Deployment(
        bootstrap_servers, unique_prefix, env={"SUPPORT_MAX_TEAMS": str(MAX_TEAMS)}
    )
    deployment.create_topics()
    teams = [*HOSTILE_TEAMS, *(f"team-{i:03d}" for i in range(300 - len(HOSTILE_TEAMS)))]
    records = simulated(seed=67, hours=1.0, rate=900.0, teams=teams)
    template = json.loads(next(r.value for r in records if r.topic == "ticket-created"))
    too_long = [
        dict(template, event_id=f"long-{i}", ticket_id=f"T-long-{i}", team=LONG_TEAM)
        for i in range(3)
    ]
    config = deployment.engine_config()
    expected = expected_kpis([_team_sanitized(e) for e in decoded_events(records)], config)

    worker = WorkerProcess(deployment).start()
    workers.append(worker)
    worker.wait_ready()
    deployment.produce(records)
    deployment.produce_raw(
        "ticket-created", [(d["ticket_id"].encode(), _json(d)) for d in too_long]
    )
    overall = {k: v for k, v in expected.items() if k.team == ALL}
    assert_kpis_converge(
        lambda: {k: v for k, v in scrape_all([worker]).values.items() if k.team == ALL},
        overall,
    )
    wait_until(
        lambda: counter_total(scrape_all([worker]), "support_events_rejected_total") >= 3,
        20,
        lambda: "the over-long team names were not rejected",
    )
    text = worker.scrape()
    assert text is not None

    # Cap: at most MAX_TEAMS team values per metric (and in all metrics together).
    teams_by_metric: dict[str, set[str]] = defaultdict(set)
    series: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    unsafe: set[tuple[str, str, str]] = set()
    for name, labels in _samples(text):
        series[(name, tuple(sorted(labels.items())))] += 1
        if "team" in labels:
            teams_by_metric[name].add(labels["team"])
        for label, value in labels.items():
            too_long_label = label in KPI_LABELS and len(value) > MAX_LABEL_LENGTH
            if _unsafe(value) or too_long_label:
                unsafe.add((name, label, value))
    assert teams_by_metric, "no team label exported"
    reserved = {ALL, OTHER, UNKNOWN}
    over = {
        m: len(t - reserved) for m, t in teams_by_metric.items() if len(t - reserved) > MAX_TEAMS
    }
    assert not over, f"team values beyond the cap of {MAX_TEAMS}: {over}"
    # The gauges (busiest teams, stage 2) together, and the cumulative series (first come,
    # stage 1: a counter cannot change its team) together, stay within the cap.
    cumulative = {m for m in teams_by_metric if m.endswith(("_total", "_bucket", "_sum", "_count"))}
    for metrics in (cumulative, set(teams_by_metric) - cumulative):
        named = set[str]().union(*(teams_by_metric[m] for m in metrics)) - reserved
        assert len(named) <= MAX_TEAMS, sorted(named)
        assert any(OTHER in teams_by_metric[m] for m in metrics), f"no other in {metrics}"
    assert "support_tickets_created_total" in cumulative
    assert not unsafe, f"unsafe label values: {sorted(unsafe)[:10]}"
    doubled = [s for s, n in series.items() if n > 1]
    assert not doubled, f"series exported more than once: {doubled[:5]}"
    assert not parse_metrics([text]).duplicates

    # A kept team has its reference value; "other" holds exactly the folded teams' tickets.
    exported = parse_metrics([text]).values
    kept_teams = {k.team for k in exported} - {ALL, OTHER}
    kept = {k: v for k, v in exported.items() if k.team in kept_teams}
    diffs = differences(kept, {k: v for k, v in expected.items() if k.team in kept_teams})
    assert not diffs, format_differences(diffs, actual_name="exported")
    for window, _ in config.windows:
        folded = sum(
            v or 0.0
            for k, v in expected.items()
            if k.kpi == "tickets_created"
            and k.window == window
            and k.team not in kept_teams | {ALL}
            and k.channel == ALL
            and k.priority == ALL
        )
        other = exported.get(KpiKey("tickets_created", window, OTHER), 0.0)
        assert other == folded, f"tickets_created{{window={window},team=other}}"

    # No id and no free text anywhere in the outputs.
    time.sleep(2.5 * PUBLISH_INTERVAL)
    topic_records = read_topic(bootstrap_servers, deployment.topic("support-kpis"))
    latest = check_kpi_records(topic_records)
    latest_teams = {key.team for key in latest} - {ALL, OTHER, "unknown"}
    # Teams that fell out of the cap were tombstoned: the latest values respect the cap too.
    assert len(latest_teams) <= MAX_TEAMS, sorted(latest_teams)
    topic_teams = {
        json.loads(r.value)["dimensions"]["team"] for r in topic_records if r.value is not None
    }
    assert not [t for t in topic_teams if _unsafe(t) or len(t) > MAX_LABEL_LENGTH]
    topic_text = b"\n".join(
        (r.key or b"") + b" " + (r.value or b"") for r in topic_records
    ).decode()
    private = _private_strings([r.value for r in records] + [_json(d) for d in too_long])
    assert len(private) > 1000
    for where, body in (("/metrics", text), ("support-kpis", topic_text)):
        leaks = sorted(s for s in private if s in body)
        assert not leaks, f"{where} contains ids or free text: {leaks[:10]}"
        assert LONG_TEAM[:65] not in body
    assert_never_crashed(worker)
