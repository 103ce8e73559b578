"""Job management under /api/v1/queue (spec seed-003 endpoints 1-5, roles per seed-004).

    POST   /jobs             enqueue one job (any role but monitoring)         201, or 200 for a
                                                                                duplicate key
    POST   /jobs/batch       enqueue 1-100 jobs (admin, venue_admin)            201 / 200
    GET    /jobs             list, newest first, cursor-paginated (any role)    200
    GET    /jobs/{id}        one job (any role, within its scope)               200
    POST   /jobs/{id}/retry  dead-letter retry (admin, venue_admin)             200
    DELETE /jobs/{id}        cancel (admin, venue_admin)                        200, or 202 while
                                                                                it still runs

The tenant and user of a job come from the caller's token, never from the body. A job outside
the caller's scope (`access.can_see`) answers 404 exactly like one that does not exist.

Idempotency: when a key (the caller's `idempotencyKey`, or the job type's automatic one) is held
by a job in the caller's tenant, that job is returned with 200 and `created: false` instead of a
new one with 201. A caller-chosen key reused for a different job (other type or data) is a 409,
as is a key held by a job the caller may not see: returning it would leak it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.producer import JobSpec
from tickq.engine.registry import JobType, Registry
from tickq.engine.states import JobState
from tickq.errors import (
    IdempotencyConflictError,
    JobNotFoundError,
    PermissionDeniedError,
    UnknownJobTypeError,
    UnknownQueueError,
    ValidationError,
)
from tickq.http.access import can_see, principal, require, scope_problem, tenant_filter
from tickq.http.audit import audited, note
from tickq.http.auth import Principal, Role
from tickq.http.body import parse, read_json, summary
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schemas import (
    MAX_ID_CHARS,
    JobOptions,
    ListQuery,
    NewBatch,
    NewJob,
    RetryRequest,
    query_values,
)
from tickq.http.views import enqueued_view, job_view, status_of
from tickq.storage.base import JobQuery

log = logging.getLogger(__name__)

PREFIX = "/api/v1/queue"
routes = web.RouteTableDef()

#: monitoring is the read-only role (seed-003 "Authorization"); every other role may enqueue
ENQUEUERS: tuple[Role, ...] = ("admin", "venue_admin", "service", "user")
#: a listing that must filter beyond what the store can (users, venue admins) reads at most
#: this many rounds of `SCAN_BATCH` jobs per request, then hands back a cursor to go on
SCAN_BATCH, SCAN_ROUNDS = 200, 10
#: engine field names -> request field names, for errors the engine's own checks raise
_SPEC_FIELDS = {"priority": "options.priority", "delay": "options.delay",
                "max_attempts": "options.attempts", "idempotency_key": "idempotencyKey",
                "expires_in": "options", "run_at": "options.delay"}

Problems = list[dict[str, str]]


# --- enqueue --------------------------------------------------------------------------------


@routes.post(f"{PREFIX}/jobs")
@require(*ENQUEUERS)
async def add_job(request: web.Request) -> web.Response:
    caller, engine = principal(request), request.app[ENGINE]
    body = parse(NewJob, await read_json(request))
    [built] = prepare(engine, caller, body.queue, [body])
    if not isinstance(built, Job):
        raise refusal(built)
    [(job, created)] = await engine.enqueue_jobs([built], copy=False)
    if not created:
        check_duplicate(caller, built, body.idempotencyKey, job)
    log.debug("job enqueued", extra={"event": "http_enqueued", "job_id": job.id,
                                     "queue": job.queue, "created": created})
    return json_response(enqueued_view(job, engine.clock.now(), created=created),
                         status=201 if created else 200)


@routes.post(f"{PREFIX}/jobs/batch")
@require("admin", "venue_admin")
async def add_batch(request: web.Request) -> web.Response:
    """Every job is checked before anything is written. With `stopOnError` one invalid job
    refuses the whole batch (400, nothing enqueued); without, the valid jobs are enqueued and
    the invalid ones reported in `errors`. `validateAll: false` stops checking at the first
    invalid job (only meaningful with `stopOnError`)."""
    caller, engine = principal(request), request.app[ENGINE]
    body = parse(NewBatch, await read_json(request))
    _known_queue(engine, body.queue)
    accepted: list[tuple[int, Job, str | None]] = []
    errors: list[dict[str, Any]] = []
    for i, (item, built) in enumerate(zip(body.jobs, prepare(engine, caller, body.queue,
                                                             body.jobs, batch=True),
                                          strict=True)):
        if isinstance(built, Job):
            accepted.append((i, built, item.idempotencyKey))
            continue
        errors.append(_item_error(i, item.type, built))
        if body.options.stopOnError and not body.options.validateAll:
            break
    if errors and (body.options.stopOnError or not accepted):
        why = "a job is invalid" if body.options.stopOnError else "no job is valid"
        raise ValidationError(f"the batch was refused ({why}); nothing was enqueued",
                              code="batch_invalid",
                              details=[d for e in errors for d in e["details"]])
    results = await engine.enqueue_jobs([built for _, built, _ in accepted], copy=False)
    now = engine.clock.now()
    done: list[dict[str, Any]] = []
    for (i, built, key), (job, created) in zip(accepted, results, strict=True):
        if not created:
            try:
                check_duplicate(caller, built, key, job)
            except IdempotencyConflictError as exc:
                errors.append(_item_error(i, built.type, [
                    {"field": f"jobs[{i}].idempotencyKey", "message": exc.message,
                     "code": exc.code}]))
                continue
        done.append({"index": i, "jobId": job.id, "type": job.type,
                     "status": status_of(job, now), "created": created})
    errors.sort(key=lambda e: int(e["index"]))
    any_created = any(r.created for r in results)
    return json_response({"queue": body.queue, "total": len(body.jobs), "successful": len(done),
                          "failed": len(errors), "jobs": done, "errors": errors},
                         status=201 if any_created else 200)


class JobRequest(Protocol):
    """One requested job, as a single enqueue or a batch item carries it."""

    type: str
    data: dict[str, Any]
    options: JobOptions
    idempotencyKey: str | None
    callbackUrl: str | None


def prepare(engine: Engine, caller: Principal, queue: str, items: Sequence[JobRequest], *,
            batch: bool = False) -> list[Job | Problems]:
    """For each requested job, its record, or every problem with it (field names
    prefixed `jobs[i].` in a batch). Records are built by the engine's own checks
    (`Engine.build_many`), so they cannot be refused at enqueue and are not built twice."""
    registry = engine.registry
    queue_problem: dict[str, str] | None = None
    try:
        registry.queue(queue)
    except UnknownQueueError as exc:
        queue_problem = {"field": "queue", "message": exc.message, "code": exc.code}
    #: type name -> (its JobType, or the problem with it as (field, code, message)); a batch
    #: is usually one or two types, so each is looked up and checked once
    types: dict[str, tuple[JobType | None, tuple[str, str, str] | None]] = {}
    out: list[Job | Problems] = []
    pending: list[int] = []
    specs: list[JobSpec] = []
    tenant_id, user_id, scoped = caller.tenant_id, caller.user_id, caller.scoped
    for i, item in enumerate(items):
        checked = types.get(item.type)
        if checked is None:
            checked = types[item.type] = _check_type(registry, caller, queue, item.type)
        jt, problem = checked
        if queue_problem is not None and jt is not None:
            problem = None  # the queue is unknown: its type fits no queue, nothing more to say
        elif problem is None and scoped:
            why = scope_problem(caller, item.data, item.type)
            problem = None if why is None else ("data", "out_of_scope", why)
        if queue_problem is not None or problem is not None or jt is None:
            prefix = f"jobs[{i}]." if batch else ""
            problems = [queue_problem] if queue_problem is not None else []
            if problem is not None:
                problems.append({"field": f"{prefix}{problem[0]}", "code": problem[1],
                                 "message": problem[2]})
            out.append(problems)
            continue
        out.append([])
        options = item.options
        pending.append(i)
        specs.append(JobSpec(type=jt.name, data=item.data, priority=options.priority,
                             delay_s=options.delay / 1000, idempotency_key=item.idempotencyKey,
                             tenant_id=tenant_id, user_id=user_id,
                             max_attempts=options.attempts, ordering_key=options.orderingKey,
                             callback_url=item.callbackUrl))
    for i, built in zip(pending, engine.build_many(specs), strict=True):
        if not isinstance(built, ValidationError):
            out[i] = built
            continue
        prefix = f"jobs[{i}]." if batch else ""
        if built.details:  # the job type's data schema: one entry per field
            out[i] = [{**d, "field": f"{prefix}{d['field']}"} for d in built.details]
        else:
            field = _SPEC_FIELDS.get(built.field or "", built.field or "body")
            out[i] = [{"field": f"{prefix}{field}", "message": built.message,
                       "code": built.code}]
    return out


def _check_type(registry: Registry, caller: Principal, queue: str, type_name: str
                ) -> tuple[JobType | None, tuple[str, str, str] | None]:
    """The job type named in a request and what is wrong with it for this queue and caller,
    as (field, code, message), whatever the job's data."""
    try:
        jt = registry.job_type(type_name)
    except UnknownJobTypeError:
        known = sorted(t.name for t in registry.types if t.queue == queue)
        return None, ("type", "unknown_job_type",
                      f"unknown job type {type_name!r}; the {queue!r} queue takes: "
                      f"{', '.join(known) or 'no types'}")
    if jt.queue != queue:
        return jt, ("type", "queue_mismatch",
                    f"job type {jt.name!r} runs on the {jt.queue!r} queue, not {queue!r}")
    if not caller.scoped:
        why = scope_problem(caller, {}, type_name)
        if why is not None:
            return jt, ("data", "out_of_scope", why)
    return jt, None


