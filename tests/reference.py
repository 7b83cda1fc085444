"""Brute-force reference implementation of the KPI definitions (SPEC §3, §4).

Deliberately naive: it keeps every event, sorts each ticket's history, derives a flat list of
measurements and filters that list per window and group. No sketches, no buckets as state, no
incremental updates. The differential tests compare the real engine against this module, so it
favours being obviously right over being fast.

Semantics pinned down beyond the SPEC (agreed for the engine and this reference):

* De-duplication happens in arrival order: a repeated ``event_id`` is ignored, and so is a second
  ``ticket-created`` (new ``event_id``) for a ticket that already has one — first arrival wins.
* A ticket's accepted events are ordered by ``(occurred_at, rank, event_id)`` with rank
  created < replied < escalated < status-changed < survey; this order alone defines the result.
* Events earlier than their ticket's creation are rejected (``before_created``); events of a ticket
  that never gets created are never applied (orphans).
* The stream-time clock is the maximum event time seen so far (duplicates included); an accepted
  event is late if it is older than the clock before it minus the horizon. Late events still update
  ticket state.
* Windows are aligned to buckets: ``end = (floor(now / B) + 1) * B``, ``start = end - size``, and a
  measurement counts iff ``start <= time < end``.
* Live KPIs describe the state after every accepted event (callers use ``now`` >= all event times).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streams.core import kpis as K
from streams.core.kpis import ALL, LIVE_WINDOW, UNKNOWN, EngineConfig, KpiKey, KpiValues
from streams.events import (
    SOLVED_STATUSES,
    CustomerLifecycle,
    Event,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
    event_time,
)

# Order of events that share one occurred_at within a ticket's history.
_RANK: dict[type, int] = {
    TicketCreated: 0,
    TicketReplied: 1,
    TicketEscalated: 2,
    TicketStatusChanged: 3,
    SurveySubmitted: 4,
}

COUNT_KPIS = K.COUNT_KPIS  # a missing count key means 0, any other missing key None

Group = tuple[str, str, str]  # (team, channel, priority)
Total = tuple[str, str, str]  # (cumulative series without support_/_total, team, priority)


@dataclass(frozen=True)
class ReferenceCounts:
    """Pipeline-health counts of a stream, as the reference sees them.

    ``orphans`` counts the accepted events of tickets that never get a ``ticket-created`` in the
    stream, i.e. the events the engine drops once the orphan hold expires (with a hold longer than
    the stream they are still held at the end).
    """

    duplicates: int
    late: int
    orphans: int
    before_created: int


@dataclass(frozen=True)
class Measurement:
    """One measured fact: its event time, the ticket's dimensions at that point, and a value."""

    kind: str  # created | resolution | first_resolution | reopen | escalated | first_response
    #            | csat | nps | enps
    time: float
    team: str
    channel: str
    priority: str
    value: float = 0.0  # seconds for durations, the score for surveys
    flag: bool = False  # first_response: SLA met; first_resolution: first-contact resolution


@dataclass(frozen=True)
class LiveTicket:
    """A ticket's final state, as far as the live KPIs need it."""

    team: str
    channel: str
    priority: str
    created_at: float
    open: bool
    unanswered: bool


@dataclass
class Analysis:
    """Everything the reference derives from an arrival list."""

    measurements: list[Measurement] = field(default_factory=list)
    live: list[LiveTicket] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    orphans: int = 0
    before_created: int = 0


def _order_key(event: Event) -> tuple[float, int, str]:
    return (event_time(event), _RANK.get(type(event), 5), event.event_id)


def _ticket_of(event: Event) -> str | None:
    if isinstance(event, CustomerLifecycle):
        return None
    return event.ticket_id


def _survey_measurement(
    survey: SurveySubmitted, team: str, channel: str, priority: str
) -> Measurement:
    return Measurement(
        kind=survey.kind,
        time=event_time(survey),
        team=survey.team if survey.team is not None else team,
        channel=channel,
        priority=priority,
        value=float(survey.score),
    )


