"""The dead-letter queue under /api/v1/queue/dlq.

    GET    /dlq          failed jobs with their error history, newest first (any role)  200
    POST   /dlq/retry    put 1-100 failed jobs back to waiting (admin, venue_admin)     200
    DELETE /dlq/{id}     discard one failed job for good (admin, venue_admin)           200

In tickq the dead-letter queue is not a separate store: it is every job in the `failed` state,
kept for its queue's failed retention. Listing and retrying therefore use the same scope rules
as the job routes (`access.can_see`): outside admin, a caller lists only their own scope, and a
job they may not see is reported as not found, exactly like one that does not exist.

A bulk retry answers 200 with one result per id, in request order, rather than failing as a
whole: an operator draining the queue after an outage wants every retryable job back even when
a few ids are stale.

Discarding deletes the job and its history (the audit log keeps who did it); a job that is not
failed answers 409, one the caller may not see 404.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.states import JobState
from tickq.errors import JobNotFoundError, TickqError, ValidationError
from tickq.http.access import principal, require, tenant_filter
from tickq.http.audit import audited, note
from tickq.http.auth import Principal
from tickq.http.body import parse, read_json
from tickq.http.jobs import page_of, seen_job
from tickq.http.keys import ENGINE
from tickq.http.middleware import status_for
from tickq.http.queues import queue_named
from tickq.http.responses import json_response
from tickq.http.schemas import DlqQuery, DlqRetry, query_values
from tickq.http.views import job_view
from tickq.storage.base import JobQuery

log = logging.getLogger(__name__)

PREFIX = "/api/v1/queue/dlq"
routes = web.RouteTableDef()

_FAILED = frozenset({JobState.FAILED})


@routes.get(PREFIX)
async def list_dlq(request: web.Request) -> web.Response:
    """Failed jobs, newest first; `nextCursor` is null on the last page, else pass it back as
    `after`. Each job carries its full error history (`errors`, one entry per failed attempt)."""
    caller, engine = principal(request), request.app[ENGINE]
    q = parse(DlqQuery, query_values(request.query), what="the query string", strict=False)
    queue = queue_named(engine, q.queue).name if q.queue is not None else None
    query = JobQuery(queue=queue, states=_FAILED, type=q.type,
                     tenant_id=tenant_filter(caller, None),
                     after=q.after, limit=q.limit)
    page, cursor = await page_of(engine, caller, query)
    now = engine.clock.now()
    return json_response({"jobs": [job_view(j, now) for j in page], "count": len(page),
                          "limit": q.limit, "nextCursor": cursor})


@routes.post(f"{PREFIX}/retry")
@audited("dlq.retry")
@require("admin", "venue_admin")
async def retry_dlq(request: web.Request) -> web.Response:
    """Retry each listed job. A result is `{"jobId", "status": "retrying", "attempts",
    "maxAttempts"}` or `{"jobId", "status": "error", "code", "message"}` with the code the
    single-job route would answer (`job_not_found`, `illegal_transition` for a job that is not
    failed, `idempotency_conflict`)."""
    caller, engine = principal(request), request.app[ENGINE]
    body = parse(DlqRetry, await read_json(request))
    if len(set(body.jobIds)) != len(body.jobIds):
        raise ValidationError("jobIds lists an id more than once", code="duplicate_job_id",
                              field="jobIds")
    results = await retry_failed(engine, caller, body.jobIds, body.attempts)
    retried = sum(1 for r in results if r["status"] == "retrying")
    note(request, ",".join(body.jobIds), requested=len(body.jobIds), retried=retried)
    return json_response({"total": len(results), "retried": retried,
                          "failed": len(results) - retried, "results": results})


@routes.delete(f"{PREFIX}/{{id}}")
@audited("dlq.discard")
@require("admin", "venue_admin")
async def discard_dlq(request: web.Request) -> web.Response:
    caller, engine = principal(request), request.app[ENGINE]
    gone = await discard_failed(engine, caller, request.match_info["id"])
    note(request, gone.id)
    return json_response({"jobId": gone.id, "status": "discarded", "queue": gone.queue,
                          "type": gone.type})


async def retry_failed(engine: Engine, caller: Principal, job_ids: Sequence[str],
                       attempts: int | None = None) -> list[dict[str, Any]]:
    """Retry each listed job for `caller` (the API's bulk retry and the dashboard's): one
    result per id, in order, a job the caller may not see reported exactly like a missing one."""
    results: list[dict[str, Any]] = []
    for job_id in job_ids:
        job = await seen_job(engine, caller, job_id)
        if job is None:
            results.append(_error(job_id, "job_not_found", f"job {job_id} not found", 404))
            continue
        try:
            job = await engine.retry(job.id, attempts)
        except TickqError as exc:
            results.append(_error(job_id, exc.code, exc.message, status_for(exc)))
            continue
        results.append({"jobId": job.id, "status": "retrying", "queue": job.queue,
                        "attempts": job.attempts, "maxAttempts": job.max_attempts})
    return results


async def discard_failed(engine: Engine, caller: Principal, job_id: str) -> Job:
    """Delete one failed job `caller` may see; `JobNotFoundError` for one they may not (or
    that does not exist), `IllegalTransitionError` for one that is not failed."""
    job = await seen_job(engine, caller, job_id)
    if job is None:
        raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
    return await engine.discard(job.id)


def _error(job_id: str, code: str, message: str, status: int) -> dict[str, Any]:
    return {"jobId": job_id, "status": "error", "httpStatus": status, "code": code,
            "message": message}
