"""Tests of the traffic simulator: the generator's contract, its realism, its noise, its sinks."""

from __future__ import annotations

import io
import itertools
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import (
    EVENT_TYPES,
    CustomerLifecycle,
    Event,
    SurveySubmitted,
    TicketCreated,
    TicketEscalated,
    TicketReplied,
    TicketStatusChanged,
    event_time,
    routing_key,
)
from streams.simulation.bad import BAD_KINDS, DECODABLE_BAD_KINDS
from streams.simulator import (
    Progress,
    SimOptions,
    SimRecord,
    generate,
    main,
    read_jsonl,
    write_jsonl,
)

START = datetime(2026, 11, 23, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
HOUR = 3600.0
DAY = 24 * HOUR
NOISE = SimOptions(duplicate_rate=0.05, out_of_order=0.1, bad_input_rate=0.05)
OFFSET_RE = re.compile(r'"occurred_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"')


def decode(record: SimRecord) -> Event:
    return msgspec.json.decode(record.value, type=EVENT_TYPES[record.topic])


def ticket_of(ev: Event) -> str | None:
    """The ticket an event belongs to (None for a survey without ticket)."""
    if isinstance(ev, CustomerLifecycle):
        raise AssertionError("the simulator makes no customer-lifecycle events")
    return ev.ticket_id


def decodes(record: SimRecord) -> bool:
    """Whether the value is UTF-8 JSON that decodes into its topic's event type."""
    try:
        record.value.decode("utf-8")
        decode(record)
    except (UnicodeDecodeError, msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True


def valid(records: Iterable[SimRecord]) -> list[SimRecord]:
    return [r for r in records if r.bad is None]


def originals(records: Iterable[SimRecord]) -> list[SimRecord]:
    """Valid records that are not duplicates: the true event stream."""
    return [r for r in records if r.bad is None and r.duplicate is None]


def by_event_time(records: Iterable[SimRecord]) -> list[tuple[SimRecord, Event]]:
    decoded = [(r, decode(r)) for r in records]
    decoded.sort(key=lambda pair: event_time(pair[1]))
    return decoded


def first_responses(records: Iterable[SimRecord]) -> list[tuple[float, float]]:
    """(creation time, first-response seconds) of customer tickets, as SPEC §4 defines them."""
    return list(first_response_table(records).values())


def first_response_table(records: Iterable[SimRecord]) -> dict[str, tuple[float, float]]:
    """ticket id -> (creation time, first-response seconds), for customer tickets."""
    created: dict[str, float] = {}
    answered: dict[str, tuple[float, float]] = {}
    for _, ev in by_event_time(originals(records)):
        if isinstance(ev, TicketCreated) and ev.created_by == "customer":
            created[ev.ticket_id] = event_time(ev)
        elif (
            isinstance(ev, TicketReplied)
            and ev.author_type == "agent"
            and ev.public
            and ev.ticket_id in created
            and ev.ticket_id not in answered
        ):
            t0 = created[ev.ticket_id]
            answered[ev.ticket_id] = (t0, event_time(ev) - t0)
    return answered


@pytest.fixture(scope="module")
def noisy() -> list[SimRecord]:
    return list(generate("steady", seed=7, start=START, duration_seconds=4 * HOUR, options=NOISE))


@pytest.fixture(scope="module")
def clean() -> list[SimRecord]:
    return list(generate("steady", seed=7, start=START, duration_seconds=4 * HOUR))


# --- the record contract ------------------------------------------------------------------


def test_every_valid_record_decodes_into_its_type_with_the_routing_key(
    noisy: list[SimRecord],
) -> None:
    good = valid(noisy)
    assert len(good) > 10_000
    assert {r.topic for r in good} == {
        "ticket-created",
        "ticket-replied",
        "ticket-escalated",
        "ticket-status-changed",
        "survey-submitted",
    }
    for record in good:
        ev = decode(record)
        assert ev.schema_version == 1
        assert record.key == routing_key(ev).encode()
        ticket_id = ticket_of(ev)
        if ticket_id is not None:
            assert record.key == ticket_id.encode()
        else:
            assert isinstance(ev, SurveySubmitted)
        assert event_time(ev) == pytest.approx(record.occurred_at, abs=1e-6)
        assert OFFSET_RE.search(record.value.decode()), record.value
        assert record.deliver_at >= record.occurred_at


def test_event_ids_are_unique_except_for_resends(noisy: list[SimRecord]) -> None:
    ids = Counter(decode(r).event_id for r in valid(noisy) if r.duplicate != "resend")
    assert ids.most_common(1)[0][1] == 1
    found = (re.search(rb'"event_id":"([0-9a-f-]{36})"', r.value) for r in noisy if r.bad)
    bad_ids = {m.group(1).decode() for m in found if m}
    assert bad_ids
    assert not bad_ids & set(ids)


def test_timestamps_use_utc_and_some_other_offsets(clean: list[SimRecord]) -> None:
    offsets = Counter(r.value.split(b'"occurred_at":"')[1][23:29] for r in clean)
    assert offsets[b"+00:00"] > 0.9 * len(clean)
    assert len(offsets) > 2  # same instants, written in other zones


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def run(seed: int) -> list[SimRecord]:
        return list(
            generate("incident", seed=seed, start=START, duration_seconds=HOUR, options=NOISE)
        )

    assert run(11) == run(11)
    assert [r.value for r in run(11)] != [r.value for r in run(12)]


def test_noise_does_not_change_the_true_event_stream(
    noisy: list[SimRecord], clean: list[SimRecord]
) -> None:
    assert Counter(r.value for r in originals(noisy)) == Counter(r.value for r in clean)
    assert all(r.duplicate is None and r.bad is None for r in clean)


def test_count_and_duration_limits() -> None:
    assert len(list(generate("steady", seed=1, start=START, count=1234, options=NOISE))) == 1234
    assert list(generate("steady", seed=1, start=START, count=0)) == []
    end = START + 2 * HOUR
    records = list(generate("daily", seed=1, start=START, duration_seconds=2 * HOUR))
    assert records
    assert max(r.occurred_at for r in records) < end
    assert min(r.occurred_at for r in records) >= START


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "weekly"}, "unknown profile"),
        ({"rate": 0.0}, "rate"),
        ({"teams": []}, "teams"),
        ({"teams": ["A", "A"]}, "teams"),
        ({"teams": [""]}, "team name"),
        ({"count": -1}, "count"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"profile": "steady", "seed": 1, "start": START, "count": 10}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(**args)  # type: ignore[arg-type]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate_rate"):
        SimOptions(duplicate_rate=1.5)
    with pytest.raises(ValueError, match="time_scale"):
        SimOptions(time_scale=0)
    with pytest.raises(ValueError, match="incident_backlog_growth"):
        SimOptions(incident_backlog_growth=1.0)
    with pytest.raises(ValueError, match="incident_volume_factor"):
        SimOptions(incident_volume_factor=0.5)