def refusal(problems: Problems) -> ValidationError | PermissionDeniedError:
    """The error a single enqueue answers with: 403 when the caller acts outside their scope,
    400 listing every problem otherwise."""
    if problems[0]["code"] == "out_of_scope":
        return PermissionDeniedError(problems[0]["message"], code="out_of_scope")
    code = problems[0]["code"] if len(problems) == 1 else "validation_error"
    return ValidationError(f"the job is invalid: {summary(problems)}", code=code,
                           details=problems)


def check_duplicate(caller: Principal, built: Job, key: str | None, job: Job) -> None:
    """The enqueue of `built` matched `job` by idempotency key: fine if it is the same request
    again. `built` holds the data as its type's checks left it, so it compares with the stored
    job's as it is, without checking the data a second time."""
    if not can_see(caller, job):
        raise IdempotencyConflictError("the idempotency key is already in use by another job")
    if key is not None and (job.type != built.type or job.data != built.data):
        raise IdempotencyConflictError(
            f"the idempotency key {key!r} was already used for a different job ({job.id})",
            job_id=job.id)


def _item_error(index: int, type_name: str, problems: Problems) -> dict[str, Any]:
    return {"index": index, "type": type_name,
            "code": problems[0]["code"] if len(problems) == 1 else "validation_error",
            "message": summary(problems), "details": problems}


