"""SLA policies: first-response and resolution targets per priority, each on its clock.

SPEC §4: the first-response target applies to the first public agent reply (reply time -
creation), the resolution target to the requester wait time of each resolution
(:mod:`streams.core.clocks`). Each target is measured in ``calendar`` (real elapsed) or
``business`` time (working hours of the owning team's calendar). A value *within* the target
(``<=``) meets it. Defaults (SPEC §4): first response urgent 15 min, high 1 h, normal 4 h, low
8 h; resolution urgent 4 h, high 8 h, normal 24 h, low 72 h; all on the calendar clock.

Settings: ``SUPPORT_SLA_TARGETS`` (first response, unchanged), ``SUPPORT_RESOLUTION_SLA_TARGETS``,
``SUPPORT_FIRST_RESPONSE_SLA_CLOCK`` and ``SUPPORT_RESOLUTION_SLA_CLOCK``; they land in
:class:`streams.core.kpis.EngineConfig` and :func:`sla_policies` turns that into policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from streams.core.clocks import Elapsed, TicketClock
from streams.core.kpis import EngineConfig, SlaClock
from streams.core.units import US


class SlaTarget(NamedTuple):
    target_us: int
    clock: SlaClock


@dataclass(frozen=True)
class SlaPolicy:
    """Targets of one SLA (first response or resolution) by ticket priority."""

    targets: Mapping[str, SlaTarget]

    def value_us(self, priority: str, elapsed: Elapsed) -> int:
        """The measured value on the priority's clock (calendar time without calendars)."""
        return elapsed.on(self.targets[priority].clock)

    def met(self, priority: str, elapsed: Elapsed) -> bool:
        """Whether ``elapsed`` is within the priority's target."""
        return self.value_us(priority, elapsed) <= self.targets[priority].target_us

    def deadline_us(self, priority: str, clock: TicketClock) -> int | None:
        """After this instant a ticket timed by ``clock`` is past its target (None: the clock
        is stopped, so it cannot run out). See :meth:`TicketClock.deadline_us`."""
        target = self.targets[priority]
        return clock.deadline_us(target.target_us, target.clock)

    @property
    def uses_business_time(self) -> bool:
        return any(target.clock == "business" for target in self.targets.values())


@dataclass(frozen=True)
class SlaPolicies:
    first_response: SlaPolicy
    resolution: SlaPolicy


def _policy(seconds: Mapping[str, float], clocks: Mapping[str, SlaClock]) -> SlaPolicy:
    return SlaPolicy(
        {p: SlaTarget(round(s * US), clocks.get(p, "calendar")) for p, s in seconds.items()}
    )


def sla_policies(config: EngineConfig) -> SlaPolicies:
    """The SLA policies of an engine configuration."""
    return SlaPolicies(
        first_response=_policy(config.sla_targets, config.first_response_sla_clocks),
        resolution=_policy(config.resolution_sla_targets, config.resolution_sla_clocks),
    )
