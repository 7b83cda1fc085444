"""No poison pill (issue 8, SPEC §2): on the real broker, a real worker process gets a
5,000-level nested record and records that hit a deliberate fault in stage 1 and stage 2
(``tests/helpers/faulty_worker.py``). Each lands on ``support-events-dlq`` exactly once with its
reason, is counted, the worker never crashes, and the KPIs equal the reference."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from typing import Any

import pytest
from helpers.faulty_worker import FAULTY_TICKET_PREFIX
from helpers.pipeline import (
    Deployment,
    WorkerProcess,
    assert_kpis_converge,
    counter_total,
    decoded_events,
    expected_kpis,
    produce_located,
    read_topic,
    scrape_all,
    simulated,
    wait_until,
)
from helpers.schemas import validator

pytestmark = pytest.mark.integration

DEEP = ('{"a":' * 5000 + "1" + "}" * 5000).encode()  # ~30 KB, well under the size limit


def test_poison_records_dead_lettered_once_and_kpis_equal_reference(
    bootstrap_servers: str, unique_prefix: str, workers: list[WorkerProcess]
) -> None:
    deployment = Deployment(bootstrap_servers, unique_prefix, partitions=2)
    deployment.create_topics()
    records = simulated(seed=61, hours=0.5, out_of_order=0.05)
    expected = expected_kpis(decoded_events(records), deployment.engine_config())
    template = json.loads(next(r.value for r in records if r.topic == "ticket-created"))
    poison_id = f"{FAULTY_TICKET_PREFIX}T-secret-1"
    poison = json.dumps(dict(template, event_id="poison-event-1", ticket_id=poison_id)).encode()

    stream = [(deployment.topic(r.topic), r.key, r.value) for r in records]
    third = len(stream) // 3
    stream.insert(third, (deployment.topic("ticket-created"), b"deep", DEEP))
    stream.insert(2 * third, (deployment.topic("ticket-created"), poison_id.encode(), poison))

    worker = WorkerProcess(deployment, "faulty", module="helpers.faulty_worker").start()
    workers.append(worker)
    worker.wait_ready()
    positions = produce_located(bootstrap_servers, stream)
    created = deployment.topic("ticket-created")
    deep_at = positions[third]
    poison_at = positions[2 * third]
    wanted = {
        f"{created}|{deep_at[0]}|{deep_at[1]}".encode(): ("nesting_too_deep", DEEP),
        f"{created}|{poison_at[0]}|{poison_at[1]}".encode(): ("internal_error", poison),
    }

    assert_kpis_converge(lambda: scrape_all([worker]).values, expected)

    partials_topic = f"{deployment.prefix.replace('.', '-')}-kpi-partials"
    letters: dict[bytes, list[dict[str, Any]]] = defaultdict(list)

    def all_dead_lettered() -> bool:
        letters.clear()
        for record in read_topic(bootstrap_servers, deployment.topic("support-events-dlq")):
            assert record.key is not None
            assert record.value is not None
            letters[record.key].append(json.loads(record.value))
        stage2 = [k for k in letters if k.startswith(partials_topic.encode())]
        return set(wanted) <= set(letters) and len(stage2) == 1

    wait_until(all_dead_lettered, 30, lambda: f"dead letters: {sorted(letters)}")
    # Exactly once each, and nothing else (the simulator stream here has no bad records).
    assert {k: len(v) for k, v in letters.items()} == dict.fromkeys(letters, 1)
    assert len(letters) == 3, sorted(letters)
    for key, (reason, original) in wanted.items():
        (document,) = letters[key]
        assert not list(validator("support-events-dlq").iter_errors(document))
        assert document["reason"] == reason
        assert base64.b64decode(document["original_base64"]) == original
        assert "secret" not in json.dumps({k: document[k] for k in ("detail", "field")})
    (poisoned,) = letters[next(k for k, (r, _) in wanted.items() if r == "internal_error")]
    assert "InjectedFaultError" in poisoned["detail"]
    (stage2,) = next(v for k, v in letters.items() if k.startswith(partials_topic.encode()))
    assert stage2["reason"] == "internal_error"
    assert stage2["source"]["topic"] == partials_topic
    assert not list(validator("support-events-dlq").iter_errors(stage2))

    scrape = scrape_all([worker])
    rejected = "support_events_rejected_total"
    assert counter_total(scrape, rejected, topic=created, reason="nesting_too_deep") == 1
    assert counter_total(scrape, rejected, topic=created, reason="internal_error") == 1
    assert counter_total(scrape, rejected, topic=partials_topic, reason="internal_error") == 1
    errors = "support_internal_errors_total"
    assert counter_total(scrape, errors, stage="events") == 1
    assert counter_total(scrape, errors, stage="partials") == 1
    assert counter_total(scrape, errors, stage="publish") == 0

    time.sleep(1)  # the KPIs stay right after the contained errors
    assert_kpis_converge(lambda: scrape_all([worker]).values, expected, timeout=10)
    assert worker.alive(), worker.log_tail()
    log = worker.log()
    assert "Crashed" not in log, worker.log_tail()
    assert "RecursionError" not in log
    assert log.count("internal error InjectedFaultError") == 1  # rate-limited per type
    assert "T-secret" not in log