# --- realism ------------------------------------------------------------------------------


def test_ticket_lives_are_realistic(clean: list[SimRecord]) -> None:
    events = [ev for _, ev in by_event_time(clean)]
    created = [e for e in events if isinstance(e, TicketCreated)]
    replies = [e for e in events if isinstance(e, TicketReplied)]
    escalations = [e for e in events if isinstance(e, TicketEscalated)]
    surveys = [e for e in events if isinstance(e, SurveySubmitted)]

    # Poisson arrivals at the default 600/h: about 2400 tickets in 4 hours.
    assert 2100 < len(created) < 2700
    gaps = [b.occurred_at - a.occurred_at for a, b in itertools.pairwise(created)]
    mean_gap = statistics.fmean(g.total_seconds() for g in gaps)
    assert 5.0 < mean_gap < 7.0
    assert statistics.pstdev(g.total_seconds() for g in gaps) == pytest.approx(mean_gap, rel=0.15)

    assert {c.channel for c in created} == {
        "email",
        "chat",
        "phone",
        "web",
        "social",
        "api",
        "other",
    }
    assert {c.priority for c in created} == {"low", "normal", "high", "urgent"}
    assert {c.team for c in created} == {"Billing", "Technical", "Accounts", "Onboarding"}
    creators = Counter(c.created_by for c in created)
    assert creators["customer"] > 0.75 * len(created)
    assert creators["agent"] > 0
    assert creators["system"] > 0

    authors = Counter((r.author_type, r.public) for r in replies)
    assert authors[("bot", True)] > 0
    assert authors[("agent", False)] > 0  # internal notes
    assert authors[("customer", True)] > 0
    assert authors[("agent", True)] > len(created) * 0.8

    assert 0.05 * len(created) < len({e.ticket_id for e in escalations}) < 0.25 * len(created)
    assert any(e.level == 2 for e in escalations)
    assert any(e.to_team is not None for e in escalations)
    assert all(e.level in (1, 2) for e in escalations)

    kinds = Counter(s.kind for s in surveys)
    assert kinds["csat"] > 0
    assert kinds["nps"] > 0
    assert kinds["enps"] > 0
    csat = [s.score for s in surveys if s.kind == "csat"]
    assert all(1 <= s <= 5 for s in csat)
    assert statistics.fmean(csat) > 3.8  # skewed high
    assert sum(s >= 4 for s in csat) > 0.6 * len(csat)
    assert all(s.ticket_id is not None for s in surveys if s.kind == "csat")
    assert all(s.ticket_id is None and s.team for s in surveys if s.kind == "enps")
    assert any(s.ticket_id is None and s.team for s in surveys if s.kind == "nps")
    assert any(s.ticket_id is not None for s in surveys if s.kind == "nps")


