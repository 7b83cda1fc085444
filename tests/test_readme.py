"""The README's metrics catalog and settings table tell the truth."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams import version
from streams.app import KpiWorker
from streams.core.customers import CustomerEngine, CustomerKpiStore, DictCustomerTable
from streams.core.partition import DictTicketStore, PartitionEngine
from streams.core.store import KpiStore
from streams.core.units import to_us
from streams.decoding import Rejection, decode
from streams.events import CustomerLifecycle
from streams.settings import Settings, load_settings
from streams.simulator import generate
from streams.version import revision

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def documented_metrics() -> set[str]:
    rows = [line for line in _section("Metrics catalog").splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([a-z0-9_]+)`", row).group(1) for row in rows}  # type: ignore[union-attr]


def _full_page() -> bytes:
    """The /metrics page of a worker that has seen traffic of every kind (with business
    calendars, so that the ``_business`` series exist)."""
    calendars = README.parent / "deploy" / "calendars.toml"
    settings = load_settings(kafka_bootstrap="127.0.0.1:1", calendars_file=calendars)
    worker = KpiWorker(settings)
    config = settings.engine_config()
    store = KpiStore(config)
    engine = PartitionEngine(0, DictTicketStore(), config)
    customers = CustomerEngine(0, DictCustomerTable(), settings.customer_config())
    start = time.time() - 3 * 3600
    for record in generate("churn", seed=3, start=start, duration_seconds=3 * 3600, rate=300):
        event = decode(record.topic, record.value, now=time.time(), future_tolerance_seconds=300)
        if isinstance(event, Rejection):
            continue
        if isinstance(event, CustomerLifecycle):
            customers.process(event, max(customers.stream_time_us, to_us(event.occurred_at)))
            continue
        result = engine.process(event, max(engine.stream_time_us, to_us(event.occurred_at)))
        worker.cumulative.count(result.derived)
    for update in engine.flush():
        store.apply(update)
    worker.kpi_stores[0] = store
    worker.customers.store = CustomerKpiStore(settings.customer_config())
    for partial in customers.flush():
        worker.customers.store.apply(partial)
    setattr(worker, "ready", lambda: True)  # noqa: B010  # as if recovered and caught up
    return generate_latest(worker.registry)


def exported_metrics() -> set[str]:
    """Every metric family a worker exports once it has seen traffic of every kind."""
    names = set()
    for family in text_string_to_metric_families(_full_page().decode()):
        sample_names = {sample.name for sample in family.samples}
        names |= sample_names if family.type == "counter" else {family.name}
        if family.type == "info":
            names = (names - {family.name}) | sample_names
    return {name for name in names if name.startswith("support_")}


def test_every_exported_metric_is_documented_and_every_documented_one_exported() -> None:
    documented = documented_metrics()
    exported = exported_metrics()
    assert exported - documented == set(), "exported but not in the README's catalog"
    assert documented - exported == set(), "in the README's catalog but never exported"


def test_every_setting_is_documented() -> None:
    table = _section("Settings")
    for name in Settings.model_fields:
        variable = f"SUPPORT_{name.upper()}"
        if name.startswith("topic_"):
            # Documented as a family: SUPPORT_TOPIC_TICKET_CREATED ... and the suffixes.
            suffix = name.removeprefix("topic_").upper()
            assert variable in table or f"`_{suffix}`" in table, variable
        else:
            assert variable in table, f"{variable} is not in the README's settings table"


def _catalog_rows() -> dict[str, list[str]]:
    rows = {}
    for line in _section("Metrics catalog").splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_help_texts_agree_with_the_catalog() -> None:
    """Ratios documented as able to exceed 1 say so in their HELP (and never claim 0-1);
    every other ratio says 0-1; percentile gauges say which percentile they are."""
    helps = {
        family.name: family.documentation
        for family in text_string_to_metric_families(_full_page().decode())
    }
    rows = _catalog_rows()
    assert "can exceed 1" in rows["support_escalation_ratio"][3]
    for name, cells in rows.items():
        if name not in helps:
            continue
        text = helps[name]
        assert text, name
        if "can exceed 1" in cells[3]:
            assert "exceed 1" in text, (name, text)
            assert "0-1" not in text, (name, text)
        elif cells[2] == "ratio":
            assert "(0-1)" in text, (name, text)
        if name.endswith("_p50_seconds"):
            assert "Median" in text, (name, text)
        if name.endswith("_p90_seconds"):
            assert "90th percentile" in text, (name, text)


def test_kpi_topic_names_are_the_gauges_without_prefix() -> None:
    schema = json.loads((README.parent / "schemas" / "support-kpis.schema.json").read_text())
    names = set(schema["properties"]["kpi"]["enum"])
    documented = documented_metrics()
    assert {"first_response_p50_seconds", "resolution_p90_seconds"} <= names
    for kpi in names:
        assert f"support_{kpi}" in documented, kpi


def test_build_info_carries_version_and_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILD_REVISION", "abc123def456")
    page = generate_latest(KpiWorker(load_settings(kafka_bootstrap="127.0.0.1:1")).registry)
    assert (
        f'support_build_info{{revision="abc123def456",version="{version.VERSION}"}} 1.0'
        in page.decode()
    )
    monkeypatch.delenv("BUILD_REVISION")
    assert revision() != ""  # a git checkout here: its commit, else "unknown"
