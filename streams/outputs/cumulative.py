"""Cumulative series for SLO tools and long PromQL ranges (SPEC §5).

Counters and a histogram labelled ``team`` and ``priority`` only, with no ``all`` value, so
``sum(increase(support_tickets_created_total[28d]))`` is the truth across workers. Each KPI
fact is counted once, when the worker first derives it (:mod:`streams.core.firsts`), in
processing time; the windowed gauges stay the exact event-time view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from streams.core.kpis import OTHER, UNKNOWN
from streams.core.ticket import Fact
from streams.core.units import US

LABELS = ["team", "priority"]
# First-response duration buckets (seconds) besides the SLA targets, which are always added.
BASE_BUCKETS = (60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0)


def first_response_buckets(sla_targets: Mapping[str, float]) -> list[float]:
    """The histogram's upper bounds: the base ladder plus every SLA target."""
    return sorted({*BASE_BUCKETS, *(float(t) for t in sla_targets.values())})


class CumulativeKpis:
    """The ``*_total`` counters and the first-response histogram of one worker.

    Team values are already sanitized; the first ``max_teams`` distinct teams this process
    counts keep their name and later ones are counted as ``other`` (a counter series must
    not move between names, so this cap is first come, unlike the gauges' busiest-first).
    """

    def __init__(
        self, registry: CollectorRegistry, sla_targets: Mapping[str, float], max_teams: int
    ) -> None:
        self.max_teams = max_teams
        self._teams: set[str] = set()
        self.created = Counter(
            "support_tickets_created",
            "Tickets created, counted once when the worker first derives the creation "
            "(processing time).",
            LABELS,
            registry=registry,
        )
        self.solved = Counter(
            "support_tickets_solved",
            "Transitions into solved/closed (resolutions), counted once when first derived.",
            LABELS,
            registry=registry,
        )
        self.first_responses = Counter(
            "support_first_responses",
            "First public agent replies to customer tickets, counted once when first derived.",
            LABELS,
            registry=registry,
        )
        self.within_sla = Counter(
            "support_first_responses_within_sla",
            "First responses within the priority's first-response SLA target, counted once "
            "when first derived.",
            LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            "support_first_response_duration_seconds",
            "First-response time (creation to first public agent reply), observed once per "
            "first response when first derived; buckets include every SLA target.",
            LABELS,
            buckets=first_response_buckets(sla_targets),
            registry=registry,
        )

    def team(self, team: str) -> str:
        if team in self._teams or team == UNKNOWN:
            return team
        if len(self._teams) >= self.max_teams:
            return OTHER
        self._teams.add(team)
        return team

    def count(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            labels = (self.team(fact.dims.team), fact.dims.priority)
            if fact.kind == "created":
                self.created.labels(*labels).inc()
            elif fact.kind == "resolved":
                self.solved.labels(*labels).inc()
            elif fact.kind == "first_response":
                self.first_responses.labels(*labels).inc()
                if fact.flag:
                    self.within_sla.labels(*labels).inc()
                self.duration.labels(*labels).observe(fact.value / US)