def _known_queue(engine: Engine, queue: str) -> None:
    try:
        engine.registry.queue(queue)
    except UnknownQueueError as exc:
        raise ValidationError(exc.message, code=exc.code, field="queue") from None


# --- read -----------------------------------------------------------------------------------


@routes.get(f"{PREFIX}/jobs/{{id}}")
async def get_job(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    job = await visible_job(request, request.query.get("queue"))
    return json_response(job_view(job, engine.clock.now()))


@routes.get(f"{PREFIX}/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """Newest first. `nextCursor` is null on the last page; pass it back as `after`."""
    caller, engine = principal(request), request.app[ENGINE]
    q = parse(ListQuery, query_values(request.query), what="the query string", strict=False)
    if q.queue is not None:
        _known_queue(engine, q.queue)
    query = JobQuery(queue=q.queue, states=frozenset(q.state) if q.state else None, type=q.type,
                     tenant_id=tenant_filter(caller, q.tenant), after=q.after, limit=q.limit)
    page, cursor = await page_of(engine, caller, query)
    now = engine.clock.now()
    return json_response({"jobs": [job_view(j, now) for j in page], "count": len(page),
                          "limit": q.limit, "nextCursor": cursor})


async def page_of(engine: Engine, caller: Principal, query: JobQuery
                  ) -> tuple[list[Job], str | None]:
    """One page of the jobs `caller` may see, and the cursor of the next page (None at the end).

    The store filters by tenant; a user's own jobs and a venue admin's venues are filtered
    here, reading ahead in rounds. When the rounds run out before the page fills, the page is
    short but the cursor continues the scan, so paging never skips or repeats a job."""
    limit = query.limit
    if not caller.scoped:
        jobs = await engine.list_jobs(dataclasses.replace(query, limit=limit + 1))
        page = jobs[:limit]
        return page, (page[-1].id if len(jobs) > limit else None)
    seen: list[Job] = []
    after = query.after
    batch = max(SCAN_BATCH, limit + 1)
    for _ in range(SCAN_ROUNDS):
        chunk = await engine.list_jobs(dataclasses.replace(query, after=after, limit=batch))
        for job in chunk:
            if can_see(caller, job):
                seen.append(job)
                if len(seen) > limit:
                    return seen[:limit], seen[limit - 1].id
        if len(chunk) < batch:
            return seen, None
        after = chunk[-1].id
    return seen, after


async def visible_job(request: web.Request, queue: str | None) -> Job:
    """The job named in the path, if the caller may see it (and it is in `queue`, when one is
    given: the spec's clients pass it); `JobNotFoundError` otherwise, whatever the reason."""
    job_id = request.match_info["id"]
    job = await seen_job(request.app[ENGINE], principal(request), job_id)
    if queue is not None:
        queue = queue.removesuffix("-queue")  # the spec names queues "money-queue" in places
    if job is None or (queue is not None and job.queue != queue):
        raise JobNotFoundError(f"job {job_id[:MAX_ID_CHARS]} not found", job_id=job_id)
    return job


async def seen_job(engine: Engine, caller: Principal, job_id: str) -> Job | None:
    """The job `job_id` names if `caller` may see it, else None: a job outside their scope is
    looked up exactly like one that does not exist (an id longer than any is not looked up)."""
    job = await engine.get(job_id) if len(job_id) <= MAX_ID_CHARS else None
    return job if job is not None and can_see(caller, job) else None


# --- operator actions -----------------------------------------------------------------------


@routes.post(f"{PREFIX}/jobs/{{id}}/retry")
@audited("job.retry")
@require("admin", "venue_admin")
async def retry_job(request: web.Request) -> web.Response:
    """Put a dead-letter (failed) job back to waiting; 409 when the job is not failed."""
    engine = request.app[ENGINE]
    raw = await read_json(request, optional=True)
    body = RetryRequest() if raw is None else parse(RetryRequest, raw)
    job = await visible_job(request, body.queue)
    job = await engine.retry(job.id, body.attempts)
    note(request, job.id, queue=job.queue, attempts=job.attempts)
    return json_response({"jobId": job.id, "status": "retrying",
                          "message": "Job has been queued for retry",
                          "attempts": job.attempts, "maxAttempts": job.max_attempts})


@routes.delete(f"{PREFIX}/jobs/{{id}}")
@audited("job.cancel")
@require("admin", "venue_admin")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a waiting job (200). A running job is asked to stop (202, "cancelling"): its
    processor is interrupted at its next await and the job ends cancelled. A finished job
    cannot be cancelled (409)."""
    engine = request.app[ENGINE]
    job = await visible_job(request, request.query.get("queue"))
    job = await engine.cancel(job.id)
    note(request, job.id, queue=job.queue, state=job.state.value)
    if job.state is JobState.CANCELLED:
        return json_response({"jobId": job.id, "status": "cancelled",
                              "message": "Job has been cancelled"})
    return json_response({"jobId": job.id, "status": "cancelling",
                          "message": "The job is running; it has been asked to stop"},
                         status=202)
