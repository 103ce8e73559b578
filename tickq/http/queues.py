"""Queue management under /api/v1/queue (spec seed-003 endpoints 6-11, roles per seed-004).

    GET  /queues                   every queue with its counts (any role)               200
    GET  /queues/{name}/status     counts and the first 10 jobs per category (any role) 200
    POST /queues/{name}/pause      stop starting jobs (admin)                           200
    POST /queues/{name}/resume     start them again (admin)                             200
    POST /queues/{name}/clear      cancel jobs that have not started (admin)            200
    GET  /queues/{name}/jobs       one status's jobs, offset-paginated (any role)       200

A queue may be named as tickq names it ("money") or as the spec does ("money-queue"); an unknown
name is a 404. Counts are the queue's, across tenants: they describe load, not jobs. Jobs shown
(samples and listings) pass `access.can_see`, so a non-admin only ever sees their own scope.

`waiting` in a count is what the spec's clients expect from Bull: jobs ready to run. Jobs
scheduled for later are `delayed` and not also counted as waiting (the engine's `QueueCounts`
counts them in both).

Clearing cancels; it never deletes. Only jobs that have not started can be cancelled, and the
store has no bulk cancel, so "clear" lists the queue's waiting jobs in pages and cancels them one
by one. The queue is held paused while that runs (and put back as it was after), so no job can be
claimed between being listed and being cancelled: a clear never interrupts a running job.
Finished jobs (the spec's `type=completed|failed`) leave only through retention.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any, NoReturn

from aiohttp import web

from tickq.clock import iso
from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.queues import QueueConfig
from tickq.engine.states import JobState
from tickq.errors import (
    NotFoundError,
    UnknownQueueError,
    ValidationError,
)
from tickq.http.access import can_see, principal, require, tenant_filter
from tickq.http.audit import audited, note
from tickq.http.auth import Principal
from tickq.http.body import parse
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schemas import MAX_LIMIT, ClearQuery, QueueJobsQuery, query_values
from tickq.http.views import status_of
from tickq.storage.base import JobQuery

log = logging.getLogger(__name__)

PREFIX = "/api/v1/queue/queues"
routes = web.RouteTableDef()

#: jobs per category in a status answer (the spec's "first 10 of each category")
SAMPLES = 10
#: jobs read from the store per round while listing, sampling or clearing
SCAN_BATCH = 200
#: a listing for a caller who sees few of the queue's jobs stops after examining this many;
#: the answer then says `hasMore: true` and the caller narrows by state or pages on
SCAN_LIMIT = 20_000

_STATES = {"waiting": JobState.WAITING, "delayed": JobState.WAITING, "active": JobState.ACTIVE,
           "completed": JobState.COMPLETED, "failed": JobState.FAILED,
           "cancelled": JobState.CANCELLED}
#: live jobs list in the order they would run (oldest first), finished ones newest first
_OLDEST_FIRST = frozenset({"waiting", "delayed", "active"})

Keep = Callable[[Job], bool]


def queue_named(engine: Engine, raw: str) -> QueueConfig:
    """The queue a path names, or `NotFoundError` (404): in a path, a queue is a resource."""
    try:
        return engine.registry.queue(raw.removesuffix("-queue"))
    except UnknownQueueError as exc:
        raise NotFoundError(exc.message, code="queue_not_found") from None


async def set_paused(request: web.Request, paused: bool) -> str:
    """Pause or resume the queue the path names, noted for the audit trail; its name. The
    API's routes and the dashboard's buttons both act through this."""
    engine = request.app[ENGINE]
    queue = queue_named(engine, request.match_info["name"]).name
    await (engine.pause(queue) if paused else engine.resume(queue))
    note(request, queue)
    return queue


async def counts_view(engine: Engine, queue: str) -> dict[str, Any]:
    c = await engine.counts(queue)
    return {"waiting": c.waiting - c.delayed, "delayed": c.delayed, "active": c.active,
            "completed": c.completed, "failed": c.failed, "cancelled": c.cancelled,
            "paused": c.paused or engine.is_paused(queue)}


@routes.get(PREFIX)
async def list_queues(request: web.Request) -> web.Response:
    """Every configured queue, in tier order, with its counts (spec endpoint 6)."""
    engine = request.app[ENGINE]
    out = [{"name": q.name, "tier": q.tier, **await counts_view(engine, q.name)}
           for q in sorted(engine.registry.queues, key=lambda q: q.tier)]
    return json_response(out)


@routes.get(f"{PREFIX}/{{name}}/status")
async def queue_status(request: web.Request) -> web.Response:
    """Counts and samples (spec endpoint 7). The samples are the first jobs the caller may
    see: the oldest waiting and active ones, the most recent failures."""
    caller, engine = principal(request), request.app[ENGINE]
    queue = queue_named(engine, request.match_info["name"]).name
    now = engine.clock.now()
    metrics = await counts_view(engine, queue)
    waiting, _ = await visible(engine, caller, queue, "waiting", 0, SAMPLES, now)
    active, _ = await visible(engine, caller, queue, "active", 0, SAMPLES, now)
    failed, _ = await visible(engine, caller, queue, "failed", 0, SAMPLES, now)
    samples = {
        "waiting": [{"id": j.id, "type": j.type, "createdAt": iso(j.created_at)}
                    for j in waiting],
        "active": [{"id": j.id, "type": j.type, "startedAt": iso(j.started_at)} for j in active],
        "failed": [{"id": j.id, "type": j.type, "failedAt": iso(j.finished_at),
                    "reason": j.errors[-1].message if j.errors else None} for j in failed],
    }
    return json_response({"name": queue, "paused": metrics["paused"], "metrics": metrics,
                          "samples": samples})


@routes.post(f"{PREFIX}/{{name}}/pause")
@audited("queue.pause")
@require("admin")
async def pause_queue(request: web.Request) -> web.Response:
    """No new job starts; running jobs finish and waiting jobs stay queued (spec endpoint 8).
    The pause is stored, so it outlives a restart."""
    queue = await set_paused(request, True)
    return json_response({"queue": queue, "status": "paused",
                          "message": "Queue has been paused"})


@routes.post(f"{PREFIX}/{{name}}/resume")
@audited("queue.resume")
@require("admin")
async def resume_queue(request: web.Request) -> web.Response:
    queue = await set_paused(request, False)
    return json_response({"queue": queue, "status": "active",
                          "message": "Queue has been resumed"})


@routes.post(f"{PREFIX}/{{name}}/clear")
@audited("queue.clear")
@require("admin")
async def clear_queue(request: web.Request) -> web.Response:
    """Cancel every job of the queue that has not started (spec endpoint 10, `type=wait`, the
    default) or only the delayed ones (`type=delayed`); `type=all` is accepted for the spec's
    "no type" and means the same as `wait`, since finished jobs cannot be cancelled."""
    engine = request.app[ENGINE]
    queue = queue_named(engine, request.match_info["name"]).name
    q = parse(ClearQuery, query_values(request.query), what="the query string", strict=False)
    cancelled, skipped = await engine.clear(queue, delayed_only=q.type == "delayed")
    what = "delayed" if q.type == "delayed" else "waiting"
    note(request, queue, cancelled=cancelled, skipped=skipped, type=q.type)
    return json_response({"queue": queue, "action": f"cancelled {what}", "type": q.type,
                          "cancelled": cancelled, "skipped": skipped,
                          "message": f"Queue has been cleared: {cancelled} {what} job(s) "
                                     "cancelled"})


@routes.get(f"{PREFIX}/{{name}}/jobs")
async def queue_jobs(request: web.Request) -> web.Response:
    """One status's jobs, `start` to `end` (spec endpoint 11): a page is at most 100 jobs.
    Waiting, delayed and active jobs come oldest first, finished ones newest first."""
    caller, engine = principal(request), request.app[ENGINE]
    queue = queue_named(engine, request.match_info["name"]).name
    q = parse(QueueJobsQuery, query_values(request.query), what="the query string",
              strict=False)
    if q.end <= q.start or q.end - q.start > MAX_LIMIT:
        raise_range(q.start, q.end)
    now = engine.clock.now()
    jobs, more = await visible(engine, caller, queue, q.status, q.start, q.end - q.start, now)
    return json_response({
        "queue": queue, "status": q.status, "start": q.start, "end": q.start + len(jobs),
        "count": len(jobs), "hasMore": more,
        "jobs": [{"id": j.id, "type": j.type, "data": j.data, "status": status_of(j, now),
                  "attempts": j.attempts, "maxAttempts": j.max_attempts,
                  "progress": j.progress, "priority": j.priority,
                  "createdAt": iso(j.created_at), "runAt": iso(j.run_at),
                  "processedAt": iso(j.started_at), "finishedAt": iso(j.finished_at),
                  "failedReason": (j.errors[-1].message
                                   if j.errors and j.state is JobState.FAILED else None)}
                 for j in jobs]})


def raise_range(start: int, end: int) -> NoReturn:
    raise ValidationError(f"end must be greater than start and at most {MAX_LIMIT} past it "
                          f"(got start={start}, end={end})", code="invalid_range", field="end")


async def visible(engine: Engine, caller: Principal, queue: str, status: str, skip: int,
                  take: int, now: float) -> tuple[list[Job], bool]:
    """Jobs `skip` to `skip + take` of those in `status` the caller may see, and whether more
    follow. The store filters by queue, state and (for non-admins) tenant; the rest of
    `can_see` and the delayed/waiting split are applied here while reading ahead."""
    keep: Keep = lambda j: can_see(caller, j)  # noqa: E731
    if status == "delayed":
        keep = lambda j: j.run_at > now and can_see(caller, j)  # noqa: E731
    query = JobQuery(queue=queue, states=frozenset({_STATES[status]}),
                     tenant_id=tenant_filter(caller, None),
                     limit=SCAN_BATCH, newest_first=status not in _OLDEST_FIRST)
    found: list[Job] = []
    seen = examined = 0
    after: str | None = None
    while examined < SCAN_LIMIT + skip:
        chunk = await engine.list_jobs(dataclasses.replace(query, after=after))
        examined += len(chunk)
        for job in chunk:
            if not keep(job):
                continue
            seen += 1
            if seen > skip + take:
                return found, True
            if seen > skip:
                found.append(job)
        if len(chunk) < SCAN_BATCH:
            return found, False
        after = chunk[-1].id
    return found, True