def test_status_flow_notes_and_bots_come_in_order(clean: list[SimRecord]) -> None:
    history: dict[str, list[Event]] = defaultdict(list)
    for _, ev in by_event_time(clean):
        ticket_id = ticket_of(ev)
        if ticket_id is not None:
            history[ticket_id].append(ev)
    allowed = {
        (None, "open"),
        ("open", "pending"),
        ("open", "on_hold"),
        ("on_hold", "open"),
        ("pending", "open"),
        ("open", "solved"),
        ("pending", "solved"),
        ("solved", "open"),
        ("solved", "closed"),
    }
    reopened = 0
    for ticket_id, evs in history.items():
        assert isinstance(evs[0], TicketCreated), ticket_id
        status: str | None = None
        first_public_agent = False
        solved = False
        for ev in evs[1:]:
            if isinstance(ev, TicketStatusChanged):
                assert (status, ev.status) in allowed, (ticket_id, status, ev.status)
                reopened += status == "solved" and ev.status == "open"
                status = ev.status
                solved = solved or ev.status == "solved"
            elif isinstance(ev, TicketReplied):
                if ev.author_type == "bot" or not ev.public:
                    assert not first_public_agent  # bots and notes precede the first answer
                first_public_agent = first_public_agent or (ev.author_type == "agent" and ev.public)
            elif isinstance(ev, SurveySubmitted):
                assert solved  # surveys follow a resolution
    assert reopened > 0.01 * len(history)  # 7 % of solved tickets; many are still open


def test_no_event_precedes_its_ticket(clean: list[SimRecord]) -> None:
    created: dict[str, float] = {}
    for record, ev in by_event_time(clean):
        if isinstance(ev, TicketCreated):
            created[ev.ticket_id] = record.occurred_at
        elif (ticket_id := ticket_of(ev)) is not None:
            assert ticket_id in created
            assert record.occurred_at > created[ticket_id]
    # Without out-of-order delivery, records arrive in event-time order.
    times = [r.occurred_at for r in clean]
    assert times == sorted(times)


def test_first_response_is_lognormal_and_faster_for_urgent_and_chat(
    clean: list[SimRecord],
) -> None:
    created = {ev.ticket_id: ev for ev in map(decode, clean) if isinstance(ev, TicketCreated)}
    frt: dict[str, list[float]] = defaultdict(list)
    for ticket_id, (_, seconds) in first_response_table(clean).items():
        ev = created[ticket_id]
        frt[ev.priority].append(seconds)
        frt[ev.channel].append(seconds)
    assert statistics.median(frt["urgent"]) < statistics.median(frt["normal"]) / 3
    assert statistics.median(frt["chat"]) < statistics.median(frt["email"]) / 3
    # Right-skewed like a lognormal: the mean is well above the median.
    everything = frt["email"]
    assert statistics.fmean(everything) > 1.2 * statistics.median(everything)


# --- profiles -----------------------------------------------------------------------------


