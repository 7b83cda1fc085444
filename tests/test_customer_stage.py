"""The customer stage inside the worker, without a broker: ownership is by (topic, partition).

Faust's assignor hands partition n of every topic with the same partition count to one worker,
but the worker must not rely on it: partition 1 of ``customer-lifecycle`` and partition 1 of
``ticket-created`` (or of the two partials topics) are different things, and owning one never
means processing, exporting or reporting the other.
"""

from __future__ import annotations

import json

from faust.types import TP

from streams.app import KpiWorker
from streams.core.customers import CustomerEngine, CustomerKpiStore, DictCustomerTable
from streams.core.partition import DictTicketStore, PartitionEngine
from streams.settings import load_settings

NOW = "2026-12-01T10:00:00Z"


def worker() -> KpiWorker:
    return KpiWorker(load_settings(kafka_bootstrap="127.0.0.1:1", partitions=4, clock="stream"))


def lifecycle(customer: str, event_id: str) -> bytes:
    body = {
        "event_id": event_id,
        "occurred_at": NOW,
        "schema_version": 1,
        "customer_id": customer,
        "change": "activated",
        "segment": "pro",
    }
    return json.dumps(body).encode()


def created(ticket: str) -> bytes:
    body = {
        "event_id": f"c-{ticket}",
        "occurred_at": NOW,
        "schema_version": 1,
        "ticket_id": ticket,
        "customer_id": "x",
        "team": "Billing",
        "channel": "email",
        "priority": "normal",
    }
    return json.dumps(body).encode()


def test_a_customer_partition_is_processed_only_by_its_customer_owner() -> None:
    w = worker()
    customer_topic = w.customers.topic
    tickets = DictTicketStore()
    w.engines[1] = PartitionEngine(1, tickets, w.config)  # ticket partition 1 is ours
    table = DictCustomerTable()
    w.customers.engines[2] = CustomerEngine(2, table, w.customers.config)  # customer partition 2

    # Customer partition 1 belongs to another worker, although ticket partition 1 is ours.
    assert w._handle_input(customer_topic, 1, 0, lifecycle("a", "e1")) == []
    assert table.data == {}
    assert tickets.data == {}
    assert (customer_topic, 1) not in w._positions
    # Ticket partition 2 belongs to another worker, although customer partition 2 is ours.
    assert w._handle_input("ticket-created", 2, 0, created("T1")) == []
    assert tickets.data == {}

    assert w._handle_input(customer_topic, 2, 0, lifecycle("b", "e2")) == []
    assert set(table.data) == {"b"}
    assert table.data["b"].partition == 2
    assert w._handle_input("ticket-created", 1, 0, created("T2")) == []
    assert set(tickets.data) == {"T2"}
    assert w._positions == {(customer_topic, 2): 1, ("ticket-created", 1): 1}


def test_stage_2_ownership_is_by_the_customer_partials_topic() -> None:
    w = worker()
    stage2 = w.customers.stage2_partition
    kpi_partials = w.partials.get_topic_name()
    customer_partials = w.customers.partials_topic
    w.customers._assigned({TP(kpi_partials, stage2), TP(w.customers.topic, stage2)})
    assert w.customers.store is None
    assert list(w.customers.readings()) == []
    assert w.customers.owns_position(customer_partials, stage2) is False

    w.customers._assigned({TP(customer_partials, stage2)})
    assert isinstance(w.customers.store, CustomerKpiStore)
    assert w.customers.owns_position(customer_partials, stage2) is True
    assert w.customers.owns_position(kpi_partials, stage2) is None  # not the stage's topic
    # A partial for another partition of the topic is never applied.
    w.customers.apply_partial((stage2 + 1) % 4, b"not even msgpack")


def test_the_worker_is_not_ready_while_the_customer_stage_recovers() -> None:
    w = worker()
    w._recovering = False
    w.customers.recovering = True
    assert not w.ready()
    assert list(w.customers.current_readings()) == []
    w.customers.recovering = False
    assert w.customers.ready()  # nothing owned: nothing to wait for
    store = w.customers.store = CustomerKpiStore(w.customers.config)
    assert not w.customers.ready(), "stage 2 without every source's snapshot"
    store.sources = {p: (True, True) for p in range(4)}
    assert not w.customers.ready(), "the lag of the customer partials is not known yet"
