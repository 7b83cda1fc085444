"""KPI names, result keys and the engine's configuration (SPEC §3, §4).

This module is the shared vocabulary of the core, the outputs and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from streams.core.calendar import CalendarSet

ALL = "all"
UNKNOWN = "unknown"
OTHER = "other"  # teams beyond the label cap
LIVE_WINDOW = "live"

# Windowed KPIs, in the order the KPI topic and the README list them.
TICKETS_CREATED = "tickets_created"
TICKETS_SOLVED = "tickets_solved"
TICKETS_ESCALATED = "tickets_escalated"
TICKETS_REOPENED = "tickets_reopened"
ESCALATION_RATIO = "escalation_ratio"
FIRST_RESPONSE_P50 = "first_response_p50_seconds"
FIRST_RESPONSE_P90 = "first_response_p90_seconds"
FIRST_RESPONSE_MEAN = "first_response_mean_seconds"
FIRST_RESPONSES = "first_responses"
FIRST_RESPONSE_SLA_ATTAINMENT = "first_response_sla_attainment_ratio"
RESOLUTION_P50 = "resolution_p50_seconds"
RESOLUTION_P90 = "resolution_p90_seconds"
RESOLUTION_MEAN = "resolution_mean_seconds"
FIRST_CONTACT_RESOLUTION = "first_contact_resolution_ratio"
REQUESTER_WAIT_P50 = "requester_wait_p50_seconds"
REQUESTER_WAIT_P90 = "requester_wait_p90_seconds"
REQUESTER_WAIT_MEAN = "requester_wait_mean_seconds"
RESOLUTION_SLA_ATTAINMENT = "resolution_sla_attainment_ratio"
# Business time (only with calendars, SPEC §4-§5): "_business" before the statistic.
FIRST_RESPONSE_BUSINESS_P50 = "first_response_business_p50_seconds"
FIRST_RESPONSE_BUSINESS_P90 = "first_response_business_p90_seconds"
FIRST_RESPONSE_BUSINESS_MEAN = "first_response_business_mean_seconds"
RESOLUTION_BUSINESS_P50 = "resolution_business_p50_seconds"
RESOLUTION_BUSINESS_P90 = "resolution_business_p90_seconds"
RESOLUTION_BUSINESS_MEAN = "resolution_business_mean_seconds"
REQUESTER_WAIT_BUSINESS_P50 = "requester_wait_business_p50_seconds"
REQUESTER_WAIT_BUSINESS_P90 = "requester_wait_business_p90_seconds"
REQUESTER_WAIT_BUSINESS_MEAN = "requester_wait_business_mean_seconds"
CSAT_SATISFIED = "csat_satisfied_ratio"
CSAT_MEAN = "csat_mean_score"
CSAT_RESPONSES = "csat_responses"
NPS_SCORE = "nps_score"
NPS_RESPONSES = "nps_responses"
ENPS_SCORE = "enps_score"
ENPS_RESPONSES = "enps_responses"

# Windowed KPIs reported only when calendars are configured (``EngineConfig.calendars``).
BUSINESS_KPIS: tuple[str, ...] = (
    FIRST_RESPONSE_BUSINESS_P50,
    FIRST_RESPONSE_BUSINESS_P90,
    FIRST_RESPONSE_BUSINESS_MEAN,
    RESOLUTION_BUSINESS_P50,
    RESOLUTION_BUSINESS_P90,
    RESOLUTION_BUSINESS_MEAN,
    REQUESTER_WAIT_BUSINESS_P50,
    REQUESTER_WAIT_BUSINESS_P90,
    REQUESTER_WAIT_BUSINESS_MEAN,
)

WINDOWED_KPIS: tuple[str, ...] = (
    TICKETS_CREATED,
    TICKETS_SOLVED,
    TICKETS_ESCALATED,
    TICKETS_REOPENED,
    ESCALATION_RATIO,
    FIRST_RESPONSE_P50,
    FIRST_RESPONSE_P90,
    FIRST_RESPONSE_MEAN,
    FIRST_RESPONSES,
    FIRST_RESPONSE_SLA_ATTAINMENT,
    RESOLUTION_P50,
    RESOLUTION_P90,
    RESOLUTION_MEAN,
    FIRST_CONTACT_RESOLUTION,
    REQUESTER_WAIT_P50,
    REQUESTER_WAIT_P90,
    REQUESTER_WAIT_MEAN,
    RESOLUTION_SLA_ATTAINMENT,
    CSAT_SATISFIED,
    CSAT_MEAN,
    CSAT_RESPONSES,
    NPS_SCORE,
    NPS_RESPONSES,
    ENPS_SCORE,
    ENPS_RESPONSES,
    *BUSINESS_KPIS,
)

# eNPS is reported overall and per team only (SPEC §4).
TEAM_ONLY_KPIS: frozenset[str] = frozenset({ENPS_SCORE, ENPS_RESPONSES})

# Live (not windowed) KPIs; their key carries window="live".
OPEN_TICKETS = "open_tickets"
UNANSWERED_TICKETS = "unanswered_tickets"
OLDEST_UNANSWERED_AGE = "oldest_unanswered_age_seconds"
UNANSWERED_PAST_SLA = "unanswered_past_sla_tickets"
LIVE_KPIS: tuple[str, ...] = (
    OPEN_TICKETS,
    UNANSWERED_TICKETS,
    OLDEST_UNANSWERED_AGE,
    UNANSWERED_PAST_SLA,
)

# KPIs that are counts: no key means 0. Every other KPI is a ratio, mean, quantile or age, and
# no key means "no value".
COUNT_KPIS: frozenset[str] = frozenset(
    {
        TICKETS_CREATED,
        TICKETS_SOLVED,
        TICKETS_ESCALATED,
        TICKETS_REOPENED,
        FIRST_RESPONSES,
        CSAT_RESPONSES,
        NPS_RESPONSES,
        ENPS_RESPONSES,
        OPEN_TICKETS,
        UNANSWERED_TICKETS,
        UNANSWERED_PAST_SLA,
    }
)

# KPIs that are percentiles (reported within 1% relative error).
QUANTILE_KPIS: frozenset[str] = frozenset(
    {
        FIRST_RESPONSE_P50,
        FIRST_RESPONSE_P90,
        RESOLUTION_P50,
        RESOLUTION_P90,
        REQUESTER_WAIT_P50,
        REQUESTER_WAIT_P90,
        FIRST_RESPONSE_BUSINESS_P50,
        FIRST_RESPONSE_BUSINESS_P90,
        RESOLUTION_BUSINESS_P50,
        RESOLUTION_BUSINESS_P90,
        REQUESTER_WAIT_BUSINESS_P50,
        REQUESTER_WAIT_BUSINESS_P90,
    }
)


class KpiKey(NamedTuple):
    """One KPI value's identity: ``kpi|window|team|channel|priority`` on the KPI topic."""

    kpi: str
    window: str
    team: str = ALL
    channel: str = ALL
    priority: str = ALL

    def topic_key(self) -> str:
        return "|".join(self)


