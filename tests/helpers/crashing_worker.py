"""A worker process that kills itself (SIGKILL, as ``kill -9``) at a chosen point, for the
fault-matrix tests (``test_faults.py``). Test code only: the harness runs it as
``python -m helpers.crashing_worker`` with ``tests/`` on ``PYTHONPATH``.

``TEST_CRASH_AT`` (read here, never by production code):

- ``flush:N``: in the middle of sending partials to stage 2, at the N-th partials message
  (one batch per input partition and dimension) sent;
- ``recovery``: during recovery, when the rebuild of stage 1 starts reading the recovered
  ticket table (after Faust has restored the changelog, before any engine exists).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from typing import Any

import faust

from streams.app import FaustTicketStore, KpiWorker
from streams.core.ticket import TicketState
from streams.settings import load_settings


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingTicketStore(FaustTicketStore):
    def states(self) -> Iterable[tuple[str, TicketState]]:
        print("crashing_worker: SIGKILL during recovery", flush=True)
        die()
        return super().states()  # pragma: no cover - not reached


class CrashingWorker(KpiWorker):
    def __init__(self, *args: Any, crash_at: str, **kwargs: Any) -> None:
        self.crash_at = crash_at
        super().__init__(*args, **kwargs)

    def _build_app(self) -> Any:
        app = super()._build_app()
        if self.crash_at == "recovery":
            self.ticket_store = DyingTicketStore(self.tickets)
        elif self.crash_at.startswith("flush:"):
            limit = int(self.crash_at.split(":", 1)[1])
            send_soon = self.partials.send_soon
            sent = 0

            def counting_send_soon(*args: Any, **kwargs: Any) -> Any:
                nonlocal sent
                sent += 1
                if sent == limit:
                    print(f"crashing_worker: SIGKILL at partial {sent}", flush=True)
                    die()
                return send_soon(*args, **kwargs)

            self.partials.send_soon = counting_send_soon  # type: ignore[method-assign]
        else:
            raise SystemExit(f"TEST_CRASH_AT={self.crash_at!r}: want flush:N or recovery")
        return app


def main() -> None:
    settings = load_settings()
    worker = CrashingWorker(settings, crash_at=os.environ["TEST_CRASH_AT"])
    faust.Worker(worker.app, loglevel=settings.log_level.upper()).execute_from_commandline()


if __name__ == "__main__":
    main()
