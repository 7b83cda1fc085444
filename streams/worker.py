"""``support-kpi-worker``: run one worker process (settings from ``SUPPORT_*`` variables).

``--help`` and ``--version`` answer and exit before any setting is read, any Kafka
connection is made or anything is written (Faust creates its data folder only on start).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from typing import Any

from streams import version
from streams.logs import json_logging_config
from streams.settings import Settings, SettingsError, load_settings, settings_help

PROG = "support-kpi-worker"
log = logging.getLogger("streams.worker")


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run one support-KPI worker: it consumes the helpdesk topics, serves the KPIs on\n"
            "/metrics and publishes them to the KPI topic. Workers with the same\n"
            "SUPPORT_APP_ID share the partitions."
        ),
        epilog=(
            "settings (environment variables, shown with their defaults; an empty variable\n"
            "means unset; durations take ms, s, m, h or d):\n" + settings_help()
        ),
    )


def _parse_arguments(argv: Sequence[str] | None) -> None:
    parser = _parser()
    parser.add_argument("--version", action="version", version=f"{PROG} {version.describe()}")
    parser.parse_args(argv)


def start_line(settings: Settings) -> str:
    """What the worker logs first: its version and revision, and where it connects."""
    return (
        f"{PROG} {version.describe()} starting: app id {settings.app_id}, "
        f"brokers {settings.kafka_bootstrap}, store {settings.store}, "
        f"/metrics on {settings.web_host}:{settings.web_port}"
    )


# Python's cyclic garbage collector runs a young collection every 700 allocations by default,
# and a full one whenever the heap grew by a quarter: a worker building ticket state during a
# catch-up spent 10-20 % of its CPU there (7 full collections of ~130 ms each, pauses included,
# in 50,000 events; bench/RESULTS-pipeline.md). Reference counting frees almost everything
# the worker allocates per event; the collector only has to find the rare cycles.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collector() -> None:
    """Collect cyclic garbage far less often than Python's default (see GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> None:
    _parse_arguments(argv)  # --help and --version exit here
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    import faust  # after validation: a bad setting fails fast

    from streams.app import KpiWorker

    class Worker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            log.info("%s", start_line(settings))

    level = settings.log_level.upper()
    options: dict[str, Any] = {}
    if settings.log_format == "json":
        # Only log records on the console: no banner or spinner between the JSON lines.
        options = {"logging_config": json_logging_config(level), "quiet": True}
    tune_garbage_collector()
    worker = KpiWorker(settings)
    Worker(worker.app, loglevel=level, **options).execute_from_commandline()


if __name__ == "__main__":
    main()