KpiValues = dict[KpiKey, float | None]

DEFAULT_SLA_TARGETS: dict[str, float] = {
    "urgent": 15 * 60.0,
    "high": 60 * 60.0,
    "normal": 4 * 3600.0,
    "low": 8 * 3600.0,
}

# Resolution SLA: requester wait time within these targets (SPEC §4).
DEFAULT_RESOLUTION_SLA_TARGETS: dict[str, float] = {
    "urgent": 4 * 3600.0,
    "high": 8 * 3600.0,
    "normal": 24 * 3600.0,
    "low": 72 * 3600.0,
}

# The clock an SLA target is measured on: real elapsed time, or business time (calendars).
SlaClock = Literal["calendar", "business"]
SLA_CLOCKS: tuple[SlaClock, ...] = ("calendar", "business")


def calendar_clocks() -> dict[str, SlaClock]:
    """Every priority's SLA on the calendar clock (the default)."""
    return dict.fromkeys(DEFAULT_SLA_TARGETS, "calendar")


@dataclass(frozen=True)
class EngineConfig:
    """Everything the pure engine needs to know; validated by :mod:`streams.settings`."""

    # (name, size in seconds), e.g. ("15m", 900.0). Sizes are multiples of bucket_seconds.
    windows: tuple[tuple[str, float], ...] = (("15m", 900.0), ("1h", 3600.0), ("24h", 86400.0))
    bucket_seconds: float = 60.0
    # Events older than the longest window plus grace no longer count in windowed KPIs.
    grace_seconds: float = 300.0
    sla_targets: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA_TARGETS))
    # Events of a ticket never created are held this long, then dropped as orphans.
    orphan_hold_seconds: float = 86400.0
    # A solved/closed ticket's state is dropped this long after its last event (>= horizon).
    retention_seconds: float = 7 * 86400.0
    # A retired ticket's attributes are kept this long after its last event (>= retention), so
    # that a late survey or reopen still finds it (streams.core.attributes).
    attribute_retention_seconds: float = 30 * 86400.0
    # SLA policies (streams.core.sla): sla_targets above are the first-response targets.
    resolution_sla_targets: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_RESOLUTION_SLA_TARGETS)
    )
    first_response_sla_clocks: dict[str, SlaClock] = field(default_factory=calendar_clocks)
    resolution_sla_clocks: dict[str, SlaClock] = field(default_factory=calendar_clocks)
    # Business calendars (SUPPORT_CALENDARS_FILE); None: everything is calendar time.
    calendars: CalendarSet | None = None
    # IANA zone of the calendar-day window ``today`` (streams.core.today).
    time_zone: str = "UTC"

    @property
    def horizon_seconds(self) -> float:
        """Measurements older than clock - horizon can no longer be in any window."""
        return max(size for _, size in self.windows) + self.grace_seconds


