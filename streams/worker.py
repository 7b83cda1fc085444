"""``support-kpi-worker``: run one worker process (settings from ``SUPPORT_*`` variables)."""

from __future__ import annotations

import sys

import faust

from streams.settings import SettingsError, load_settings


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"support-kpi-worker: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    from streams.app import KpiWorker  # after validation: a bad setting fails fast

    worker = KpiWorker(settings)
    faust.Worker(worker.app, loglevel=settings.log_level.upper()).execute_from_commandline()


if __name__ == "__main__":
    main()
