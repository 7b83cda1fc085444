"""Log output of the worker: Faust's text lines, or one JSON object per line for shippers.

``SUPPORT_LOG_FORMAT=json`` gives lines such as
``{"time": "2026-11-23T10:00:00.123Z", "level": "info", "logger": "streams.app",
"message": "stage 1 owns input partitions [0, 1]", "process": 42}``
(plus ``exception`` with the traceback when there is one).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_logging_config(level: str) -> dict[str, Any]:
    """Faust's worker ``logging_config`` for JSON lines: replaces its console handler (the
    rest of its logging configuration is merged in)."""
    return {
        "merge": True,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {"level": level, "class": "logging.StreamHandler", "formatter": "json"}
        },
    }
