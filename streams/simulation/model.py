"""Deterministic generator of realistic helpdesk traffic (SPEC §2, §3, §6).

:func:`generate` turns a profile, a seed and a few knobs into an iterator of :class:`SimRecord`:
ready-to-send Kafka records (topic, key, value bytes) in *delivery* order. Everything random comes
from ``random.Random`` instances seeded from ``seed``: the same arguments always give the same
bytes, and there is no global state.

Two random streams are used: one for the traffic itself (arrivals, ticket lifecycles, ids) and one
for delivery noise (duplicates, out-of-order delays, bad input). So switching noise on or off does
not change the valid events: a clean run and a noisy run with the same seed carry the same tickets.

Time is handled in integer milliseconds internally, so ``occurred_at`` text and
:attr:`SimRecord.occurred_at` agree exactly.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

import msgspec

from streams.core.calendar import Calendar, CalendarSet, business_deadline_us
from streams.core.kpis import DEFAULT_SLA_TARGETS
from streams.simulation.bad import kinds_for, make_bad
from streams.simulation.timefmt import format_time

Profile = Literal["steady", "daily", "incident", "churn", "office-hours"]
PROFILES: tuple[Profile, ...] = get_args(Profile)

CREATED: Final = "ticket-created"
REPLIED: Final = "ticket-replied"
ESCALATED: Final = "ticket-escalated"
STATUS: Final = "ticket-status-changed"
SURVEY: Final = "survey-submitted"
LIFECYCLE: Final = "customer-lifecycle"
TOPICS: tuple[str, ...] = (CREATED, REPLIED, ESCALATED, STATUS, SURVEY, LIFECYCLE)

DEFAULT_TEAMS: tuple[str, ...] = ("Billing", "Technical", "Accounts", "Onboarding")
# Relative ticket share of the default teams; custom team lists share traffic evenly.
_DEFAULT_TEAM_WEIGHTS: tuple[float, ...] = (0.30, 0.35, 0.20, 0.15)
DEFAULT_RATE: Final = 600.0
"""Default ticket arrival rate, in tickets per hour."""

# --- the traffic model's constants (documented in the module and the README) ------------------

_CHANNELS = ("email", "chat", "phone", "web", "social", "api", "other")
_CHANNEL_WEIGHTS = (0.35, 0.25, 0.10, 0.15, 0.06, 0.06, 0.03)
_PRIORITIES = ("low", "normal", "high", "urgent")
_PRIORITY_WEIGHTS = (0.15, 0.55, 0.22, 0.08)
_CREATORS = ("customer", "agent", "system")
_CREATOR_WEIGHTS = (0.86, 0.10, 0.04)

# First public agent reply: lognormal, median by priority (seconds) times a channel factor.
_FRT_MEDIAN = {"urgent": 360.0, "high": 1200.0, "normal": 2700.0, "low": 5400.0}
_FRT_CHANNEL = {
    "email": 1.0,
    "chat": 0.12,
    "phone": 0.05,
    "web": 1.0,
    "social": 0.6,
    "api": 1.2,
    "other": 1.0,
}
_FRT_SIGMA = 0.85
# Share of the incident backlog wait a ticket sees: urgent tickets jump the queue.
_BACKLOG_SHARE = {"urgent": 0.25, "high": 0.6, "normal": 1.0, "low": 1.2}
# Chance of a bot auto-reply right after a customer creates a ticket, by channel.
_BOT_REPLY = {
    "email": 0.6,
    "chat": 0.5,
    "phone": 0.0,
    "web": 0.7,
    "social": 0.4,
    "api": 0.3,
    "other": 0.3,
}
_ESCALATION = {"urgent": 0.25, "high": 0.15, "normal": 0.10, "low": 0.06}
_ESCALATION_REASONS = (
    "needs specialist",
    "customer requested manager",
    "bug confirmed",
    "billing dispute",
    "security review",
)
_ROUNDS = (0, 1, 2, 3)  # extra customer/agent exchanges after the first response
_ROUND_WEIGHTS = (0.50, 0.27, 0.15, 0.08)
_NO_REPLY_SOLVE = 0.03  # spam / merged tickets: solved without any public agent reply
_ON_HOLD = 0.05
_REOPEN = 0.07
_CLOSE = 0.85
_CSAT = 0.35
_TICKET_NPS = 0.08
# Surveys not tied to a ticket, as a share of the ticket arrival rate.
_STANDALONE_NPS = 0.05
_ENPS = 0.02
_CSAT_SCORES = (1, 2, 3, 4, 5)
_CSAT_HAPPY = (0.04, 0.04, 0.08, 0.22, 0.62)
_CSAT_UNHAPPY = (0.15, 0.12, 0.18, 0.25, 0.30)
_NPS_SCORES = tuple(range(11))
_NPS_WEIGHTS = (0.03, 0.01, 0.02, 0.02, 0.03, 0.05, 0.06, 0.10, 0.18, 0.22, 0.28)
_ENPS_WEIGHTS = (0.02, 0.01, 0.02, 0.03, 0.04, 0.08, 0.10, 0.18, 0.20, 0.17, 0.15)
_AGENTS_PER_TEAM = 6
_REPEAT_CUSTOMER = 0.25
_CUSTOMER_MEMORY = 5000
# Non-UTC offsets (minutes) used for a share of timestamps: same instant, different notation.
_LOCAL_OFFSETS = (120, -300, 330, 540, -180, 60)

# Customer lifecycle (churn profile). Segments and their share of sign-ups; a few sign-ups name
# no segment (they count as "unknown").
_SEGMENTS = ("free", "starter", "pro", "enterprise")
_SEGMENT_WEIGHTS = (0.40, 0.30, 0.20, 0.10)
_NO_SEGMENT = 0.05
# Lifecycle arrivals per ticket arrival: sign-ups, churns of a random active customer, plan
# changes (an "activated" naming another segment).
_SIGNUP_PER_TICKET = 0.05
_CHURN_PER_TICKET = 0.03
_PLAN_CHANGE_PER_TICKET = 0.01
_REACTIVATE = 0.25  # share of churned customers that come back ...
_REACTIVATE_MEDIAN_S = 6 * 3600.0  # ... after about this long (times time_scale)
_INITIAL_AGE_DAYS = (1.0, 400.0)  # the initial customer base signed up this long before start
_DAY_S = 86400.0

# Office-hours profile: agents work these hours unless generate(calendars=...) says otherwise (the
# default calendar of deploy/calendars.toml without its holidays).
OFFICE_HOURS = CalendarSet(
    Calendar.weekly(
        "Europe/Berlin", {"mon-fri": ["09:00-12:30", "13:30-18:00"], "sat": ["10:00-14:00"]}
    )
)

# Daily profile: arrival-rate multiplier of the hour of day (peak 1.0 at 13:00, ~0.08 at night).
_DAY_PEAK_HOUR = 13.0
_DAY_WIDTH_HOURS = 4.5
_DAY_FLOOR = 0.08


def day_curve(hour: float) -> float:
    """Arrival-rate multiplier of the daily profile at ``hour`` (0 to 24, local time)."""
    d = abs(hour % 24.0 - _DAY_PEAK_HOUR)
    d = min(d, 24.0 - d)
    return _DAY_FLOOR + (1.0 - _DAY_FLOOR) * math.exp(-((d / _DAY_WIDTH_HOURS) ** 2))


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record to deliver, with what the simulator knows about it.

    ``topic``, ``key`` and ``value`` are what goes to Kafka. ``occurred_at`` is the event time
    (POSIX seconds) written in the value; ``deliver_at`` the simulated delivery time (records are
    yielded in this order; realtime pacing sends each record at this wall-clock time).
    ``bad`` names the kind of invalid input (see :data:`streams.simulation.bad.BAD_KINDS`),
    ``None`` for a valid record. ``duplicate`` is ``"resend"`` for an identical re-send of an
    earlier record, ``"recreate"`` for a second ``ticket-created`` of a known ticket (new
    ``event_id``, same content), else ``None``.
    """

    topic: str
    key: bytes
    value: bytes
    occurred_at: float
    deliver_at: float
    bad: str | None = None
    duplicate: str | None = None


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not value > 0.0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class SimOptions:
    """Knobs of :func:`generate`. Rates and shares are fractions 0 to 1; times are seconds.

    Delivery noise (applied per valid record):

    - ``duplicate_rate``: chance that a record is sent again later (identical bytes, same
      ``event_id``), ``duplicate_delay`` seconds later at most. A ``recreate_share`` of the
      duplicated ``ticket-created`` records is instead a second ``ticket-created`` for the same
      ticket with a new ``event_id``.
    - ``out_of_order``: chance that a record's delivery is delayed by up to
      ``out_of_order_delay`` seconds, so replies and surveys can arrive before their ticket.
    - ``bad_input_rate``: chance that an invalid record (derived from the valid one) is also sent.

    Traffic shape:

    - ``time_scale`` multiplies every delay inside a ticket's life (response, resolution,
      surveys); 0.1 makes a demo ten times livelier without changing the arrival rate.
    - ``local_time_share``: share of timestamps written with a non-UTC offset (same instant).
    - ``daily_utc_offset_hours``: the daily profile follows the day in this time zone.
    - ``late_survey_share``: share of solved customer tickets that get a CSAT survey days
      after the solve (median 4 days, some beyond a week); ``late_reopen_share``: share of
      solved tickets reopened 7-10 days later (event time, not scaled). Default: 0.3 and
      0.03 for the ``churn`` profile, else 0.
    - ``incident_start`` (seconds after ``start``; default a third of the duration, or 600 s),
      ``incident_ramp`` (seconds to full strength), ``incident_backlog_growth`` (at full
      strength, a new ticket's wait for its first response grows by this many seconds per
      second: 0.6 means +36 minutes per hour; urgent tickets see a quarter of it, high 60 %,
      low 120 %), ``incident_volume_factor`` (arrival rate multiplied by up to this). The
      incident holds at full strength to the end of the run.
    """

    duplicate_rate: float = 0.0
    duplicate_delay: float = 300.0
    recreate_share: float = 0.25
    out_of_order: float = 0.0
    out_of_order_delay: float = 120.0
    bad_input_rate: float = 0.0
    time_scale: float = 1.0
    local_time_share: float = 0.05
    daily_utc_offset_hours: float = 0.0
    incident_start: float | None = None
    incident_ramp: float = 1500.0
    incident_backlog_growth: float = 0.6
    incident_volume_factor: float = 1.6
    late_survey_share: float | None = None
    late_reopen_share: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "duplicate_rate",
            "recreate_share",
            "out_of_order",
            "bad_input_rate",
            "local_time_share",
        ):
            _fraction(name, getattr(self, name))
        for name in ("late_survey_share", "late_reopen_share"):
            if getattr(self, name) is not None:
                _fraction(name, getattr(self, name))

        for name in (
            "duplicate_delay",
            "out_of_order_delay",
            "time_scale",
            "incident_ramp",
            "incident_volume_factor",
        ):
            _positive(name, getattr(self, name))
        if self.incident_start is not None and not self.incident_start >= 0.0:
            raise ValueError(f"incident_start must be >= 0, got {self.incident_start!r}")
        if not -14.0 <= self.daily_utc_offset_hours <= 14.0:
            raise ValueError("daily_utc_offset_hours must be between -14 and 14")
        if not 0.0 < self.incident_backlog_growth < 1.0:
            raise ValueError("incident_backlog_growth must be between 0 and 1 (exclusive)")
        if self.incident_volume_factor < 1.0:
            raise ValueError("incident_volume_factor must be >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class LifecycleOptions:
    """``customer-lifecycle`` traffic (sign-ups, churns, plan changes, reactivations).

    - ``customers``: customers already active at ``start`` (their activations are back-dated
      up to 400 days, so churn and retention have a population from the first minute); the
      traffic runs when it is above 0. Default: 2000 for the ``churn`` profile, else 0.
    - ``wave_segment``, ``wave_share``, ``wave_start`` (seconds after ``start``; default as
      ``SimOptions.incident_start``), ``wave_length``: in the ``churn`` profile, that share of
      the segment's active customers churns during the wave.
    """

    customers: int | None = None
    wave_segment: str = "starter"
    wave_share: float = 0.5
    wave_start: float | None = None
    wave_length: float = 1200.0

    def __post_init__(self) -> None:
        if self.customers is not None and self.customers < 0:
            raise ValueError(f"customers must be >= 0, got {self.customers!r}")
        _fraction("wave_share", self.wave_share)
        _positive("wave_length", self.wave_length)
        if self.wave_start is not None and not self.wave_start >= 0.0:
            raise ValueError(f"wave_start must be >= 0, got {self.wave_start!r}")


_UUID_VERSION_MASK: Final = ~(0xF000 << 64) & ~(0xC000 << 48) & ((1 << 128) - 1)
_UUID_VERSION_BITS: Final = (0x4000 << 64) | (0x8000 << 48)


def random_uuid4(rng: random.Random) -> str:
    """A version-4 UUID text from ``rng`` (same text as ``uuid.UUID(int=..., version=4)``)."""
    h = f"{(rng.getrandbits(128) & _UUID_VERSION_MASK) | _UUID_VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "team"


@dataclass(slots=True)
class _Pending:
    """An event scheduled in event time, not yet emitted."""

    topic: str
    key: str
    fields: dict[str, Any]
    created_ms: int | None  # the ticket's creation time, for ticket events


@dataclass(slots=True)
class _Ticket:
    """A ticket whose life is being written, with its running clock."""

    id: str
    t0: int
    now: int
    team: str
    channel: str
    priority: str
    created_by: str
    public_agent_replies: int = 0
    escalation_level: int = 0
    first_response_s: float | None = None
    reopened: bool = False
    solved_at: int | None = None


@dataclass(slots=True)
class _State:
    event_heap: list[tuple[int, int, _Pending]] = field(default_factory=list)
    delivery_heap: list[tuple[int, int, SimRecord]] = field(default_factory=list)
    seq: int = 0
    tickets: int = 0
    surveys: int = 0
    customers: list[str] = field(default_factory=list)


class _Simulation:
    def __init__(
        self,
        profile: Profile,
        *,
        seed: int,
        start: float,
        duration_seconds: float | None,
        rate: float,
        teams: Sequence[str],
        options: SimOptions,
        lifecycle: LifecycleOptions,
        calendars: CalendarSet | None = None,
    ) -> None:
        self.profile = profile
        self.lifecycle_opts = lifecycle
        self.rng = random.Random(f"support-kpi-sim:{seed}:traffic")
        self.noise = random.Random(f"support-kpi-sim:{seed}:noise")
        # Event ids and timestamp notation, drawn at emission (in event-time order).
        self.ids = random.Random(f"support-kpi-sim:{seed}:ids")
        self.start_ms = round(start * 1000)
        self.end_ms = (
            None if duration_seconds is None else self.start_ms + round(duration_seconds * 1000)
        )
        self.rate_per_s = rate / 3600.0
        self.teams = tuple(teams)
        self.team_weights = (
            _DEFAULT_TEAM_WEIGHTS if self.teams == DEFAULT_TEAMS else (1.0,) * len(self.teams)
        )
        self.agents = {
            t: tuple(f"agt-{_slug(t)}-{i:02d}" for i in range(1, _AGENTS_PER_TEAM + 1))
            for t in self.teams
        }
        self.opts = options
        self.scale = options.time_scale
        office = profile == "office-hours"
        self.calendars = (calendars or OFFICE_HOURS) if office else None
        if options.incident_start is not None:
            incident_offset = options.incident_start
        elif duration_seconds is not None:
            incident_offset = duration_seconds / 3.0
        else:
            incident_offset = 600.0
        self.incident_start_s = start + incident_offset
        churn = profile == "churn"
        self.late_survey_share = _default(options.late_survey_share, 0.3 if churn else 0.0)
        self.late_reopen_share = _default(options.late_reopen_share, 0.03 if churn else 0.0)
        customers = _default(lifecycle.customers, 2000 if churn else 0)
        wave_offset = _default(lifecycle.wave_start, incident_offset)
        self.run = f"{self.rng.getrandbits(32):08x}"
        self.encoder = msgspec.json.Encoder()
        self.st = _State()
        # After the ticket traffic's set-up: it pushes the back-dated initial customer base.
        self.life = (
            _Lifecycle(self, seed, customers, start + wave_offset if churn else None)
            if customers
            else None
        )

    # --- profile curves ---------------------------------------------------------------------

    def incident_level(self, t_s: float) -> float:
        """0 before the incident, rising linearly to 1 over the ramp, then 1."""
        if self.profile != "incident":
            return 0.0
        return min(1.0, max(0.0, (t_s - self.incident_start_s) / self.opts.incident_ramp))

    def rate_multiplier(self, t_s: float) -> float:
        if self.profile == "daily":
            hour = (t_s / 3600.0 + self.opts.daily_utc_offset_hours) % 24.0
            return day_curve(hour)
        if self.profile == "incident":
            return 1.0 + (self.opts.incident_volume_factor - 1.0) * self.incident_level(t_s)
        return 1.0

    def max_multiplier(self) -> float:
        return self.opts.incident_volume_factor if self.profile == "incident" else 1.0

    def backlog_wait(self, t_s: float) -> float:
        """Seconds a ticket created at ``t_s`` waits in the incident's first-response backlog.

        Zero outside the incident profile and before the incident. From the start the backlog
        grows at ``incident_backlog_growth`` seconds of wait per second times the incident level
        (which ramps 0 to 1): quadratic during the ramp, then linear, as a queue whose arrivals
        outpace its agents. A FIFO queue cannot grow faster than time passes, so the growth is
        below 1 and first responses keep landing, later and later.
        """
        if self.profile != "incident" or t_s <= self.incident_start_s:
            return 0.0
        growth, ramp = self.opts.incident_backlog_growth, self.opts.incident_ramp
        elapsed = t_s - self.incident_start_s
        if elapsed <= ramp:
            return growth * elapsed * elapsed / (2.0 * ramp)
        return growth * (ramp / 2.0 + elapsed - ramp)

    # --- helpers ----------------------------------------------------------------------------

    def event_id(self, rng: random.Random) -> str:
        return random_uuid4(rng)

    def stamp(self, t_ms: int, ids: random.Random | None = None) -> str:
        r = self.ids if ids is None else ids
        if self.opts.local_time_share and r.random() < self.opts.local_time_share:
            return format_time(t_ms, r.choice(_LOCAL_OFFSETS))
        return format_time(t_ms)

    def push(
        self, t_ms: int, topic: str, key: str, body: dict[str, Any], created_ms: int | None
    ) -> None:
        """Schedule an event; its event_id and timestamp text are drawn when it is emitted."""
        fields: dict[str, Any] = {"event_id": "", "occurred_at": "", "schema_version": 1}
        fields.update(body)
        self.st.seq += 1
        heapq.heappush(
            self.st.event_heap, (t_ms, self.st.seq, _Pending(topic, key, fields, created_ms))
        )

    def lognormal(self, median_s: float, sigma: float) -> float:
        return self.rng.lognormvariate(math.log(median_s), sigma)

    def advance(self, tk: _Ticket, delay_s: float) -> int:
        """Move the ticket's clock forward by a scaled delay (at least 1 ms)."""
        tk.now += max(1, round(delay_s * self.scale * 1000.0))
        return tk.now

    def on_shift(self, tk: _Ticket, t_ms: int) -> int:
        """The first instant at or after ``t_ms`` in the working hours of the ticket's team
        (``t_ms`` itself outside the office-hours profile)."""
        if self.calendars is None:
            return t_ms
        opening_us = business_deadline_us(self.calendars.for_team(tk.team), t_ms * 1000, 0)
        return -(-opening_us // 1000)

    def agent_acts(self, tk: _Ticket) -> None:
        """An agent is about to act on the ticket: wait for the team's working hours."""
        tk.now = self.on_shift(tk, tk.now)

    def weighted(self, values: Sequence[Any], weights: Sequence[float]) -> Any:
        return self.rng.choices(values, weights)[0]

    def agent(self, tk: _Ticket) -> str:
        return self.rng.choice(self.agents[tk.team])

    def customer(self) -> str:
        known = self.st.customers
        if known and self.rng.random() < _REPEAT_CUSTOMER:
            return self.rng.choice(known)
        cid = f"cus-{self.rng.getrandbits(48):012x}"
        if len(known) < _CUSTOMER_MEMORY:
            known.append(cid)
        else:
            known[self.rng.randrange(_CUSTOMER_MEMORY)] = cid
        return cid

    # --- ticket life ------------------------------------------------------------------------

    def reply(self, tk: _Ticket, author: str, *, public: bool = True) -> None:
        body: dict[str, Any] = {"ticket_id": tk.id, "author_type": author}
        if author == "agent":
            body["agent_id"] = self.agent(tk)
            if public:
                tk.public_agent_replies += 1
                if tk.first_response_s is None:
                    tk.first_response_s = (tk.now - tk.t0) / 1000.0
        if not public:
            body["public"] = False
        self.push(tk.now, REPLIED, tk.id, body, tk.t0)

    def status(self, tk: _Ticket, status: str) -> None:
        if status == "solved":  # agents solve
            self.agent_acts(tk)
        self.push(tk.now, STATUS, tk.id, {"ticket_id": tk.id, "status": status}, tk.t0)

    def escalate(self, tk: _Ticket) -> None:
        self.agent_acts(tk)
        tk.escalation_level += 1
        body: dict[str, Any] = {"ticket_id": tk.id, "level": tk.escalation_level}
        others = [t for t in self.teams if t != tk.team]
        move = 0.35 if tk.escalation_level == 1 else 0.5
        if others and self.rng.random() < move:
            body["to_team"] = tk.team = self.rng.choice(others)
        if self.rng.random() < 0.7:
            body["reason"] = self.rng.choice(_ESCALATION_REASONS)
        self.push(tk.now, ESCALATED, tk.id, body, tk.t0)

    def agent_delay(self, tk: _Ticket, factor: float = 1.0) -> float:
        """A lognormal agent response delay for this ticket, in normal-speed seconds."""
        median = _FRT_MEDIAN[tk.priority] * _FRT_CHANNEL[tk.channel] * factor
        return self.lognormal(median, _FRT_SIGMA)

    def agent_reply_after(self, tk: _Ticket, factor: float = 1.0) -> None:
        self.advance(tk, self.agent_delay(tk, factor))
        self.agent_acts(tk)
        self.reply(tk, "agent")

    def ticket(self, t0: int) -> None:
        r = self.rng
        self.st.tickets += 1
        tk = _Ticket(
            id=f"T-{self.run}-{self.st.tickets:07d}",
            t0=t0,
            now=t0,
            team=self.weighted(self.teams, self.team_weights),
            channel=self.weighted(_CHANNELS, _CHANNEL_WEIGHTS),
            priority=self.weighted(_PRIORITIES, _PRIORITY_WEIGHTS),
            created_by=self.weighted(_CREATORS, _CREATOR_WEIGHTS),
        )
        body = {
            "ticket_id": tk.id,
            "customer_id": self.customer(),
            "team": tk.team,
            "channel": tk.channel,
            "priority": tk.priority,
        }
        if tk.created_by != "customer" or r.random() < 0.5:  # the default may be left out
            body["created_by"] = tk.created_by
        self.push(t0, CREATED, tk.id, body, t0)

        if tk.created_by == "customer" and r.random() < _BOT_REPLY[tk.channel]:
            self.advance(tk, r.uniform(1.0, 15.0))
            self.reply(tk, "bot")
        self.advance(tk, r.uniform(0.5, 30.0))
        self.status(tk, "open")

        if r.random() < _NO_REPLY_SOLVE:
            self.advance(tk, self.lognormal(1800.0, 1.0))
            self.status(tk, "solved")
            if r.random() < _CLOSE:
                self.advance(tk, self.lognormal(4 * 3600.0, 0.8))
                self.status(tk, "closed")
            return

        self.first_response(tk)
        self.conversation(tk)
        self.advance(tk, r.uniform(1.0, 600.0))
        self.status(tk, "solved")
        tk.solved_at = tk.now
        if r.random() < _REOPEN:
            tk.reopened = True
            self.advance(tk, self.lognormal(2 * 3600.0, 0.9))
            self.reopen_and_solve(tk)
            tk.solved_at = tk.now
        self.surveys_after(tk)
        if r.random() < _CLOSE:
            self.advance(tk, self.lognormal(4 * 3600.0, 0.8))
            self.status(tk, "closed")
        if self.late_reopen_share and r.random() < self.late_reopen_share:
            # The customer writes again a week or more later (event time, not scaled).
            week_later = tk.solved_at + round(r.uniform(7.0, 10.0) * _DAY_S * 1000)
            tk.now = max(tk.now + 1, week_later)
            self.reopen_and_solve(tk)

    def reopen_and_solve(self, tk: _Ticket) -> None:
        """The customer writes again: the ticket reopens, an agent answers and solves it."""
        self.reply(tk, "customer")
        self.advance(tk, self.rng.uniform(1.0, 5.0))
        self.status(tk, "open")
        self.agent_reply_after(tk, 0.7)
        self.advance(tk, self.rng.uniform(1.0, 300.0))
        self.status(tk, "solved")

    def first_response(self, tk: _Ticket) -> None:
        """Internal notes and customer chasers, then the first public agent reply."""
        r = self.rng
        # An agent-created ticket starts with the agent's own outbound message.
        agent_made = tk.created_by == "agent"
        delay = self.lognormal(60.0, 0.6) if agent_made else self.agent_delay(tk)
        wait = self.backlog_wait(tk.t0 / 1000.0) * _BACKLOG_SHARE[tk.priority]
        reply_at = tk.now + max(1, round((delay * self.scale + wait) * 1000.0))
        if not agent_made:
            reply_at = self.on_shift(tk, reply_at)
        before: list[tuple[int, str]] = []
        notes = self.weighted((0, 1, 2), (0.70, 0.22, 0.08))
        before += [(r.randint(tk.now + 1, reply_at), "note") for _ in range(notes)]
        if tk.created_by == "customer" and reply_at - tk.now > 600_000 and r.random() < 0.15:
            before.append((r.randint(tk.now + 1, reply_at), "customer"))
        for t, what in sorted(before):
            tk.now = max(t, tk.now + 1)
            if what == "note":
                self.reply(tk, "agent", public=False)
            else:
                self.reply(tk, "customer")
        tk.now = max(reply_at, tk.now + 1)
        self.reply(tk, "agent")

    def conversation(self, tk: _Ticket) -> None:
        """Follow-up exchanges, maybe an escalation and an on-hold period."""
        r = self.rng
        rounds: int = self.weighted(_ROUNDS, _ROUND_WEIGHTS)
        escalate = r.random() < _ESCALATION[tk.priority]
        escalate_at = r.randint(0, rounds) if escalate else -1
        hold_at = r.randrange(rounds) if rounds and r.random() < _ON_HOLD else -1
        if rounds or r.random() < 0.5:
            self.advance(tk, r.uniform(1.0, 5.0))
            self.status(tk, "pending")
        for i in range(rounds + 1):
            if i == escalate_at:
                self.advance(tk, self.lognormal(600.0, 0.8))
                self.escalate(tk)
                if r.random() < 0.25:
                    self.advance(tk, self.lognormal(1800.0, 0.8))
                    self.escalate(tk)
                self.agent_reply_after(tk, 1.0)
            if i == rounds:
                break
            self.advance(tk, self.lognormal(1500.0, 1.0))
            self.reply(tk, "customer")
            self.advance(tk, r.uniform(1.0, 5.0))
            self.status(tk, "open")
            if i == hold_at:
                self.advance(tk, self.lognormal(300.0, 0.8))
                self.status(tk, "on_hold")
                self.advance(tk, self.lognormal(3600.0, 0.8))
                self.status(tk, "open")
            self.agent_reply_after(tk, 0.7)
            if i < rounds - 1 or r.random() < 0.5:
                self.advance(tk, r.uniform(1.0, 5.0))
                self.status(tk, "pending")

    def surveys_after(self, tk: _Ticket) -> None:
        r = self.rng
        assert tk.solved_at is not None
        if tk.created_by == "customer" and r.random() < _CSAT:
            # past the default first-response target: surveys after a slow answer are worse
            target = DEFAULT_SLA_TARGETS[tk.priority]
            slow = tk.first_response_s is not None and tk.first_response_s > target
            unhappy = slow or tk.reopened or tk.escalation_level > 0
            weights = _CSAT_UNHAPPY if unhappy else _CSAT_HAPPY
            t = tk.solved_at + max(1, round(self.lognormal(2400.0, 1.0) * self.scale * 1000))
            self.survey(t, "csat", self.weighted(_CSAT_SCORES, weights), tk)
        if r.random() < _TICKET_NPS:
            t = tk.solved_at + max(1, round(self.lognormal(3 * 3600.0, 1.0) * self.scale * 1000))
            self.survey(t, "nps", self.weighted(_NPS_SCORES, _NPS_WEIGHTS), tk)
        if (
            self.late_survey_share
            and tk.created_by == "customer"
            and r.random() < self.late_survey_share
        ):
            # Survey tools often ask days later (event time, not scaled): median 4 days.
            t = tk.solved_at + round(self.lognormal(4 * _DAY_S, 0.5) * 1000)
            self.survey(t, "csat", self.weighted(_CSAT_SCORES, _CSAT_HAPPY), tk)

    def survey(
        self, t_ms: int, kind: str, score: int, tk: _Ticket | None, team: str | None = None
    ) -> None:
        self.st.surveys += 1
        body: dict[str, Any] = {
            "survey_id": f"S-{self.run}-{self.st.surveys:07d}",
            "kind": kind,
            "score": score,
        }
        if tk is not None:
            body["ticket_id"] = tk.id
            if self.rng.random() < 0.3:
                body["team"] = tk.team
        elif team is not None:
            body["team"] = team
        key = tk.id if tk is not None else f"survey:{body['survey_id']}"
        self.push(t_ms, SURVEY, key, body, tk.t0 if tk is not None else None)

    def standalone_survey(self, t_ms: int, kind: str) -> None:
        team = self.weighted(self.teams, self.team_weights)
        if kind == "enps":
            self.survey(t_ms, "enps", self.weighted(_NPS_SCORES, _ENPS_WEIGHTS), None, team)
        else:
            with_team = self.rng.random() < 0.9
            score = self.weighted(_NPS_SCORES, _NPS_WEIGHTS)
            self.survey(t_ms, "nps", score, None, team if with_team else None)

    # --- arrivals and delivery --------------------------------------------------------------

    def next_arrival(self, after_ms: int) -> tuple[int, str] | None:
        """Next arrival (time, kind) of the thinned Poisson process, or None past the end."""
        r = self.rng
        total = 1.0 + _STANDALONE_NPS + _ENPS
        peak = self.rate_per_s * self.max_multiplier() * total
        t = after_ms / 1000.0
        while True:
            t += r.expovariate(peak)
            t_ms = round(t * 1000.0)
            if self.end_ms is not None and t_ms >= self.end_ms:
                return None
            if r.random() * self.max_multiplier() <= self.rate_multiplier(t):
                u = r.random() * total
                kind = "ticket" if u < 1.0 else "nps" if u < 1.0 + _STANDALONE_NPS else "enps"
                return t_ms, kind

    def deliver(self, t_ms: int, pending: _Pending) -> None:
        """Turn an event into its record(s) and queue them for delivery."""
        o, n = self.opts, self.noise
        # Lifecycle events draw ids from their own stream: tickets do not depend on them.
        ids = self.life.ids if self.life is not None and pending.topic == LIFECYCLE else self.ids
        pending.fields["event_id"] = self.event_id(ids)
        pending.fields["occurred_at"] = self.stamp(t_ms, ids)
        value = self.encoder.encode(pending.fields)
        key = pending.key.encode()
        at = t_ms
        if o.out_of_order and n.random() < o.out_of_order:
            at += n.randint(1, round(o.out_of_order_delay * 1000))
        self.queue(at, SimRecord(pending.topic, key, value, t_ms / 1000, at / 1000))
        if o.duplicate_rate and n.random() < o.duplicate_rate:
            again = at + n.randint(500, max(500, round(o.duplicate_delay * 1000)))
            if pending.topic == CREATED and n.random() < o.recreate_share:
                fields = dict(pending.fields, event_id=self.event_id(n))
                value2 = self.encoder.encode(fields)
                dup = SimRecord(
                    CREATED, key, value2, t_ms / 1000, again / 1000, duplicate="recreate"
                )
            else:
                dup = SimRecord(
                    pending.topic, key, value, t_ms / 1000, again / 1000, duplicate="resend"
                )
            self.queue(again, dup)
        if o.bad_input_rate and n.random() < o.bad_input_rate:
            kind = n.choice(kinds_for(pending.topic))
            fields = dict(pending.fields, event_id=self.event_id(n))
            bad_value, bad_ms = make_bad(kind, pending.topic, fields, t_ms, pending.created_ms, n)
            bad = SimRecord(pending.topic, key, bad_value, bad_ms / 1000, t_ms / 1000, bad=kind)
            self.queue(t_ms, bad)

    def queue(self, at_ms: int, record: SimRecord) -> None:
        self.st.seq += 1
        heapq.heappush(self.st.delivery_heap, (at_ms, self.st.seq, record))

    def run_records(self) -> Iterator[SimRecord]:
        st = self.st
        arrival = self.next_arrival(self.start_ms)
        life = self.life
        while True:
            if life is not None:
                # Lifecycle events join the event heap when their time comes (in time order).
                due = life.peek()
                if (
                    due is not None
                    and (arrival is None or due <= arrival[0])
                    and (not st.event_heap or due <= st.event_heap[0][0])
                ):
                    life.step()
            if st.event_heap and (arrival is None or st.event_heap[0][0] <= arrival[0]):
                t_ms, _, pending = heapq.heappop(st.event_heap)
                if self.end_ms is not None and t_ms >= self.end_ms:
                    break
                self.deliver(t_ms, pending)
            elif arrival is not None:
                t_ms, kind = arrival
                if kind == "ticket":
                    self.ticket(t_ms)
                else:
                    self.standalone_survey(t_ms, kind)
                arrival = self.next_arrival(t_ms)
                continue
            else:
                break
            # Every later event has an event time >= t_ms, so its delivery is >= t_ms too.
            while st.delivery_heap and st.delivery_heap[0][0] <= t_ms:
                yield heapq.heappop(st.delivery_heap)[2]
        while st.delivery_heap:
            yield heapq.heappop(st.delivery_heap)[2]


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


class _Lifecycle:
    """``customer-lifecycle`` traffic: an initial customer base, sign-ups, churns (some come
    back), plan changes and, in the churn profile, a churn wave in one segment.

    It has its own random stream, so the ticket traffic of a seed does not depend on it.
    """

    def __init__(self, sim: _Simulation, seed: int, customers: int, wave_at: float | None):
        self.sim = sim
        self.rng = random.Random(f"support-kpi-sim:{seed}:customers")
        self.ids = random.Random(f"support-kpi-sim:{seed}:customer-ids")
        self.active: list[str] = []
        self.index: dict[str, int] = {}
        self.segment: dict[str, str | None] = {}
        self.scheduled: list[tuple[int, int, str, str]] = []  # (time ms, seq, kind, customer)
        self.seq = 0
        per_ticket = _SIGNUP_PER_TICKET + _CHURN_PER_TICKET + _PLAN_CHANGE_PER_TICKET
        self.rate_per_s = sim.rate_per_s * per_ticket
        lo, hi = _INITIAL_AGE_DAYS
        for _ in range(customers):
            age_ms = round(self.rng.uniform(lo, hi) * _DAY_S * 1000)
            self.signup(sim.start_ms - age_ms)
        if wave_at is not None:
            self.schedule(round(wave_at * 1000), "wave", "")
        self.next_poisson = self.draw_next(sim.start_ms)

    def draw_next(self, after_ms: int) -> int:
        return after_ms + max(1, round(self.rng.expovariate(self.rate_per_s) * 1000))

    def schedule(self, t_ms: int, kind: str, customer: str) -> None:
        self.seq += 1
        heapq.heappush(self.scheduled, (t_ms, self.seq, kind, customer))

    def peek(self) -> int | None:
        due = self.next_poisson
        if self.scheduled:
            due = min(due, self.scheduled[0][0])
        end = self.sim.end_ms
        return None if end is not None and due >= end else due

    def step(self) -> None:
        if self.scheduled and self.scheduled[0][0] <= self.next_poisson:
            t_ms, _, kind, customer = heapq.heappop(self.scheduled)
            if kind == "wave":
                self.wave(t_ms)
            elif kind == "churn":
                self.churn(t_ms, customer)
            else:
                self.reactivate(t_ms, customer)
            return
        t_ms = self.next_poisson
        self.next_poisson = self.draw_next(t_ms)
        u = self.rng.random() * (_SIGNUP_PER_TICKET + _CHURN_PER_TICKET + _PLAN_CHANGE_PER_TICKET)
        if u < _SIGNUP_PER_TICKET or not self.active:
            self.signup(t_ms)
        elif u < _SIGNUP_PER_TICKET + _CHURN_PER_TICKET:
            self.churn(t_ms, self.rng.choice(self.active))
        else:
            self.plan_change(t_ms, self.rng.choice(self.active))

    def emit(self, t_ms: int, customer: str, change: str, segment: str | None) -> None:
        body: dict[str, Any] = {"customer_id": customer, "change": change}
        if segment is not None:
            body["segment"] = segment
        self.sim.push(t_ms, LIFECYCLE, customer, body, None)

    def add(self, customer: str) -> None:
        self.index[customer] = len(self.active)
        self.active.append(customer)

    def remove(self, customer: str) -> None:
        position = self.index.pop(customer)
        last = self.active.pop()
        if last != customer:
            self.active[position] = last
            self.index[last] = position

    def signup(self, t_ms: int) -> None:
        customer = f"cus-{self.rng.getrandbits(48):012x}"
        segment = None
        if self.rng.random() >= _NO_SEGMENT:
            segment = self.rng.choices(_SEGMENTS, _SEGMENT_WEIGHTS)[0]
        self.segment[customer] = segment
        self.add(customer)
        self.emit(t_ms, customer, "activated", segment)

    def churn(self, t_ms: int, customer: str) -> None:
        if customer not in self.index:
            return
        self.remove(customer)
        segment = self.segment[customer] if self.rng.random() < 0.5 else None
        self.emit(t_ms, customer, "churned", segment)
        if self.rng.random() < _REACTIVATE:
            delay = self.rng.lognormvariate(math.log(_REACTIVATE_MEDIAN_S), 1.0) * self.sim.scale
            self.schedule(t_ms + max(1, round(delay * 1000)), "reactivate", customer)

    def reactivate(self, t_ms: int, customer: str) -> None:
        if customer in self.index:
            return
        self.add(customer)
        segment = self.segment[customer] if self.rng.random() < 0.7 else None
        self.emit(t_ms, customer, "activated", segment)

    def plan_change(self, t_ms: int, customer: str) -> None:
        others = [s for s in _SEGMENTS if s != self.segment[customer]]
        self.segment[customer] = segment = self.rng.choice(others)
        self.emit(t_ms, customer, "activated", segment)

    def wave(self, t_ms: int) -> None:
        """Churn a share of the wave segment's active customers during the wave."""
        opts = self.sim.lifecycle_opts
        members = sorted(c for c in self.active if self.segment[c] == opts.wave_segment)
        leaving = self.rng.sample(members, round(len(members) * opts.wave_share))
        length_ms = round(opts.wave_length * 1000)
        for customer in leaving:
            self.schedule(t_ms + self.rng.randint(1, length_ms), "churn", customer)


def generate(
    profile: Profile = "steady",
    *,
    seed: int,
    start: float,
    duration_seconds: float | None = None,
    count: int | None = None,
    rate: float = DEFAULT_RATE,
    teams: Sequence[str] = DEFAULT_TEAMS,
    options: SimOptions | None = None,
    lifecycle: LifecycleOptions | None = None,
    calendars: CalendarSet | None = None,
) -> Iterator[SimRecord]:
    """Yield simulated support traffic, in delivery order.

    :param profile: ``steady`` (constant rate), ``daily`` (rate follows the day: ``rate`` at the
        13:00 peak, about 8 % of it at night), ``incident`` (after the incident start, agent
        response times and volume climb over the ramp; see :class:`SimOptions`), ``churn``
        (steady tickets plus ``customer-lifecycle`` traffic with a churn wave in one segment,
        CSAT surveys days after the solve and reopens a week later) or ``office-hours``
        (steady arrivals; agents act only in their team's working hours, see ``calendars``:
        business time differs from calendar time).
    :param seed: the only source of randomness; same arguments, same bytes.
    :param start: event time of the beginning of the run, POSIX seconds.
    :param duration_seconds: event-time length of the run: tickets arrive in
        [start, start + duration) and no event at or after the end is emitted (tickets still
        open then simply stay open). ``None``: unbounded.
    :param count: stop after this many records (all records count: duplicates and bad ones
        too). ``None``: no limit. With neither limit the iterator never ends.
    :param rate: ticket arrivals per hour (the peak for ``daily``, the base for ``incident``).
        Surveys not tied to a ticket add 7 % to the arrivals; a ticket makes ~9 events on average.
    :param teams: team names (1 to 128 characters, distinct).
    :param options: delivery noise and profile knobs.
    :param lifecycle: customer-lifecycle traffic knobs (see :class:`LifecycleOptions`).
    :param calendars: in the ``office-hours`` profile, agents answer, escalate and solve only in
        the working hours of the team holding the ticket (customers write around the clock): an
        agent action that would fall outside them waits for the next opening. Default
        :data:`OFFICE_HOURS`.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    _positive("rate", rate)
    if duration_seconds is not None:
        _positive("duration_seconds", duration_seconds)
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    if not teams or len(set(teams)) != len(teams):
        raise ValueError("teams must be a non-empty list of distinct names")
    for team in teams:
        if not 1 <= len(team) <= 128:
            raise ValueError(f"team name must have 1-128 characters: {team!r}")
    sim = _Simulation(
        profile,
        seed=seed,
        start=start,
        duration_seconds=duration_seconds,
        rate=rate,
        teams=teams,
        options=options or SimOptions(),
        lifecycle=lifecycle or LifecycleOptions(),
        calendars=calendars,
    )
    return _limited(sim.run_records(), count)


def _limited(records: Iterator[SimRecord], count: int | None) -> Iterator[SimRecord]:
    if count is None:
        yield from records
        return
    if count == 0:
        return
    for n, record in enumerate(records, 1):
        yield record
        if n >= count:
            return