def test_incident_profile_raises_first_response_times_and_volume() -> None:
    options = SimOptions(incident_start=2 * HOUR, incident_ramp=1500.0)
    records = list(
        generate("incident", seed=3, start=START, duration_seconds=4 * HOUR, options=options)
    )
    # Measured when the first response lands, as the windowed KPI and its alert see it.
    replies = [(t0 + s, s) for t0, s in first_responses(records)]
    before = [s for at, s in replies if START + HOUR <= at < START + 2 * HOUR]
    after = [s for at, s in replies if at >= START + 3 * HOUR]
    assert len(before) > 300
    assert len(after) > 300
    assert statistics.median(after) > 2 * statistics.median(before)

    created = [r.occurred_at for r in originals(records) if r.topic == "ticket-created"]
    hour_before = sum(START + HOUR <= t < START + 2 * HOUR for t in created)
    last_hour = sum(t >= START + 3 * HOUR for t in created)
    assert last_hour > 1.3 * hour_before

    steady = list(generate("steady", seed=3, start=START, duration_seconds=4 * HOUR))
    steady_replies = [(t0 + s, s) for t0, s in first_responses(steady)]
    late = [s for at, s in steady_replies if at >= START + 3 * HOUR]
    assert statistics.median(after) > 2 * statistics.median(late)


def test_incident_first_response_climbs_steadily() -> None:
    options = SimOptions(incident_start=1800.0, incident_ramp=1500.0, time_scale=0.1)
    records = generate("incident", seed=5, start=START, duration_seconds=2 * HOUR, options=options)
    replies = [(t0 + s, s) for t0, s in first_responses(records)]

    def median_between(lo: float, hi: float) -> float:
        return statistics.median(s for at, s in replies if START + lo <= at < START + hi)

    calm = median_between(0, 1800)
    quarters = [median_between(1800 + i * 900, 1800 + (i + 1) * 900) for i in range(5)]
    assert quarters == sorted(quarters)
    assert quarters[1] > 2 * calm  # within 30 minutes of the start: alert territory
    assert quarters[-1] > 8 * calm