def _replay_ticket(
    created: TicketCreated, history: Sequence[Event], config: EngineConfig, out: Analysis
) -> None:
    """Walk one ticket's ordered history (without its ``ticket-created``) and record facts."""
    created_at = event_time(created)
    team, channel, priority = created.team, created.channel, created.priority
    status = "new"
    public_agent_replies = 0
    escalated = False
    answered = False
    resolved_before = False
    sla = config.sla_targets[priority]

    out.measurements.append(Measurement("created", created_at, team, channel, priority))
    for event in history:
        t = event_time(event)
        if isinstance(event, TicketReplied):
            if event.author_type == "agent" and event.public:
                public_agent_replies += 1
                if not answered:
                    answered = True
                    if created.created_by == "customer":
                        frt = t - created_at
                        out.measurements.append(
                            Measurement(
                                "first_response", t, team, channel, priority, frt, frt <= sla
                            )
                        )
        elif isinstance(event, TicketEscalated):
            if not escalated:
                escalated = True
                out.measurements.append(Measurement("escalated", t, team, channel, priority))
            if event.to_team is not None:
                team = event.to_team
        elif isinstance(event, TicketStatusChanged):
            was_solved = status in SOLVED_STATUSES
            now_solved = event.status in SOLVED_STATUSES
            if not was_solved and now_solved:
                duration = t - created_at
                out.measurements.append(
                    Measurement("resolution", t, team, channel, priority, duration)
                )
                if not resolved_before:
                    resolved_before = True
                    fcr = public_agent_replies == 1 and not escalated
                    out.measurements.append(
                        Measurement("first_resolution", t, team, channel, priority, duration, fcr)
                    )
            elif was_solved and not now_solved:
                out.measurements.append(Measurement("reopen", t, team, channel, priority))
            status = event.status
        elif isinstance(event, SurveySubmitted):
            out.measurements.append(_survey_measurement(event, team, channel, priority))

    is_open = status not in SOLVED_STATUSES
    out.live.append(
        LiveTicket(
            team=team,
            channel=channel,
            priority=priority,
            created_at=created_at,
            open=is_open,
            unanswered=is_open and created.created_by == "customer" and public_agent_replies == 0,
        )
    )


def analyse(arrivals: Iterable[Event], config: EngineConfig) -> Analysis:
    """Derive all measurements, the final live state and the health counts of a stream."""
    out = Analysis()
    horizon = config.horizon_seconds
    seen_ids: set[str] = set()
    creates: dict[str, TicketCreated] = {}
    ticket_events: dict[str, list[Event]] = defaultdict(list)
    clock = -math.inf

    for event in arrivals:
        t = event_time(event)
        clock_before = clock
        clock = max(clock, t)
        if event.event_id in seen_ids:
            out.duplicates += 1
            continue
        seen_ids.add(event.event_id)
        if isinstance(event, TicketCreated):
            if event.ticket_id in creates:
                out.duplicates += 1
                continue
            creates[event.ticket_id] = event
        if t < clock_before - horizon:
            out.late += 1
        if isinstance(event, TicketCreated | CustomerLifecycle):
            continue
        ticket_id = _ticket_of(event)
        if ticket_id is None:
            # A survey without a ticket: applied directly.
            assert isinstance(event, SurveySubmitted)
            out.measurements.append(_survey_measurement(event, UNKNOWN, UNKNOWN, UNKNOWN))
        else:
            ticket_events[ticket_id].append(event)

    for ticket_id, events in ticket_events.items():
        if ticket_id not in creates:
            out.orphans += len(events)
    for ticket_id, created in creates.items():
        created_at = event_time(created)
        history = []
        for event in ticket_events.get(ticket_id, []):
            if event_time(event) < created_at:
                out.before_created += 1
            else:
                history.append(event)
        history.sort(key=_order_key)
        _replay_ticket(created, history, config, out)
    return out


def reference_counts(arrivals: Sequence[Event], config: EngineConfig) -> ReferenceCounts:
    """How many arrivals were duplicates, late, orphans and before their ticket's creation."""
    analysis = analyse(arrivals, config)
    return ReferenceCounts(
        duplicates=analysis.duplicates,
        late=analysis.late,
        orphans=analysis.orphans,
        before_created=analysis.before_created,
    )


# The cumulative series (SPEC §5) by the measurement kind they count.
CUMULATIVE_SERIES = {
    "created": "tickets_created",
    "resolution": "tickets_solved",
    "first_response": "first_responses",
}


def reference_totals(arrivals: Sequence[Event], config: EngineConfig) -> Counter[Total]:
    """What the cumulative series must count over the whole stream, by (series, team,
    priority): every creation, resolution and first response (and those within the SLA),
    once, whatever the windows, with the team the measurement has."""
    totals: Counter[Total] = Counter()
    for m in analyse(arrivals, config).measurements:
        series = CUMULATIVE_SERIES.get(m.kind)
        if series is None:
            continue
        totals[(series, m.team, m.priority)] += 1
        if m.kind == "first_response" and m.flag:
            totals[("first_responses_within_sla", m.team, m.priority)] += 1
    return totals


