"""JSON log lines: one object per record with timestamp, level, logger, message and whatever the
call passed as `extra` (event, job_id, queue, attempt, ...).

Named `logs` so that it does not shadow the standard library's `logging` inside the package.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

#: the id of the HTTP request being served, if any; set by the HTTP middleware for the duration
#: of one request so that every line logged while serving it can be tied back to it
request_id: ContextVar[str | None] = ContextVar("tickq_request_id", default=None)

#: attributes every LogRecord has; anything else on a record came from `extra`
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str,
                            option=orjson.OPT_NON_STR_KEYS).decode()


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` on records logged while a request is served (the contextvar follows
    the request's task, so lines from the engine's own tasks are not stamped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record at `level` or above to `stream` (stderr) as JSON lines.

    Logs go to stderr so that stdout stays free for what CLI commands print."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


__all__ = ["JsonFormatter", "RequestIdFilter", "configure_logging", "request_id"]
