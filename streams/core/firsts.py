"""Which KPI facts a worker derives for the first time: the input of the cumulative series.

The windowed KPIs are recomputed from ticket state and may change their mind (an earlier
reply arriving late changes a first-response time). Counters cannot: SLO tools want
``support_tickets_created_total`` and friends to count each fact once (SPEC §5). So a fact
is counted when the worker first derives it, in processing time, and identified by what it
is, not by its value: the ticket's key, its kind and its ordinal among the ticket's facts of
that kind (the 1st resolution, the 2nd ...). Adding events to a ticket never lowers the
number of its facts of a counted kind (a first response, a creation, or a transition into
solved can be moved in time by an earlier event, never removed), so the identities a ticket
ever had are exactly ``0 .. n-1`` of its final facts, and the totals equal the facts of the
final state.

:class:`FirstDerivations` remembers the identities counted lately, so that events a recovery
re-delivers (a rebuild from a changelog that had not yet received their state) do not count
their facts a second time in the same process. It is bounded: a re-delivery after a
recovery covers the records since the last committed offset, a few seconds of input, far
fewer facts than it remembers.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Sequence

from streams.core.ticket import Fact, FactKind

# The fact kinds the cumulative series count (SPEC §5).
COUNTED_KINDS: tuple[FactKind, ...] = ("created", "first_response", "resolved")
# How many counted fact identities a process remembers (about 80 bytes each).
DEFAULT_MEMORY = 65_536
# Identities are hashes cut to 60 bits: a 2-digit int (32 bytes instead of 48 for 64 bits);
# two facts among the 65,536 remembered share one with probability ~2e-9.
_IDENTITY_MASK = (1 << 60) - 1


class FirstDerivations:
    """Identities of facts counted by this process, the oldest forgotten first.

    A set of the identities and, in arrival order, a ring of the same values packed as 8-byte
    integers (the oldest is overwritten once ``capacity`` are remembered).
    """

    def __init__(self, capacity: int = DEFAULT_MEMORY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._seen: set[int] = set()
        self._order = array("q")
        self._oldest = 0  # index in _order of the oldest identity once the ring is full

    def __len__(self) -> int:
        return len(self._seen)

    def first(self, key: str, kind: str, ordinal: int) -> bool:
        """True the first time this fact identity is offered (then it is remembered)."""
        # hash(): stable within a process, which is the scope
        identity = hash((key, kind, ordinal)) & _IDENTITY_MASK
        seen = self._seen
        if identity in seen:
            return False
        seen.add(identity)
        order = self._order
        if len(order) < self.capacity:
            order.append(identity)
        else:
            seen.discard(order[self._oldest])
            order[self._oldest] = identity
            self._oldest = (self._oldest + 1) % self.capacity
        return True


def newly_derived(
    key: str,
    before: Sequence[Fact],
    after: Sequence[Fact],
    memory: FirstDerivations | None = None,
) -> list[Fact]:
    """The counted facts ``after`` has beyond ``before`` (one ticket, before and after an
    event), minus those ``memory`` has counted already.

    When the event adds ``k`` facts of a kind, their identities are the ordinals ``n .. n+k-1``
    after the ``n`` the ticket had; the facts reported for them are the ``k`` latest of the
    facts that are new (by value), so their labels and durations are the ones just derived.
    """
    derived: list[Fact] = []
    had = Counter(fact.kind for fact in before)
    has = Counter(fact.kind for fact in after)
    for kind in COUNTED_KINDS:
        extra = has[kind] - had[kind]
        if extra <= 0:
            continue  # most events: nothing new of this kind
        old = [fact for fact in before if fact.kind == kind]
        new = [fact for fact in after if fact.kind == kind]
        added = sorted((Counter(new) - Counter(old)).elements(), key=lambda f: f.at_us)
        for offset, fact in enumerate(added[-extra:]):
            if memory is None or memory.first(key, kind, len(old) + offset):
                derived.append(fact)
    return derived
