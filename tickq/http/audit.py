"""The audit trail of operator actions: who paused, resumed, cleared, retried, cancelled, reset
or stopped what, when, under which request id, and how it ended.

The spec only logs these lines (seed-003 "Action Logging"); a log that is rotated, sampled or
shipped elsewhere is no answer to "who paused the money queue last night?". So each action is
also appended as one JSON line to `audit.log` in the data directory. It is deliberately not in
the job store: the audit trail must not depend on the store being healthy (an emergency stop is
exactly when it may not be), and an append-only file is trivially inspected and shipped. With
`memory://` the trail lives in memory only, like the jobs. Reads (`GET /api/v1/queue/audit`)
come from a bounded in-memory tail, loaded from the end of the file at start; the file itself
keeps everything.

Handlers declare their action with `@audited(...)`, placed above `@require(...)` so refusals
(403) are recorded too; a handler may name its target and add details with `note(...)`.
Outcomes: `ok`, `denied` (403) or `failed` (any other error, with its code).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from tickq.clock import iso
from tickq.errors import PermissionDeniedError, TickqError, ValidationError
from tickq.http.access import RouteHandler, principal, require
from tickq.http.keys import ENGINE, PRINCIPAL, REQUEST_ID
from tickq.http.responses import json_response
from tickq.settings import Settings

log = logging.getLogger(__name__)

FILE_NAME = "audit.log"
#: entries kept in memory for reads
TAIL = 1000
DEFAULT_LIMIT, MAX_LIMIT = 50, TAIL


#: the log line of each action: the event name (as logged before the trail existed, so log
#: queries keep working), the field naming the target, and the level
LOG_EVENTS: dict[str, tuple[str, str, int]] = {
    "queue.pause": ("queue_paused", "queue", logging.WARNING),
    "queue.resume": ("queue_resumed", "queue", logging.WARNING),
    "queue.clear": ("queue_cleared", "queue", logging.WARNING),
    "job.retry": ("job_retry_requested", "job_id", logging.INFO),
    "job.cancel": ("job_cancel_requested", "job_id", logging.INFO),
    "dlq.retry": ("dlq_retry_requested", "job_ids", logging.INFO),
    "dlq.discard": ("dlq_discard_requested", "job_id", logging.WARNING),
    "rate_limit.reset": ("rate_limit_reset", "provider", logging.WARNING),
    "emergency.stop": ("emergency_stop_requested", "provider", logging.WARNING),
    "emergency.resume": ("emergency_resume_requested", "provider", logging.WARNING),
    "alert.acknowledge": ("alert_acknowledged", "alert_id", logging.INFO),
    "alert.test": ("alert_test_requested", "alert_id", logging.INFO),
    "schedule.create": ("schedule_created", "schedule", logging.WARNING),
    "schedule.delete": ("schedule_deleted", "schedule", logging.WARNING),
    "schedule.run": ("schedule_run_requested", "schedule", logging.WARNING),
    "schedule.pause": ("schedule_paused", "schedule", logging.WARNING),
    "schedule.resume": ("schedule_resumed", "schedule", logging.WARNING),
    "cache.flush": ("cache_flushed", "cache", logging.WARNING),
}
ACTIONS = tuple(LOG_EVENTS)


@dataclass(slots=True)
class Note:
    """What a handler adds to its entry: the target it acted on and details of the result."""

    target: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class SharedTrail(Protocol):
    """A trail every node of a shared database writes to and reads (the PostgreSQL store)."""

    async def audit_append(self, entry: Mapping[str, Any], at: float) -> None: ...

    async def audit_recent(self, limit: int, action: str | None = None
                           ) -> list[dict[str, Any]]: ...


class AuditLog:
    """Append-only entries: to `path` (one JSON object per line) when given, to a bounded
    in-memory tail, and to the `shared` trail of a database several nodes use, which then
    answers reads, so an action taken through any node is seen through every node."""

    def __init__(self, path: Path | None, tail: int = TAIL,
                 shared: SharedTrail | None = None) -> None:
        self.path = path
        self.shared = shared
        self._tail: collections.deque[dict[str, Any]] = collections.deque(maxlen=tail)
        #: writes to the shared trail not finished yet (awaited by `flush`)
        self._writing: set[asyncio.Task[None]] = set()
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        with path.open("rb") as f:
            lines = collections.deque(f, maxlen=self._tail.maxlen)
        for line in lines:
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line torn by a crash mid-write; the rest of the file is intact
            if isinstance(entry, dict):
                self._tail.append(entry)

    def append(self, entry: dict[str, Any]) -> None:
        """Keep `entry`. A file that cannot be written is logged as an error and the entry
        kept in memory: an operator's action has already happened and must not turn into a 500."""
        self._tail.append(entry)
        if self.shared is not None:
            task = asyncio.get_running_loop().create_task(self._share(entry))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, orjson.dumps(entry) + b"\n")  # one write: lines never interleave
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("audit entry not written to file", extra={
                "event": "audit_write_failed", "path": str(self.path), "error": str(exc)})

    async def _share(self, entry: dict[str, Any]) -> None:
        assert self.shared is not None
        try:
            await self.shared.audit_append(entry, time.time())
        except Exception as exc:  # the action happened; its local copies stay
            log.error("audit entry not written to the shared trail", extra={
                "event": "audit_write_failed", "error": repr(exc)})

    async def flush(self) -> None:
        """Wait for the entries still being written to the shared trail."""
        if self._writing:
            await asyncio.gather(*tuple(self._writing), return_exceptions=True)

    async def read(self, limit: int = DEFAULT_LIMIT, action: str | None = None
                   ) -> list[dict[str, Any]]:
        """Newest first: the shared trail when there is one, else this process's."""
        if self.shared is None:
            return self.recent(limit, action)
        await self.flush()  # this node's own latest actions are in the answer
        return await self.shared.audit_recent(limit, action)

    def recent(self, limit: int = DEFAULT_LIMIT, action: str | None = None
               ) -> list[dict[str, Any]]:
        """Newest first."""
        out = []
        for entry in reversed(self._tail):
            if action is None or entry.get("action") == action:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out


