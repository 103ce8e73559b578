"""Cron schedules and one-off scheduled jobs under /api/v1/queue.

    POST   /schedules          make a cron schedule (admin)                              201
    GET    /schedules          every schedule, with its next slot (admin)                200
    GET    /schedules/{name}   one schedule (admin)                                      200
    DELETE /schedules/{name}   remove it; jobs it enqueued stay (admin)                  200
    POST   /schedules/{name}/pause    enqueue nothing until resumed (admin)              200
    POST   /schedules/{name}/resume   go on from the next slot (admin)                   200
    POST   /schedules/{name}/run      enqueue its job once, now (admin)                  201 / 200
    POST   /jobs/schedule      one job at a given time (`runAt`), any role that enqueues 201

A schedule's body: `name`, `cron` (five crontab fields), `timezone` (IANA, default UTC), `job`
(the template: queue, type, data, options, checked against the registry as an enqueue would be,
with field errors under `job.`), and `missedTicks`: `skip` (default) or `catch_up_once`. Its jobs
belong to the creator's tenant and user. Every tick is enqueued with the idempotency key
`schedule:<name>:<slot in UTC>`, so neither a restart nor a second node enqueues a slot twice
(see `tickq.scheduling.ticks`).

A one-off job is a delayed enqueue: the body of `POST /jobs` with `runAt` (ISO-8601 with a zone)
instead of `options.delay`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, StringConstraints

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.errors import NotFoundError, ValidationError
from tickq.http.access import principal, require
from tickq.http.audit import audited, note
from tickq.http.body import parse, read_json
from tickq.http.jobs import ENQUEUERS, check_duplicate, prepare, refusal
from tickq.http.keys import ENGINE, SETTINGS
from tickq.http.responses import json_response
from tickq.http.schemas import MAX_DELAY_MS, CallbackUrl, JobOptions, Key, Name, NewJob
from tickq.http.views import enqueued_view
from tickq.scheduling.scheduler import Scheduler
from tickq.scheduling.schedules import (
    NAME_PATTERN,
    create_schedule,
    delete_schedule,
    run_schedule_now,
    set_schedule_paused,
)
from tickq.scheduling.template import JobTemplate
from tickq.scheduling.ticks import ScheduleTicker
from tickq.storage.base import Schedule

PREFIX = "/api/v1/queue"
routes = web.RouteTableDef()

#: the scheduler running beside the app's engine, when it runs one
SCHEDULER = web.AppKey("tickq.scheduler", Scheduler)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleJob(_Body):
    """The job a schedule enqueues at each slot."""

    queue: Name
    type: Name
    data: dict[str, Any]
    options: JobOptions = JobOptions()


class NewSchedule(_Body):
    """POST /api/v1/queue/schedules"""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    #: five crontab fields: minute hour day-of-month month day-of-week
    cron: Annotated[str, StringConstraints(min_length=9, max_length=200)]
    #: an IANA time zone the expression is read in
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    job: ScheduleJob
    #: what slots missed while nothing ran become: dropped, or the newest of them enqueued once
    missedTicks: Literal["skip", "catch_up_once"] = "skip"


def _iso_time(value: Any) -> Any:
    """JSON has no time type and strict parsing takes none from text: read the ISO-8601 text
    here (a time without a zone is then refused as not timezone-aware)."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 time with a zone, such as "
                             "2026-01-05T09:00:00Z") from None
    return value


class ScheduledJob(_Body):
    """POST /api/v1/queue/jobs/schedule: `POST /jobs` with a time instead of a delay."""

    queue: Name
    type: Name
    data: dict[str, Any]
    #: when the job may start: ISO-8601 with a zone offset or Z
    runAt: Annotated[AwareDatetime, BeforeValidator(_iso_time)]
    options: JobOptions = JobOptions()
    idempotencyKey: Key | None = None
    callbackUrl: CallbackUrl | None = None


# --- cron schedules -------------------------------------------------------------------------


