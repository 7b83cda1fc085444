"""A worker process with deliberate faults, for the containment test (``test_containment.py``).

The harness runs it as ``python -m helpers.faulty_worker`` with ``tests/`` on ``PYTHONPATH``
(``WorkerProcess(..., module="helpers.faulty_worker")``): the faults live in a subclass here,
never in production code. Everything else is the real worker on the real broker.

- Stage 1: the ticket store refuses to store tickets whose id starts with
  :data:`FAULTY_TICKET_PREFIX`, *after* the engine applied the event to its partial
  aggregates, so a contained error that did not rebuild the partials would show in the KPIs.
- Stage 2: the first partials batch with a windowed partial that this process applies raises
  once, after it was applied (a transient fault).
"""

from __future__ import annotations

from typing import Any

import faust

from streams.app import _BATCH_DECODER, FaustTicketStore, KpiWorker
from streams.core.ticket import TicketState
from streams.settings import load_settings

FAULTY_TICKET_PREFIX = "poison-"


class InjectedFaultError(Exception):
    """The deliberate fault (its type name shows in the dead letter and the log)."""


class FaultyTicketStore(FaustTicketStore):
    def put(self, key: str, state: TicketState) -> None:
        if key.startswith(FAULTY_TICKET_PREFIX):
            raise InjectedFaultError(key)  # the message repeats the id: it must not leak
        super().put(key, state)


class FaultyWorker(KpiWorker):
    partial_fault_fired = False

    def _build_app(self) -> Any:
        app = super()._build_app()
        self.ticket_store = FaultyTicketStore(self.tickets)
        return app

    def _apply_partial(self, partition: int, raw: bytes) -> None:
        super()._apply_partial(partition, raw)
        batch = _BATCH_DECODER.decode(raw)
        if not self.partial_fault_fired and any(u.window is not None for u in batch.updates):
            self.partial_fault_fired = True
            raise InjectedFaultError("stage 2")


def main() -> None:
    settings = load_settings()
    worker = FaultyWorker(settings)
    faust.Worker(worker.app, loglevel=settings.log_level.upper()).execute_from_commandline()


if __name__ == "__main__":
    main()
