"""KPI publisher: publish on change, tombstone vanished keys, re-publish after a rebalance."""

from __future__ import annotations

import json
import math

from streams.core.kpis import KpiKey
from streams.core.merge import KpiReading
from streams.outputs.publisher import KpiPublisher

NOW = 1_795_000_000.0
START, END = 1_794_996_400_000_000, 1_795_000_000_000_000


def reading(kpi: str, team: str, value: float | None, sample: int) -> KpiReading:
    return KpiReading(KpiKey(kpi, "1h", team), value, sample, START, END)


def test_publishes_a_value_once_until_it_changes() -> None:
    publisher = KpiPublisher()
    first = publisher.changes([reading("tickets_created", "all", 3.0, 3)], NOW)
    assert [key for key, _ in first] == [b"tickets_created|1h|all|all|all"]
    value = first[0][1]
    assert value is not None
    record = json.loads(value)
    assert record["value"] == 3.0
    assert record["sample_size"] == 3
    assert record["dimensions"] == {"team": "all", "channel": "all", "priority": "all"}
    assert publisher.changes([reading("tickets_created", "all", 3.0, 3)], NOW + 5) == []
    again = publisher.changes([reading("tickets_created", "all", 4.0, 4)], NOW + 10)
    assert len(again) == 1


def test_a_ratio_without_sample_is_published_as_null() -> None:
    publisher = KpiPublisher()
    [(_key, value)] = publisher.changes([reading("escalation_ratio", "all", None, 0)], NOW)
    assert value is not None
    assert json.loads(value)["value"] is None


def test_a_vanished_key_is_tombstoned_once() -> None:
    publisher = KpiPublisher()
    publisher.changes(
        [reading("tickets_created", "Billing", 1.0, 1), reading("tickets_created", "all", 1.0, 1)],
        NOW,
    )
    # Billing was folded into "other" by the team cap: its key must not keep a stale value.
    out = publisher.changes(
        [reading("tickets_created", "other", 1.0, 1), reading("tickets_created", "all", 1.0, 1)],
        NOW + 5,
    )
    assert (b"tickets_created|1h|Billing|all|all", None) in out
    assert any(key == b"tickets_created|1h|other|all|all" and v for key, v in out)
    assert publisher.changes([reading("tickets_created", "other", 1.0, 1)], NOW + 10) == [
        (b"tickets_created|1h|all|all|all", None)
    ]


def test_forget_republishes_everything_without_tombstones() -> None:
    publisher = KpiPublisher()
    readings = [reading("tickets_created", "all", 2.0, 2)]
    publisher.changes(readings, NOW)
    publisher.forget()  # rebalance: the keys this worker lost are its new owner's to publish
    assert [value is not None for _, value in publisher.changes(readings, NOW + 5)] == [True]
    publisher.forget()
    assert publisher.changes([], NOW + 10) == []


def test_a_value_the_schema_forbids_is_skipped_not_raised() -> None:
    publisher = KpiPublisher()
    out = publisher.changes(
        [
            reading("csat_satisfied_ratio", "all", math.nan, 1),
            reading("tickets_created", "all", 1.0, 1),
        ],
        NOW,
    )
    assert [key for key, _ in out] == [b"tickets_created|1h|all|all|all"]