def window_bounds(now: float, size: float, bucket: float) -> tuple[float, float]:
    """``[start, end)`` of a window read at ``now``, aligned to the bucket grid."""
    end = (math.floor(now / bucket) + 1) * bucket
    return end - size, end


def nearest_rank(sorted_values: Sequence[float], numerator: int, denominator: int) -> float:
    """The ``numerator/denominator`` quantile by nearest rank: ``v[ceil(q * n) - 1]``."""
    n = len(sorted_values)
    rank = -(-n * numerator // denominator)  # exact integer ceil(q * n)
    return sorted_values[max(rank, 1) - 1]


def _groups(m: Measurement, *, team_only: bool) -> list[Group]:
    groups: list[Group] = [(ALL, ALL, ALL), (m.team, ALL, ALL)]
    if not team_only:
        groups += [(ALL, m.channel, ALL), (ALL, ALL, m.priority)]
    return groups


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _quantile(values: Sequence[float], numerator: int, denominator: int) -> float | None:
    return nearest_rank(sorted(values), numerator, denominator) if values else None


def _nps(scores: Sequence[float]) -> float | None:
    if not scores:
        return None
    promoters = sum(1 for s in scores if s >= 9)
    detractors = sum(1 for s in scores if s <= 6)
    return (promoters - detractors) / len(scores) * 100


def _window_values(
    measurements: Sequence[Measurement], *, include_enps: bool
) -> dict[str, float | None]:
    by_kind: dict[str, list[Measurement]] = defaultdict(list)
    for m in measurements:
        by_kind[m.kind].append(m)
    created = len(by_kind["created"])
    escalated = len(by_kind["escalated"])
    frt = [m.value for m in by_kind["first_response"]]
    frt_met = sum(1 for m in by_kind["first_response"] if m.flag)
    resolutions = [m.value for m in by_kind["resolution"]]
    first_resolutions = by_kind["first_resolution"]
    fcr = sum(1 for m in first_resolutions if m.flag)
    csat = [m.value for m in by_kind["csat"]]
    nps = [m.value for m in by_kind["nps"]]
    enps = [m.value for m in by_kind["enps"]]

    values: dict[str, float | None] = {
        K.TICKETS_CREATED: float(created),
        K.TICKETS_SOLVED: float(len(resolutions)),
        K.TICKETS_ESCALATED: float(escalated),
        K.TICKETS_REOPENED: float(len(by_kind["reopen"])),
        K.ESCALATION_RATIO: _ratio(escalated, created),
        K.FIRST_RESPONSE_P50: _quantile(frt, 1, 2),
        K.FIRST_RESPONSE_P90: _quantile(frt, 9, 10),
        K.FIRST_RESPONSE_MEAN: _mean(frt),
        K.FIRST_RESPONSES: float(len(frt)),
        K.FIRST_RESPONSE_SLA_ATTAINMENT: _ratio(frt_met, len(frt)),
        K.RESOLUTION_P50: _quantile(resolutions, 1, 2),
        K.RESOLUTION_P90: _quantile(resolutions, 9, 10),
        K.RESOLUTION_MEAN: _mean(resolutions),
        K.FIRST_CONTACT_RESOLUTION: _ratio(fcr, len(first_resolutions)),
        K.CSAT_SATISFIED: _ratio(sum(1 for s in csat if s >= 4), len(csat)),
        K.CSAT_MEAN: _mean(csat),
        K.CSAT_RESPONSES: float(len(csat)),
        K.NPS_SCORE: _nps(nps),
        K.NPS_RESPONSES: float(len(nps)),
        K.ENPS_SCORE: _nps(enps),
        K.ENPS_RESPONSES: float(len(enps)),
    }
    if not include_enps:
        for kpi in K.TEAM_ONLY_KPIS:
            del values[kpi]
    return values


def _live_values(
    now: float, tickets: Sequence[LiveTicket], config: EngineConfig
) -> dict[str, float | None]:
    open_tickets = [t for t in tickets if t.open]
    unanswered = [t for t in open_tickets if t.unanswered]
    past_sla = [t for t in unanswered if now - t.created_at > config.sla_targets[t.priority]]
    oldest = now - min(t.created_at for t in unanswered) if unanswered else 0.0
    return {
        K.OPEN_TICKETS: float(len(open_tickets)),
        K.UNANSWERED_TICKETS: float(len(unanswered)),
        K.OLDEST_UNANSWERED_AGE: oldest,
        K.UNANSWERED_PAST_SLA: float(len(past_sla)),
    }


def kpis_from_analysis(analysis: Analysis, config: EngineConfig, *, now: float) -> KpiValues:
    """Read every KPI at ``now`` from an :class:`Analysis`."""
    result: KpiValues = {}
    for window, size in config.windows:
        start, end = window_bounds(now, size, config.bucket_seconds)
        grouped: dict[Group, list[Measurement]] = defaultdict(list)
        for m in analysis.measurements:
            if start <= m.time < end:
                for group in _groups(m, team_only=m.kind == "enps"):
                    grouped[group].append(m)
        for group, members in grouped.items():
            # Overall and per-team groups carry every KPI; channel/priority groups no eNPS.
            include_enps = group[1] == ALL and group[2] == ALL
            for kpi, value in _window_values(members, include_enps=include_enps).items():
                result[KpiKey(kpi, window, *group)] = value

    live_grouped: dict[Group, list[LiveTicket]] = defaultdict(list)
    for ticket in analysis.live:
        if not ticket.open:
            continue
        for group in [
            (ALL, ALL, ALL),
            (ticket.team, ALL, ALL),
            (ALL, ticket.channel, ALL),
            (ALL, ALL, ticket.priority),
        ]:
            live_grouped[group].append(ticket)
    for group, tickets in live_grouped.items():
        for kpi, value in _live_values(now, tickets, config).items():
            result[KpiKey(kpi, LIVE_WINDOW, *group)] = value
    return result


def reference_kpis(arrivals: Sequence[Event], config: EngineConfig, *, now: float) -> KpiValues:
    """Every windowed and live KPI at ``now`` for the decoded ``arrivals`` (arrival order)."""
    return kpis_from_analysis(analyse(arrivals, config), config, now=now)


# --- comparison helpers (used by the differential tests) ---------------------------------------

KNOWN_KPIS: frozenset[str] = frozenset(K.WINDOWED_KPIS) | frozenset(K.LIVE_KPIS)


def normalize(values: Mapping[KpiKey, float | None], keys: Iterable[KpiKey]) -> KpiValues:
    """Fill ``keys`` so that a missing count is 0 and any other missing value is None.

    The oldest-unanswered age of a live group without open tickets is None (0.0 or absent are
    both accepted for an empty group).
    """
    out: KpiValues = {}
    for key in keys:
        if key.kpi not in KNOWN_KPIS:
            continue
        value = values.get(key)
        if value is None and key.kpi in COUNT_KPIS:
            value = 0.0
        out[key] = value
    for key, value in out.items():
        empty_group = not values.get(key._replace(kpi=K.OPEN_TICKETS))
        if key.kpi == K.OLDEST_UNANSWERED_AGE and value == 0.0 and empty_group:
            out[key] = None
    return out


def _agree(kpi: str, actual: float | None, expected: float | None) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    if kpi in K.QUANTILE_KPIS:
        if expected == 0:
            return abs(actual) <= 1e-9
        return abs(actual - expected) <= 0.01 * abs(expected)
    # The reference works on float POSIX seconds (about 0.2 µs resolution today), the engine
    # on exact integer microseconds: durations may differ by a float rounding of that size.
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-6)


def differences(
    actual: Mapping[KpiKey, float | None], expected: Mapping[KpiKey, float | None]
) -> list[tuple[KpiKey, float | None, float | None]]:
    """Keys whose normalized values disagree: ``(key, actual, expected)``, sorted by key."""
    keys = set(actual) | set(expected)
    a = normalize(actual, keys)
    e = normalize(expected, keys)
    return [(key, a[key], e[key]) for key in sorted(a) if not _agree(key.kpi, a[key], e[key])]


def format_differences(
    diffs: Sequence[tuple[KpiKey, float | None, float | None]],
    *,
    actual_name: str = "engine",
    expected_name: str = "reference",
    limit: int = 40,
) -> str:
    lines = [f"{len(diffs)} KPI value(s) differ ({actual_name} vs {expected_name}):"]
    for key, a, e in diffs[:limit]:
        lines.append(f"  {key.topic_key()}: {actual_name}={a!r} {expected_name}={e!r}")
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return "\n".join(lines)
