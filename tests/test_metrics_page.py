"""``streams_dev.metrics``: reading a ``/metrics`` page (demo, tests, benchmarks)."""

from __future__ import annotations

from streams_dev.metrics import OVERALL, key, samples, series, total

PAGE = """\
# HELP support_events_processed_total Valid events processed.
# TYPE support_events_processed_total counter
support_events_processed_total{topic="ticket-created"} 7.0
support_events_processed_total{topic="ticket-replied"} 5.0
# HELP support_open_tickets Open tickets.
# TYPE support_open_tickets gauge
support_open_tickets{team="all",channel="all",priority="all"} 3.0
support_open_tickets{team="billing",channel="all",priority="all"} 2.0
# HELP support_pipeline_ready 1 when complete.
# TYPE support_pipeline_ready gauge
support_pipeline_ready 1.0
"""


def test_series_looks_up_exact_label_sets() -> None:
    page = series(PAGE)
    assert page[key("support_open_tickets", **OVERALL)] == 3.0
    assert page[key("support_open_tickets", **{**OVERALL, "team": "billing"})] == 2.0
    assert page[key("support_pipeline_ready")] == 1.0
    assert key("support_open_tickets", team="all") not in page


def test_total_sums_the_samples_that_carry_the_labels() -> None:
    page = series(PAGE)
    assert total(page, "support_events_processed_total") == 12.0
    assert total(page, "support_events_processed_total", topic="ticket-replied") == 5.0
    assert total(page, "support_events_rejected_total") is None


def test_a_name_filter_reads_the_same_samples_as_the_whole_page() -> None:
    wanted = {"support_events_processed_total", "support_pipeline_ready"}
    assert samples(PAGE, wanted) == [s for s in samples(PAGE) if s.name in wanted]
    assert len(samples(PAGE, wanted)) == 3
