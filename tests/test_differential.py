"""Differential tests: the pure core against the brute-force reference (``helpers/reference.py``).

Every generated stream first goes through the real decoder, as in the pipeline: far-future events
are rejected there, and only accepted events reach the engine and the reference. The engine is
driven event by event (``TicketEngine.process``/``housekeeping``/``flush`` into a
``KpiMerge``) and read at several instants during the stream, after it and after the clock has
moved on without events. Every read compares the *whole* set of series (a series on one side only
fails) and the health counts; quantiles may differ by 1% relative, everything else by 1e-9.
Generated configurations vary bucket, windows (up to 24 h), grace, orphan hold, retention,
attribute retention and SLA targets; streams are no longer than the longest window, so windows
hold samples when read, except the events that come after retirement (``after_retirement``).
"""

from __future__ import annotations

from typing import Any

from helpers.differential import Coverage, assert_same, check_stream
from helpers.reference import (
    SAMPLE_KIND,
    reference_kpis,
)
from helpers.strategies import (
    Builder,
    Scenario,
    decoded,
    generated,
    scenarios,
    ts,
)
from hypothesis import given

from streams.core import kpis as K
from streams.core.kpis import ALL, LIVE_WINDOW, EngineConfig, KpiKey, KpiValues
from streams.core.replay import replay
from streams.events import Event, event_time

# CI runs a fixed, reproducible set of examples: no example database, derandomized generation.
SETTINGS = generated(60)


@SETTINGS
@given(scenarios(delivery="shuffled", duplicates=False, late=False, future=False))
def test_fully_shuffled_delivery_matches_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios(delivery="bounded"))
def test_bounded_cross_topic_reordering_matches_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios(duplicates=True, second_creates=True, late=False, future=False))
def test_duplicates_and_second_creates_match_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios(late=True, future=True, orphans=True, before_created=True))
def test_late_future_orphan_and_early_events_match_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios(reopen_bias=True))
def test_reopen_cycles_match_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios(escalation_bias=True))
def test_escalations_across_teams_match_reference(scenario: Scenario) -> None:
    check_stream(scenario)


@SETTINGS
@given(scenarios())
def test_three_partitions_match_reference(scenario: Scenario) -> None:
    check_stream(scenario, partitions=3)


@SETTINGS
@given(scenarios(after_retirement=True))
def test_late_surveys_and_reopens_after_retirement_match_reference(scenario: Scenario) -> None:
    """SPEC §3: events of tickets retired to their attributes (late surveys, reopens, re-sends,
    a week or a month after the solve; some after the attribute retention)."""
    check_stream(scenario)


@SETTINGS
@given(scenarios(after_retirement=True, delivery="bounded"))
def test_events_after_retirement_on_three_partitions_match_reference(scenario: Scenario) -> None:
    """... with every partition restarted (rebuilt from its tickets, attribute records and
    revived tickets) at each read."""
    check_stream(scenario, partitions=3, restarts=True)


def test_generated_streams_reach_retired_tickets() -> None:
    """The after-retirement generator really revives retired tickets, sends them duplicates
    and lets attributes expire (a generator that stopped doing so would test nothing)."""
    seen: list[Coverage] = []

    @generated(30)
    @given(scenarios(after_retirement=True, delivery="ordered"))
    def collect(scenario: Scenario) -> None:
        seen.append(check_stream(scenario))

    collect()
    shares = {what: sum(c[("retired", what)] for c in seen) / len(seen) for what in _RETIRED}
    print(f"after-retirement coverage over {len(seen)} examples: {shares}")
    if len(seen) < 30:
        return  # shares of a capped run (TESTS_MAX_EXAMPLES) are not comparable
    for what, floor in _RETIRED.items():
        assert shares[what] >= floor, f"{what}: {shares[what]:.0%} of {len(seen)} examples"


# Measured 83 %, 53 %, 43 % (2026-12-07); the floors leave room for another derandomized seed.
_RETIRED = {"revived": 0.2, "duplicate": 0.15, "forgotten": 0.15}


@SETTINGS
@given(scenarios(delivery="ordered"))
def test_replay_reads_at_the_last_event_like_the_engine_run(scenario: Scenario) -> None:
    """``replay`` (the backfill helper) equals the event-by-event run and the reference."""
    events = decoded(scenario)
    expected = reference_kpis(events, scenario.config, now=max(map(event_time, events)))
    assert_same(replay(events, scenario.config), expected, str(scenario.notes))


# Thresholds of the coverage check: share of examples in which a kind of measurement is
# sampled in a window (at some read). Measured: see the printed table. Over 60 examples the
# shortest window's shares swing with the derandomized seed (the same generator gave 52-88 %
# and 18-52 % on two code bases), so its floor is lower; the longest window's is stable.
_COVERAGE_FLOOR = {"shortest": 0.15, "longest": 0.5}
_RARE_KINDS = {"reopen": {"shortest": 0.1, "longest": 0.25}}