def test_daily_profile_is_quiet_at_night_and_busy_at_midday() -> None:
    records = generate("daily", seed=2, start=START, duration_seconds=24 * HOUR, rate=300)
    hours = Counter(
        int((r.occurred_at - START) // HOUR) for r in records if r.topic == "ticket-created"
    )
    night = hours[2] + hours[3]
    midday = hours[12] + hours[13]
    assert midday > 450  # the 300/h peak
    assert night < midday / 5
    assert hours[8] < hours[11]


def test_daily_profile_follows_the_configured_time_zone() -> None:
    options = SimOptions(daily_utc_offset_hours=-6.0)  # the peak moves to 19:00 UTC
    records = generate(
        "daily", seed=2, start=START, duration_seconds=24 * HOUR, rate=300, options=options
    )
    hours = Counter(
        int((r.occurred_at - START) // HOUR) for r in records if r.topic == "ticket-created"
    )
    assert hours[19] > 3 * hours[13 - 6]


def test_time_scale_compresses_ticket_lives() -> None:
    normal = first_responses(generate("steady", seed=9, start=START, duration_seconds=2 * HOUR))
    fast = first_responses(
        generate(
            "steady",
            seed=9,
            start=START,
            duration_seconds=2 * HOUR,
            options=SimOptions(time_scale=0.1),
        )
    )
    assert statistics.median(s for _, s in fast) < statistics.median(s for _, s in normal) / 5


# --- delivery noise -----------------------------------------------------------------------


def test_duplicates_share_event_id_and_bytes_and_come_later(noisy: list[SimRecord]) -> None:
    first_seen: dict[bytes, int] = {}
    by_ticket_created: dict[bytes, SimRecord] = {}
    resends = recreates = 0
    for i, record in enumerate(noisy):
        if record.bad is not None:
            continue
        if record.duplicate == "resend":
            resends += 1
            assert record.value in first_seen  # an identical record was delivered before
            assert decode(record).event_id == decode(noisy[first_seen[record.value]]).event_id
        elif record.duplicate == "recreate":
            recreates += 1
            original = by_ticket_created[record.key]
            assert record.topic == "ticket-created"
            a, b = decode(original), decode(record)
            assert isinstance(a, TicketCreated)
            assert isinstance(b, TicketCreated)
            assert a.event_id != b.event_id
            assert msgspec.structs.replace(b, event_id=a.event_id) == a
        else:
            first_seen.setdefault(record.value, i)
            if record.topic == "ticket-created":
                by_ticket_created[record.key] = record
    assert resends > 0.03 * len(noisy)
    assert recreates > 0


def test_out_of_order_delivers_replies_before_their_ticket(noisy: list[SimRecord]) -> None:
    delivered = [r.deliver_at for r in noisy]
    assert delivered == sorted(delivered)
    seen_created: set[bytes] = set()
    early = Counter[str]()
    for record in valid(noisy):
        if record.topic == "ticket-created":
            seen_created.add(record.key)
        elif not record.key.startswith(b"survey:") and record.key not in seen_created:
            early[record.topic] += 1
    assert early["ticket-replied"] > 10
    assert early["ticket-status-changed"] > 10
    late = [r for r in valid(noisy) if r.deliver_at > r.occurred_at and r.duplicate is None]
    assert 0.05 * len(noisy) < len(late) < 0.15 * len(noisy)
    assert max(r.deliver_at - r.occurred_at for r in late) <= 120.0


def test_bad_input_is_really_invalid(noisy: list[SimRecord]) -> None:
    bad = [r for r in noisy if r.bad is not None]
    assert {r.bad for r in bad} == set(BAD_KINDS)
    assert 0.03 * len(noisy) < len(bad) < 0.07 * len(noisy)
    created = {
        ev.ticket_id: event_time(ev)
        for ev in map(decode, originals(noisy))
        if isinstance(ev, TicketCreated)
    }
    for record in bad:
        if record.bad in DECODABLE_BAD_KINDS:
            ev = decode(record)  # well-formed, but wrong in time
            if record.bad == "before_created":
                assert isinstance(ev, TicketReplied | TicketEscalated | TicketStatusChanged)
                assert event_time(ev) < created[ev.ticket_id]
            elif record.bad == "csat_score":
                assert isinstance(ev, SurveySubmitted)
                assert ev.kind == "csat"
                assert not 1 <= ev.score <= 5
            else:
                assert event_time(ev) > record.deliver_at + 86_000
            continue
        assert not decodes(record), (record.bad, record.value)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    profile=st.sampled_from(["steady", "daily", "incident"]),
    rate=st.floats(50, 3000),
    teams=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=5, unique=True),
)
def test_any_run_is_valid_and_causal(
    seed: int, profile: str, rate: float, teams: list[str]
) -> None:
    options = SimOptions(out_of_order=0.2, duplicate_rate=0.1, bad_input_rate=0.1)
    records = list(
        generate(
            profile,  # type: ignore[arg-type]
            seed=seed,
            start=START + seed % 86400,
            count=600,
            rate=rate,
            teams=teams,
            options=options,
        )
    )
    assert len(records) == 600
    assert [r.deliver_at for r in records] == sorted(r.deliver_at for r in records)
    cut_off = records[-1].deliver_at
    created: dict[str, float] = {}
    for record, ev in by_event_time(originals(records)):
        assert record.key == routing_key(ev).encode()
        assert record.occurred_at <= record.deliver_at <= record.occurred_at + 120.0
        if isinstance(ev, TicketCreated):
            assert ev.team in teams
            created[ev.ticket_id] = record.occurred_at
        elif (ticket_id := ticket_of(ev)) is not None:
            if ticket_id in created:
                assert record.occurred_at > created[ticket_id]
            else:  # its ticket-created was delayed past the last record
                assert record.occurred_at > cut_off - 120.0


# --- sinks and command line ---------------------------------------------------------------


def test_jsonl_round_trip(tmp_path: Path, noisy: list[SimRecord]) -> None:
    sample = noisy[:3000]
    assert any(r.bad == "invalid_utf8" for r in sample)
    path = tmp_path / "out.jsonl"
    assert write_jsonl(sample, path) == len(sample)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(sample)
    first = msgspec.json.decode(lines[0])
    assert set(first) >= {"topic", "key", "value", "occurred_at"}
    assert list(read_jsonl(path)) == sample
    assert any('"value_base64"' in line for line in lines)


def test_jsonl_to_an_open_file_with_progress() -> None:
    out = io.StringIO()
    err = io.StringIO()
    progress = Progress(err, interval=0.0, tty=False)
    records = generate("steady", seed=4, start=START, count=50)
    assert write_jsonl(records, out, progress=progress) == 50
    progress.finish()
    lines = err.getvalue().splitlines()
    assert len(lines) == 51
    assert lines[-1].startswith("sent 50 events (")
    assert "\r" not in err.getvalue()
    assert re.search(r"sent 50 events \(\d+\.\d/s\), \d+ tickets, .* elapsed \d+\.\ds", lines[-1])