@routes.post(f"{PREFIX}/schedules")
@audited("schedule.create")
@require("admin")
async def add_schedule(request: web.Request) -> web.Response:
    caller, engine = principal(request), request.app[ENGINE]
    body = parse(NewSchedule, await read_json(request))
    note(request, body.name, cron=body.cron, timezone=body.timezone, type=body.job.type)
    # The template is checked as an enqueue of it by this caller would be, so its problems
    # come back as the same field errors (under `job.`).
    item = NewJob(queue=body.job.queue, type=body.job.type, data=body.job.data,
                  options=body.job.options)
    [prepared] = prepare(engine, caller, body.job.queue, [item])
    if not isinstance(prepared, Job):
        raise refusal([{**p, "field": f"job.{p['field']}"} for p in prepared])
    options = body.job.options
    template = JobTemplate(queue=body.job.queue, type=body.job.type, data=body.job.data,
                           priority=options.priority, delay_ms=options.delay,
                           attempts=options.attempts, ordering_key=options.orderingKey)
    try:
        schedule = await create_schedule(
            engine, name=body.name, cron=body.cron, timezone=body.timezone, template=template,
            missed=body.missedTicks, tenant_id=caller.tenant_id, user_id=caller.user_id,
            scheduler=request.app.get(SCHEDULER))
    except ValidationError as exc:
        raise _under_job(exc) from None
    return json_response(schedule_view(schedule, ticker_of(request)), status=201)


@routes.get(f"{PREFIX}/schedules")
@require("admin")
async def list_schedules(request: web.Request) -> web.Response:
    schedules = await request.app[ENGINE].store.schedule_list()
    ticker = ticker_of(request)
    return json_response({"schedules": [schedule_view(s, ticker) for s in schedules],
                          "count": len(schedules)})


