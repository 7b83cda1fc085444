"""KPI gauges built from engine state at scrape time (SPEC §5).

A custom collector: every scrape reads the KPI store of the partitions this worker owns right
now, so a key that moved to another worker in a rebalance, or a ratio that lost its last
sample, simply stops being exported — no stale series, no double series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.core import kpis
from streams.core.customers import CustomerReading
from streams.core.kpis import CustomerKpiKey, KpiKey
from streams.core.store import KpiReading

Reading = KpiReading | CustomerReading
ReadingSource = Callable[[], Iterable[Reading]]

WINDOW_LABELS = ["window", "team", "channel", "priority"]
LIVE_LABELS = ["team", "channel", "priority"]
CUSTOMER_LIVE_LABELS = ["segment"]

# metric name -> help text (the README's metrics catalog says the same, longer)
METRIC_HELP: dict[str, str] = {
    "support_tickets_created": "Tickets created in the window.",
    "support_tickets_solved": "Transitions into solved/closed in the window (resolutions).",
    "support_tickets_escalated": "Tickets whose first escalation is in the window.",
    "support_tickets_reopened": "Transitions from solved/closed back to an open status.",
    "support_escalation_ratio": "Tickets escalated / tickets created in the window; can "
    "exceed 1 when tickets created before the window escalate in it.",
    "support_first_response_p50_seconds": "Median (nearest-rank) first-response time "
    "(creation to first public agent reply) of the first responses in the window.",
    "support_first_response_p90_seconds": "90th percentile (nearest-rank) first-response time "
    "of the first responses in the window.",
    "support_first_response_mean_seconds": "Mean first-response time in the window.",
    "support_first_responses": "Number of first responses in the window (sample count).",
    "support_first_response_sla_attainment_ratio": "Share of first responses within the "
    "priority's SLA target, on its clock (0-1).",
    "support_resolution_p50_seconds": "Median (nearest-rank) resolution time (creation to "
    "solved) of the resolutions in the window.",
    "support_resolution_p90_seconds": "90th percentile (nearest-rank) resolution time of the "
    "resolutions in the window.",
    "support_resolution_mean_seconds": "Mean resolution time in the window.",
    "support_first_contact_resolution_ratio": "Share of first resolutions with exactly one "
    "public agent reply and no escalation (0-1).",
    "support_requester_wait_p50_seconds": "Median (nearest-rank) requester wait of the "
    "resolutions in the window: time from creation spent in new/open/on_hold (pending pauses "
    "it).",
    "support_requester_wait_p90_seconds": "90th percentile (nearest-rank) requester wait of the "
    "resolutions in the window.",
    "support_requester_wait_mean_seconds": "Mean requester wait of the resolutions in the window.",
    "support_resolution_sla_attainment_ratio": "Share of resolutions whose requester wait is "
    "within the priority's resolution SLA target, on its clock (0-1).",
    "support_first_response_business_p50_seconds": "Median (nearest-rank) first-response time "
    "in business seconds (working hours of the owning team's calendar).",
    "support_first_response_business_p90_seconds": "90th percentile (nearest-rank) "
    "first-response time in business seconds.",
    "support_first_response_business_mean_seconds": "Mean first-response time in business seconds.",
    "support_resolution_business_p50_seconds": "Median (nearest-rank) resolution time in "
    "business seconds.",
    "support_resolution_business_p90_seconds": "90th percentile (nearest-rank) resolution time "
    "in business seconds.",
    "support_resolution_business_mean_seconds": "Mean resolution time in business seconds.",
    "support_requester_wait_business_p50_seconds": "Median (nearest-rank) requester wait in "
    "business seconds.",
    "support_requester_wait_business_p90_seconds": "90th percentile (nearest-rank) requester "
    "wait in business seconds.",
    "support_requester_wait_business_mean_seconds": "Mean requester wait in business seconds.",
    "support_csat_satisfied_ratio": "Share of CSAT responses scoring 4 or 5 (0-1).",
    "support_csat_mean_score": "Mean CSAT score (1-5).",
    "support_csat_responses": "CSAT responses in the window.",
    "support_nps_score": "Net Promoter Score (-100 to 100).",
    "support_nps_responses": "NPS responses in the window.",
    "support_enps_score": "Employee Net Promoter Score (-100 to 100), overall and per team.",
    "support_enps_responses": "eNPS responses in the window.",
    "support_open_tickets": "Tickets created and not solved/closed, now.",
    "support_unanswered_tickets": "Open customer tickets with no public agent reply yet.",
    "support_oldest_unanswered_age_seconds": "Age of the oldest unanswered ticket (0 when none).",
    "support_unanswered_past_sla_tickets": "Unanswered tickets already past their "
    "first-response SLA target (on the target's clock: calendar or business time).",
    "support_customers_active_at_start": "Customers active at the start of the window (|S|).",
    "support_customers_churned": "Customers active at the window start and not now (|S \\ E|).",
    "support_customers_new": "Customers active now and not at the window start (|E \\ S|).",
    "support_customer_churn_ratio": "Churned / active at the window start (0-1); absent when "
    "no customer was active at the start.",
    "support_customer_retention_ratio": "Active at the window start and now / active at the "
    "start (0-1); absent when no customer was active at the start.",
    "support_customers_active": "Customers active now (latest lifecycle change: activated).",
}


def metric_for(kpi: str) -> str:
    """The metric name a KPI is exported as: ``support_`` + the KPI topic's name (SPEC §5)."""
    return "support_" + kpi


def labels_of(key: KpiKey | CustomerKpiKey) -> tuple[list[str], list[str]]:
    """Label names and values of a KPI's series: ``window`` unless live, then the breakdown
    (``team``, ``channel``, ``priority``; customers: ``segment``)."""
    if isinstance(key, CustomerKpiKey):
        names, values = list(CUSTOMER_LIVE_LABELS), [key.segment]
    else:
        names, values = list(LIVE_LABELS), [key.team, key.channel, key.priority]
    if key.window != kpis.LIVE_WINDOW:
        names.insert(0, "window")
        values.insert(0, key.window)
    return names, values


class KpiCollector(Collector):
    def __init__(self, readings: ReadingSource) -> None:
        self._readings = readings

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # built at scrape time; nothing to describe up front

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for reading in self._readings():
            if reading.value is None:
                continue  # no sample: the series is absent, never 0 or NaN
            key = reading.key
            name = metric_for(key.kpi)
            names, values = labels_of(key)
            family = families.get(name)
            if family is None:
                family = families[name] = GaugeMetricFamily(name, METRIC_HELP[name], labels=names)
            family.add_metric(values, reading.value)
        yield from families.values()
