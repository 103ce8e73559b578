"""Log lines: one JSON object per record (time, level, logger, message, then the request, job,
queue and tenant the line is about, then whatever else the call passed as `extra`), or a line
for people in development. Personal data and secrets are removed on the way out.

Redaction is a step of the pipeline, not of the call sites: `configure_logging` puts a
`RedactionFilter` on the handler, so every record that is written has passed through it,
whoever logged it (tickq, aiohttp, a processor, a library). See `tickq.redaction` for what it
removes.

Named `logs` so that it does not shadow the standard library's `logging` inside the package.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import orjson

from tickq.clock import iso
from tickq.redaction import SECRET, is_secret_key, redact_text, redact_value

#: the id of the HTTP request being served, if any; set by the HTTP middleware for the duration
#: of one request so that every line logged while serving it can be tied back to it
request_id: ContextVar[str | None] = ContextVar("tickq_request_id", default=None)

#: attributes every LogRecord has; anything else on a record came from `extra`
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

#: what ties a line to a request, a job, a queue and a tenant: first after the message when
#: present, under these names whichever spelling the call used (`ALIASES`)
CONTEXT_FIELDS = ("request_id", "job_id", "queue", "tenant_id")
ALIASES = {"requestId": "request_id", "jobId": "job_id", "tenantId": "tenant_id",
           "tenant": "tenant_id"}

LogFormat = Literal["json", "text"]


def _timestamp(record: logging.LogRecord) -> str:
    return iso(record.created)


def _fields(record: logging.LogRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """(context fields, other extra fields) of a record, aliases resolved."""
    context: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _RECORD_FIELDS or key.startswith("_"):
            continue
        name = ALIASES.get(key, key)
        if name in CONTEXT_FIELDS:
            context.setdefault(name, value)
        else:
            extra[key] = value
    return {k: context[k] for k in CONTEXT_FIELDS if k in context}, extra


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    # `exc_text` is where `RedactionFilter` leaves the redacted traceback (and where the
    # standard formatter caches it): use it rather than formatting the exception again.
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        context, extra = _fields(record)
        entry: dict[str, Any] = {"timestamp": _timestamp(record), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage(),
                                 **context, **extra}
        exc = _exception_text(self, record)
        if exc:
            entry["exception"] = exc
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """A line for people: `2026-01-05T09:00:00.123Z INFO  tickq.engine: message  key=value`,
    the context fields first, a traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        context, extra = _fields(record)
        pairs = " ".join(f"{k}={_text(v)}" for k, v in {**context, **extra}.items())
        line = (f"{_timestamp(record)} {record.levelname:<8} {record.name}: "
                f"{record.getMessage()}" + (f"  {pairs}" if pairs else ""))
        exc = _exception_text(self, record)
        if exc:
            line += "\n" + exc
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"=" for c in value):
        return value
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class RequestIdFilter(logging.Filter):
    """Stamps `request_id` on records logged while a request is served (the contextvar follows
    the request's task, so lines from the engine's own tasks are not stamped)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid is not None and not hasattr(record, "request_id"):
            record.request_id = rid
        return True


class RedactionFilter(logging.Filter):
    """Removes personal data and secrets from a record before any formatter sees it: from the
    message (its arguments merged in), every `extra` field (nested values included; a field
    whose name says it is a secret loses its whole value), the traceback and the stack.

    The record is changed in place, so every handler after this one sees the redacted record
    too; a record is redacted once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_tickq_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, as text
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact_text(message), None
        fields = record.__dict__
        for key in [k for k in fields if k not in _RECORD_FIELDS and not k.startswith("_")]:
            fields[key] = SECRET if is_secret_key(key) else redact_value(fields[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record._tickq_redacted = True
        return True


def choose_format(fmt: LogFormat | None, development: bool, stream: TextIO) -> LogFormat:
    """`fmt` when given; otherwise text in development on a terminal, JSON everywhere else
    (output that is piped or collected stays machine-readable)."""
    if fmt is not None:
        return fmt
    is_tty = getattr(stream, "isatty", None)
    return "text" if development and is_tty is not None and is_tty() else "json"


def configure_logging(level: str = "INFO", stream: TextIO | None = None, *,
                      fmt: LogFormat | None = None, development: bool = False) -> None:
    """Send every log record at `level` or above to `stream` (stderr), redacted, as JSON lines
    or as text (see `choose_format`).

    Logs go to stderr so that stdout stays free for what CLI commands print."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    chosen = choose_format(fmt, development, out)
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # APScheduler logs every run it starts at INFO; tickq logs each run itself, with counts.
    aps = logging.getLogger("apscheduler")
    aps.setLevel(max(logging.WARNING, root.level))


__all__ = ["ALIASES", "CONTEXT_FIELDS", "JsonFormatter", "RedactionFilter", "RequestIdFilter",
           "TextFormatter", "choose_format", "configure_logging", "request_id"]