@routes.get(f"{PREFIX}/schedules/{{name}}")
@require("admin")
async def get_schedule(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    schedule = await request.app[ENGINE].store.schedule_get(name)
    if schedule is None:
        raise NotFoundError(f"no schedule named {name[:80]!r}", code="schedule_not_found")
    return json_response(schedule_view(schedule, ticker_of(request)))


@routes.delete(f"{PREFIX}/schedules/{{name}}")
@audited("schedule.delete")
@require("admin")
async def remove_schedule(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    note(request, name[:80])
    await delete_schedule(request.app[ENGINE], name, scheduler=request.app.get(SCHEDULER))
    return json_response({"name": name, "deleted": True})


@routes.post(f"{PREFIX}/schedules/{{name}}/pause")
@audited("schedule.pause")
@require("admin")
async def pause_schedule(request: web.Request) -> web.Response:
    """Stop enqueueing the schedule's jobs; slots that fall while it is paused are dropped."""
    return json_response(schedule_view(await set_paused(request, True), ticker_of(request)))


@routes.post(f"{PREFIX}/schedules/{{name}}/resume")
@audited("schedule.resume")
@require("admin")
async def resume_schedule(request: web.Request) -> web.Response:
    """Enqueue the schedule's jobs again from its next slot."""
    return json_response(schedule_view(await set_paused(request, False), ticker_of(request)))


@routes.post(f"{PREFIX}/schedules/{{name}}/run")
@audited("schedule.run")
@require("admin")
async def run_schedule(request: web.Request) -> web.Response:
    """Enqueue the schedule's job once, now, outside its slots; its own slots are untouched.
    The same request again within the same second returns the job it made (200)."""
    job, created = await run_now(request)
    return json_response(enqueued_view(job, request.app[ENGINE].clock.now(), created=created),
                         status=201 if created else 200)


async def set_paused(request: web.Request, paused: bool) -> Schedule:
    """Pause or resume the schedule the path names, noted for the audit trail. The API's
    routes and the dashboard's buttons both act through this (and `run_now`)."""
    name = request.match_info["name"]
    note(request, name[:80])
    return await set_schedule_paused(request.app[ENGINE], name, paused)


async def run_now(request: web.Request) -> tuple[Job, bool]:
    """Enqueue the job of the schedule the path names once, now; the job and whether it is
    new, noted for the audit trail."""
    name = request.match_info["name"]
    note(request, name[:80])
    job, created = await run_schedule_now(request.app[ENGINE], name)
    note(request, name[:80], job_id=job.id, new_job=created)
    return job, created


def schedule_view(s: Schedule, ticker: ScheduleTicker) -> dict[str, Any]:
    return {"name": s.name, "cron": s.cron, "timezone": s.timezone,
            "job": JobTemplate.from_json(s.template_json).view(), "missedTicks": s.missed,
            "tenantId": s.tenant_id, "userId": s.user_id, "createdAt": iso(s.created_at),
            "lastSlot": iso(s.last_slot),
            "nextRunAt": None if s.paused else iso(ticker.next_run_at(s)),
            "pending": [iso(t) for t in s.pending], "lastJobId": s.last_job_id,
            "lastError": s.last_error, "paused": s.paused}


def ticker_of(request: web.Request) -> ScheduleTicker:
    """The running scheduler's ticker, or one of its own when the app runs no scheduler."""
    scheduler = request.app.get(SCHEDULER)
    return scheduler.ticker if scheduler is not None else ScheduleTicker(request.app[ENGINE])


def _under_job(exc: ValidationError) -> ValidationError:
    """A template problem found by the engine's checks, with its field named under `job.`
    (the schedule's own fields, name, cron and timezone, are left as they are)."""
    own = {"name", "cron", "timezone", "missedTicks"}
    field = exc.field or "data"
    if field not in own:
        field = f"job.{field}"
    details = [{**d, "field": d["field"] if d["field"] in own else f"job.{d['field']}"}
               for d in exc.details] if exc.details else None
    return ValidationError(exc.message, code=exc.code, field=field, details=details)


# --- one-off scheduled jobs ----------------------------------------------------------------


@routes.post(f"{PREFIX}/jobs/schedule")
@require(*ENQUEUERS)
async def schedule_job(request: web.Request) -> web.Response:
    """A delayed enqueue: the job waits until `runAt`. A time more than the schedules' misfire
    grace in the past, or more than a year ahead, is refused."""
    caller, engine = principal(request), request.app[ENGINE]
    body = parse(ScheduledJob, await read_json(request))
    if body.options.delay:
        raise ValidationError("give runAt or options.delay, not both", code="invalid_delay",
                              field="options.delay")
    now = engine.clock.now()
    run_at = body.runAt.timestamp()
    grace = request.app[SETTINGS].schedule_misfire_grace_s
    if run_at < now - grace:
        raise ValidationError(f"runAt {body.runAt.isoformat()} is in the past",
                              code="invalid_run_at", field="runAt")
    delay_ms = max(0.0, (run_at - now) * 1000)
    if delay_ms > MAX_DELAY_MS:
        raise ValidationError("runAt is more than 366 days ahead", code="invalid_run_at",
                              field="runAt")
    item = NewJob(queue=body.queue, type=body.type, data=body.data,
                  options=body.options.model_copy(update={"delay": delay_ms}),
                  idempotencyKey=body.idempotencyKey, callbackUrl=body.callbackUrl)
    [built] = prepare(engine, caller, body.queue, [item])
    if not isinstance(built, Job):
        raise refusal([{**p, "field": "runAt" if p["field"] == "options.delay" else p["field"]}
                       for p in built])
    # The record was built at a slightly later `now` than the delay was computed at: start it
    # at the exact time asked for, its expiry window unchanged.
    target = max(run_at, built.created_at)
    if built.expires_at is not None:
        built.expires_at += target - built.run_at
    built.run_at = target
    [(job, created)] = await engine.enqueue_jobs([built], copy=False)
    if not created:
        check_duplicate(caller, built, body.idempotencyKey, job)
    return json_response(enqueued_view(job, engine.clock.now(), created=created),
                         status=201 if created else 200)


__all__ = ["SCHEDULER", "NewSchedule", "ScheduleJob", "ScheduledJob", "routes", "run_now",
           "schedule_view", "set_paused", "ticker_of"]