AUDIT_LOG_KEY = web.RequestKey("tickq.audit_log", AuditLog)
NOTE_KEY = web.RequestKey("tickq.audit_note", Note)


def log_for(settings: Settings, store: object = None) -> AuditLog:
    """The trail for `settings`; a store with `audit_recent` (PostgreSQL) shares it."""
    memory = settings.database_kind == "memory"
    shared = (cast(SharedTrail, store)
              if hasattr(store, "audit_recent") and hasattr(store, "audit_append") else None)
    return AuditLog(None if memory else settings.data_dir / FILE_NAME, shared=shared)


def audit_trail(settings: Settings, store: object = None) -> Middleware:
    """Middleware giving every request the application's `AuditLog` (one per `make_app`)."""
    trail = log_for(settings, store)

    @web.middleware
    async def attach(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[AUDIT_LOG_KEY] = trail
        return await handler(request)

    return attach


def note(request: web.Request, target: str | None = None, **details: Any) -> None:
    """Name the target of the action being audited and add details to its entry."""
    current = request.get(NOTE_KEY)
    if current is None:
        current = request[NOTE_KEY] = Note()
    if target is not None:
        current.target = target
    current.details.update(details)


def audited(action: str) -> Callable[[RouteHandler], RouteHandler]:
    """Route decorator recording one entry per call of the handler, whatever its outcome."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")

    def wrap(handler: RouteHandler) -> RouteHandler:
        @functools.wraps(handler)
        async def recorded(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except PermissionDeniedError as exc:
                record(request, action, "denied", exc.code)
                raise
            except TickqError as exc:
                record(request, action, "failed", exc.code)
                raise
            except Exception:
                record(request, action, "failed", "internal_error")
                raise
            else:
                record(request, action, "ok", None)
            finally:
                # The answer leaves only once the entry is in the shared trail, so the trail
                # every node reads is in the order callers saw their actions happen.
                trail = request.get(AUDIT_LOG_KEY)
                if trail is not None:
                    await trail.flush()
            return response

        return recorded

    return wrap


def record(request: web.Request, action: str, outcome: str, code: str | None) -> None:
    caller = request.get(PRINCIPAL)
    info = request.get(NOTE_KEY) or Note()
    target = info.target
    if target is None:
        target = ",".join(request.match_info.values()) or None
    entry: dict[str, Any] = {
        "at": iso(request.app[ENGINE].clock.now()),
        "action": action, "target": target, "outcome": outcome, "code": code,
        "userId": caller.user_id if caller else None,
        "role": caller.role if caller else None,
        "tenantId": caller.tenant_id if caller else None,
        "requestId": request.get(REQUEST_ID), "details": info.details}
    event, key, level = LOG_EVENTS[action]
    if outcome != "ok":
        event, level = "audit_refused", logging.WARNING
    log.log(level, f"operator action {action}: {outcome}", extra={
        "event": event, "action": action, "outcome": outcome, "code": code, key: target,
        "user_id": entry["userId"], "tenant_id": entry["tenantId"], "role": entry["role"],
        **info.details})
    trail = request.get(AUDIT_LOG_KEY)
    if trail is not None:
        trail.append(entry)


routes = web.RouteTableDef()


@routes.get("/api/v1/queue/audit")
@require("admin")
async def list_audit(request: web.Request) -> web.Response:
    """The latest entries, newest first: `limit` (1 to 1000, default 50) and `action`."""
    principal(request)
    raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be a whole number from 1 to {MAX_LIMIT}",
                              code="invalid_limit", field="limit")
    action = request.query.get("action")
    if action is not None and action not in ACTIONS:
        raise ValidationError(f"action must be one of {', '.join(ACTIONS)}",
                              code="invalid_action", field="action")
    entries = await request[AUDIT_LOG_KEY].read(limit, action)
    return json_response({"entries": entries, "count": len(entries), "limit": limit})


__all__ = ["ACTIONS", "AuditLog", "audit_trail", "audited", "note", "routes"]