def test_generated_streams_sample_every_kpi_in_every_window(capsys: Any) -> None:
    """Per-KPI windowed coverage of the generator: a regression that stops streams from
    reaching the windows (too long, too sparse, read too late) fails here."""
    seen: list[tuple[EngineConfig, Coverage]] = []

    @SETTINGS
    @given(scenarios())
    def collect(scenario: Scenario) -> None:
        seen.append((scenario.config, check_stream(scenario)))

    collect()
    kinds = sorted(set(SAMPLE_KIND.values()))
    lines = [f"windowed coverage over {len(seen)} examples (share sampled at some read):"]
    failures = []
    for kind in kinds:
        shares = []
        for rank in ("shortest", "longest"):
            hits = 0
            for config, coverage in seen:
                sizes = sorted(config.windows, key=lambda w: w[1])
                window = sizes[0][0] if rank == "shortest" else sizes[-1][0]
                hits += coverage.get((window, kind), False)
            share = hits / len(seen)
            shares.append(f"{rank} {share:.0%}")
            if share < _RARE_KINDS.get(kind, _COVERAGE_FLOOR)[rank]:
                failures.append(f"{kind} in the {rank} window: {share:.0%}")
        lines.append(f"  {kind:17} " + ", ".join(shares))
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    if len(seen) >= 60:  # shares of a capped run (TESTS_MAX_EXAMPLES) are not comparable
        assert not failures, "\n".join([*lines, "below the floor:", *failures])


def _windowed(values: KpiValues, kpi: str, window: str) -> float | None:
    return values.get(KpiKey(kpi, window, ALL, ALL, ALL))


def test_windows_slide_and_values_decay_without_events() -> None:
    config = EngineConfig(
        windows=(("5m", 300.0), ("1h", 3600.0)),
        bucket_seconds=60.0,
        grace_seconds=60.0,
        sla_targets={"urgent": 600.0, "high": 1800.0, "normal": 3600.0, "low": 7200.0},
    )
    b = Builder()
    events: list[Event] = [
        b.created("a", 0, team="tier1", priority="urgent"),
        b.replied("a", 90),
        b.status("a", 400, "solved"),
        b.created("b", 600, team="tier2", channel="chat"),
        b.replied("b", 650, author="bot"),
        b.escalated("b", 700, to_team="tier1"),
        b.created("c", 1200, team="tier2", priority="high"),  # never answered
        b.survey(1250, "csat", 5, ticket="a"),
        b.survey(1260, "nps", 3),
        b.survey(1270, "enps", 10, team="tier2"),
        b.created("d", 1500, team="tier1"),
        b.replied("d", 1790.5),
    ]
    last = ts(1790.5)
    assert replay(events, config) == replay(events, config, now=last)  # default now: last event

    def read(now: float) -> KpiValues:
        expected = reference_kpis(events, config, now=now)
        actual = replay(events, config, now=now)
        assert_same(actual, expected, f"now={now}")
        return actual

    at_last = read(last)
    assert _windowed(at_last, K.TICKETS_CREATED, "5m") == 1  # d (5m window [1500, 1800))
    assert _windowed(at_last, K.TICKETS_CREATED, "1h") == 4
    assert _windowed(at_last, K.FIRST_RESPONSES, "1h") == 2

    five_minutes_on = read(last + 300)  # the 5m window has moved past every event
    assert not _windowed(five_minutes_on, K.TICKETS_CREATED, "5m")
    assert _windowed(five_minutes_on, K.FIRST_RESPONSE_MEAN, "5m") is None
    assert _windowed(five_minutes_on, K.TICKETS_CREATED, "1h") == 4

    for later_by in (45 * 60.0, 55 * 60.0, 3600.0):  # the 1h window empties bucket by bucket
        read(last + later_by)

    hours_on = read(last + 3 * 3600)
    windowed = {k: v for k, v in hours_on.items() if k.window != LIVE_WINDOW and v}
    assert not windowed  # nothing left in any window (zero counts, no ratios) ...
    live = KpiKey(K.OPEN_TICKETS, LIVE_WINDOW)
    assert hours_on[live] == 3  # ... but the backlog remains (b, c, d)
    unanswered_age = hours_on[KpiKey(K.OLDEST_UNANSWERED_AGE, LIVE_WINDOW)]
    assert unanswered_age == last + 3 * 3600 - ts(600)  # b: only a bot replied
    assert hours_on[KpiKey(K.UNANSWERED_PAST_SLA, LIVE_WINDOW)] == 2