# -- customers (SPEC §4 churn / retention; keys ``kpi|window|segment``) -----------------------
# Kept apart from the ticket KPI tuples above: customer KPIs have their own key shape and merge
# (:mod:`streams.core.customers`).
CUSTOMERS_ACTIVE_AT_START = "customers_active_at_start"
CUSTOMERS_CHURNED = "customers_churned"
CUSTOMERS_NEW = "customers_new"
CUSTOMER_CHURN_RATIO = "customer_churn_ratio"
CUSTOMER_RETENTION_RATIO = "customer_retention_ratio"
CUSTOMERS_ACTIVE = "customers_active"  # live, window "live"

CUSTOMER_WINDOWED_KPIS: tuple[str, ...] = (
    CUSTOMERS_ACTIVE_AT_START,
    CUSTOMERS_CHURNED,
    CUSTOMERS_NEW,
    CUSTOMER_CHURN_RATIO,
    CUSTOMER_RETENTION_RATIO,
)
CUSTOMER_LIVE_KPIS: tuple[str, ...] = (CUSTOMERS_ACTIVE,)
# Customer KPIs that are counts (no key means 0); the two ratios have no value when |S| = 0.
CUSTOMER_COUNT_KPIS: frozenset[str] = frozenset(
    {CUSTOMERS_ACTIVE_AT_START, CUSTOMERS_CHURNED, CUSTOMERS_NEW, CUSTOMERS_ACTIVE}
)
DEFAULT_CUSTOMER_WINDOWS: tuple[tuple[str, float], ...] = (
    ("7d", 7 * 86400.0),
    ("30d", 30 * 86400.0),
)


class CustomerKpiKey(NamedTuple):
    """One customer KPI value's identity: ``kpi|window|segment`` on the KPI topic."""

    kpi: str
    window: str
    segment: str = ALL

    def topic_key(self) -> str:
        return "|".join(self)