def test_progress_on_a_tty_rewrites_one_line() -> None:
    err = io.StringIO()
    progress = Progress(err, interval=0.0, tty=True)
    for i, record in enumerate(generate("steady", seed=4, start=START, count=5), 1):
        progress(i, record)
    progress.finish()
    text = err.getvalue()
    assert text.count("\r") == 6
    assert text.endswith("\n")
    assert text.count("\n") == 1


def test_cli_backfill_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sim.jsonl"
    argv = ["--output", str(path), "--duration", "30m", "--seed", "5", "--profile", "daily"]
    argv += ["--start", "2026-11-23T12:00:00+00:00", "--teams", "Red, Blue", "--quiet"]
    assert main(argv) == 0
    records = list(read_jsonl(path))
    assert records
    assert all(START + 12 * HOUR <= r.occurred_at < START + 12.5 * HOUR for r in records)
    teams = {ev.team for ev in map(decode, records) if isinstance(ev, TicketCreated)}
    assert teams == {"Red", "Blue"}
    assert "seed=5" in capsys.readouterr().err
    # Same seed, same file.
    again = tmp_path / "again.jsonl"
    assert main([*argv[:1], str(again), *argv[2:]]) == 0
    assert again.read_bytes() == path.read_bytes()


def _late_surveys_and_reopens(path: Path) -> tuple[int, int]:
    """CSAT surveys at least two days after their ticket's first solve, reopens at least a
    week after it."""
    solved: dict[str, float] = {}
    surveys = reopens = 0
    for ev in sorted(map(decode, read_jsonl(path)), key=lambda e: e.occurred_at):
        at = ev.occurred_at.timestamp()
        if isinstance(ev, TicketStatusChanged) and ev.status == "solved":
            solved.setdefault(ev.ticket_id, at)
        elif isinstance(ev, TicketStatusChanged) and ev.status == "open":
            reopens += at - solved.get(ev.ticket_id, at) >= 7 * DAY
        elif isinstance(ev, SurveySubmitted) and ev.kind == "csat" and ev.ticket_id in solved:
            surveys += at - solved[ev.ticket_id] >= 2 * DAY
    return surveys, reopens


def test_cli_late_surveys_and_reopens_in_any_profile(tmp_path: Path) -> None:
    """--late-survey-share / --late-reopen-share (SPEC §3 "attributes outlive state"): CSAT
    surveys days after the solve and reopens a week later, in event time."""
    path = tmp_path / "sim.jsonl"
    argv = ["--output", str(path), "--duration", "12d", "--seed", "3", "--rate", "10", "--quiet"]
    argv += ["--start", "2026-11-23T12:00:00+00:00"]
    assert main([*argv, "--late-survey-share", "1", "--late-reopen-share", "0.5"]) == 0
    surveys, reopens = _late_surveys_and_reopens(path)
    assert surveys > 100
    assert reopens > 50
    assert main(argv) == 0  # the steady profile has none by default
    assert _late_surveys_and_reopens(path) == (0, 0)


def test_cli_count_backfill_ends_near_now(tmp_path: Path) -> None:
    path = tmp_path / "sim.jsonl"
    assert main(["--output", str(path), "--count", "500", "--rate", "3000", "--quiet"]) == 0
    records = list(read_jsonl(path))
    assert len(records) == 500
    now = datetime.now(tz=UTC).timestamp()
    assert all(r.occurred_at < now for r in records)


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "5"],  # no sink
        ["--output", "x", "--bootstrap-servers", "y", "--count", "5"],
        ["--output", "x"],  # a backfill needs an end
        ["--output", "x", "--duration", "ten minutes"],
        ["--output", "x", "--count", "5", "--duplicate-rate", "2"],
        ["--output", "x", "--count", "5", "--late-survey-share", "1.5"],
        ["--output", "x", "--realtime", "--start", "0"],
        ["--output", "x", "--count", "5", "--start", "2026-11-23T12:00:00"],
        ["--output", "x", "--count", "5", "--topic", "tickets=x"],
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
