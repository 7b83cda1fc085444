"""Ticket clocks: elapsed calendar and business time, requester wait (SPEC §4, issue 12).

**Requester wait** of a resolution is the time from the ticket's creation to that resolution
spent in ``new``, ``open`` or ``on_hold``: ``pending`` (waiting on the customer) pauses the
clock, ``solved``/``closed`` stop it until a reopen. For a ticket solved, reopened and solved
again, the second resolution's wait includes the time before the first solve.

**Whose calendar counts when a ticket moves team.** Each stretch of time counts on the calendar
of the team that owned the ticket during that stretch: from creation on the creating team's
calendar, from an escalation with ``to_team`` on the new team's calendar (teams without their
own calendar use the default one). A ticket created by a Berlin team on Friday 17:00 and moved
to a New York team at 17:30 counts Berlin's working hours until 17:30, then New York's. This is
what a support manager expects: a team is measured by its own working hours while it holds the
ticket, and hours the previous owner was closed do not count against it. Calendar (real) time
is the same whoever owns the ticket. The same rule applies to first-response and resolution
business time (a clock that never pauses).

Without calendars (no ``SUPPORT_CALENDARS_FILE``) business time is ``None``: everything is
calendar time (SPEC §4).

Wiring: :func:`streams.core.ticket.ticket_facts` walks the ticket's steps in event-time order,
counts calendar time inline and, with calendars, feeds two clocks for business time::

    total = TicketClock(calendars, creation.at_us, creation.team)  # first response, resolution
    wait = TicketClock(calendars, creation.at_us, creation.team)  # requester wait
    for step in steps:
        if step.to_team is not None:  # escalation moving the ticket
            total.move(step.at_us, step.to_team)
            wait.move(step.at_us, step.to_team)
        # first response at step.at_us: total.elapsed(step.at_us)
        # resolution at step.at_us: total.elapsed(step.at_us), wait.elapsed(step.at_us)
        if step.status is not None:
            wait.status(step.at_us, step.status)
    # an unanswered ticket on a business first-response clock:
    # total.deadline_us(target_us, "business")

Times are integer microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from streams.core.calendar import CalendarSet, business_deadline_us, business_us
from streams.core.kpis import SlaClock

# Statuses in which the requester is waiting on the support team (SPEC §4).
WAITING_STATUSES: frozenset[str] = frozenset({"new", "open", "on_hold"})


class Elapsed(NamedTuple):
    """Elapsed time in µs: real (calendar) time, and business time (None without calendars)."""

    calendar_us: int
    business_us: int | None

    def on(self, clock: SlaClock) -> int:
        """The value on an SLA clock; business falls back to calendar without calendars."""
        if clock == "business" and self.business_us is not None:
            return self.business_us
        return self.calendar_us


class TicketClock:
    """Accumulates the time a clock runs, split into stretches by owning team.

    Feed changes in event-time order (:meth:`move`, :meth:`status`, :meth:`run`); changes at the
    same instant may come in any order. :meth:`elapsed` reads the total at any instant not
    before the last change.
    """

    __slots__ = (
        "_business",
        "_calendar",
        "_calendars",
        "_owner_calendar",
        "_running",
        "_since",
        "_stretches",
        "team",
    )

    def __init__(
        self, calendars: CalendarSet | None, start_us: int, team: str, *, running: bool = True
    ) -> None:
        self._calendars = calendars
        self.team = team
        self._owner_calendar = None if calendars is None else calendars.for_team(team)
        self._since = start_us
        self._running = running
        self._calendar = 0
        self._business = 0
        # Closed running stretches (start, end, team), for deadlines.
        self._stretches: list[tuple[int, int, str]] = []

    @property
    def running(self) -> bool:
        return self._running

    def _close(self, at_us: int) -> None:
        if at_us < self._since:
            raise ValueError(f"clock change at {at_us} before the previous one at {self._since}")
        if self._running and at_us > self._since:
            self._calendar += at_us - self._since
            if self._owner_calendar is not None:
                self._business += business_us(self._owner_calendar, self._since, at_us)
            self._stretches.append((self._since, at_us, self.team))
        self._since = at_us

    def move(self, at_us: int, team: str) -> None:
        """The ticket moves to ``team`` at ``at_us`` (later time counts on its calendar)."""
        self._close(at_us)
        self.team = team
        if self._calendars is not None:
            self._owner_calendar = self._calendars.for_team(team)

    def run(self, at_us: int, running: bool) -> None:
        """Start or stop the clock at ``at_us``."""
        self._close(at_us)
        self._running = running

    def status(self, at_us: int, status: str) -> None:
        """A status change: the clock runs in new, open and on_hold (requester wait)."""
        self.run(at_us, status in WAITING_STATUSES)

    def elapsed(self, at_us: int) -> Elapsed:
        """Total time on the clock from its start to ``at_us``."""
        if at_us < self._since:
            raise ValueError(f"reading at {at_us} before the last change at {self._since}")
        calendar, business = self._calendar, self._business
        if self._running:
            calendar += at_us - self._since
            if self._owner_calendar is not None:
                business += business_us(self._owner_calendar, self._since, at_us)
        return Elapsed(calendar, business if self._calendars is not None else None)

    def deadline_us(self, target_us: int, clock: SlaClock) -> int | None:
        """When the clock passes ``target_us`` on ``clock``, if nothing changes any more.

        The instant ``d`` such that the elapsed time is within the target exactly up to ``d``
        (a first response or resolution at ``d`` meets it, after ``d`` it is late; the target
        is "past" at any clock reading after ``d``). ``None`` when the clock is stopped and has
        not passed the target: it cannot run out. Exact also when the target ran out in an
        earlier stretch. With ``clock="business"`` and no calendars: calendar time.
        """
        business = clock == "business" and self._calendars is not None
        stretches = list(self._stretches)
        if self._running:
            stretches.append((self._since, -1, self.team))  # -1: open-ended
        left = target_us
        for start, end, team in stretches:
            if end < 0:
                work = None
            elif business:
                assert self._calendars is not None
                work = business_us(self._calendars.for_team(team), start, end)
            else:
                work = end - start
            if work is None or work > left:
                if not business:
                    return start + left
                assert self._calendars is not None
                return business_deadline_us(self._calendars.for_team(team), start, left)
            left -= work
        return None


def _changes(
    created_us: int,
    until_us: int,
    statuses: Iterable[tuple[str, int]],
    team_changes: Iterable[tuple[str, int]],
) -> list[tuple[int, int, str]]:
    """(at_us, kind, value) in time order up to ``until_us``: kind 0 = team move, 1 = status."""
    merged = [(at, 0, team) for team, at in team_changes] + [
        (at, 1, status) for status, at in statuses
    ]
    for at, _, _ in merged:
        if at < created_us:
            raise ValueError(f"a change at {at} is before the creation at {created_us}")
    merged.sort(key=lambda change: change[0])
    return [change for change in merged if change[0] <= until_us]


def requester_wait(
    created_us: int,
    resolved_us: int,
    statuses: Iterable[tuple[str, int]],
    *,
    team: str,
    team_changes: Iterable[tuple[str, int]] = (),
    calendars: CalendarSet | None = None,
) -> Elapsed:
    """Requester wait of the resolution at ``resolved_us``.

    ``statuses`` are the ticket's status changes ``(status, at_us)`` (the ticket starts ``new``
    at ``created_us``); ``team`` owns the ticket at creation, ``team_changes`` are
    ``(new_team, at_us)`` moves. Changes after ``resolved_us`` are ignored.
    """
    clock = TicketClock(calendars, created_us, team)
    for at, kind, value in _changes(created_us, resolved_us, statuses, team_changes):
        if kind == 0:
            clock.move(at, value)
        else:
            clock.status(at, value)
    return clock.elapsed(resolved_us)


def elapsed_between(
    created_us: int,
    until_us: int,
    *,
    team: str,
    team_changes: Iterable[tuple[str, int]] = (),
    calendars: CalendarSet | None = None,
) -> Elapsed:
    """Time from creation to ``until_us`` that never pauses (first response, resolution), in
    calendar time and in business time on the owning teams' calendars."""
    clock = TicketClock(calendars, created_us, team)
    for at, _, value in _changes(created_us, until_us, (), team_changes):
        clock.move(at, value)
    return clock.elapsed(until_us)
