"""Dashboard pages about jobs: sign-in, the overview, the job list and one job.

Data comes from the same functions the API's handlers use (`queues.counts_view`,
`jobs.page_of`, `jobs.visible_job`, `access.tenant_filter`, the metrics behind
`/metrics/queue-stats`), so the dashboard can show nothing the caller's token could not read
through the API. Job data, results and error messages pass through `tickq.redaction` first:
an operator needs to see the shape of a job, not a customer's email address or card number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiDict

from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.states import JobState
from tickq.errors import AuthenticationError, TickqError
from tickq.http.access import tenant_filter
from tickq.http.audit import AUDIT_LOG_KEY
from tickq.http.audit import MAX_LIMIT as AUDIT_MAX_LIMIT
from tickq.http.body import parse
from tickq.http.dashboard.charts import Chart, charts
from tickq.http.dashboard.guard import PREFIX, may, safe_next, signed_in
from tickq.http.dashboard.render import render, see_other
from tickq.http.dashboard.session import (
    check_same_origin,
    current,
    sign_in,
    sign_out,
)
from tickq.http.jobs import page_of, seen_job, visible_job
from tickq.http.keys import ENGINE, METRICS, PRINCIPAL
from tickq.http.queues import counts_view
from tickq.http.schemas import ListQuery, query_values
from tickq.http.views import status_of
from tickq.metrics import Metrics
from tickq.redaction import redact_text, redact_value
from tickq.storage.base import JobQuery

routes = web.RouteTableDef()

#: jobs per page of the job list
PAGE_SIZE = 50
#: the job list's filters that are passed on to `ListQuery` as they are
_FILTERS = ("queue", "state", "type", "tenant", "after")


# --- signing in -----------------------------------------------------------------------------


@routes.get(f"{PREFIX}/login")
async def login_form(request: web.Request) -> web.StreamResponse:
    if current(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return render(request, "login.html", {"next": safe_next(request.query.get("next")),
                                          "problem": None})


@routes.post(f"{PREFIX}/login")
async def login(request: web.Request) -> web.StreamResponse:
    """Exchange a token for a session cookie. A token the API would refuse is refused here
    with the verifier's reason (401), and nothing is set."""
    check_same_origin(request)
    form = await request.post()
    token, target = form.get("token"), safe_next(str(form.get("next") or ""))
    response = see_other(target)
    try:
        if not isinstance(token, str) or not token.strip():
            raise AuthenticationError("paste a token to sign in", code="missing_token")
        sign_in(request, response, token)
    except AuthenticationError as exc:
        return render(request, "login.html", {"next": target, "problem": exc.message},
                      status=401)
    return response


@routes.post(f"{PREFIX}/logout")
@signed_in
async def logout(request: web.Request) -> web.StreamResponse:
    response = see_other(f"{PREFIX}/login")
    sign_out(response)
    return response


# --- overview -------------------------------------------------------------------------------


async def queue_rows(engine: Engine) -> list[dict[str, Any]]:
    """Each queue, in tier order: its counts as `GET /queues` gives them and the age of its
    oldest due job as `/metrics/queue-stats` does (read from the store directly: refreshing
    the metrics would also ask the wallet's node, on every live update)."""
    now = engine.clock.now()
    rows = []
    for q in sorted(engine.registry.queues, key=lambda q: q.tier):
        due = await engine.store.queue_oldest_due(q.name, now)
        rows.append({"name": q.name, "tier": q.tier, **await counts_view(engine, q.name),
                     "oldest_s": 0.0 if due is None else max(0.0, now - due)})
    return rows


def overview_charts(engine: Engine, metrics: Metrics) -> tuple[Chart, Chart]:
    return charts(metrics, [q.name for q in engine.registry.queues], engine.clock.now())


@routes.get(PREFIX)
@signed_in
async def overview(request: web.Request) -> web.StreamResponse:
    engine, metrics = request.app[ENGINE], request.app[METRICS]
    caller = request[PRINCIPAL]
    shown = overview_charts(engine, metrics) if may(caller, "charts") else ()
    return render(request, "overview.html", {"queues": await queue_rows(engine),
                                             "charts": shown})


# --- jobs -----------------------------------------------------------------------------------


def _filters(request: web.Request) -> dict[str, str]:
    """The job list's query string without empty fields (a submitted form sends them all)."""
    return {k: v.strip() for k, v in request.query.items()
            if k in (*_FILTERS, "q") and v.strip()}


async def _search(engine: Engine, request: web.Request, term: str,
                  tenant: str | None) -> list[Job]:
    """Jobs matching `term` as an id, else as an idempotency key, that the caller may see."""
    caller = request[PRINCIPAL]
    job = await seen_job(engine, caller, term)
    if job is not None and tenant in (None, job.tenant_id):
        return [job]
    page, _ = await page_of(engine, caller, JobQuery(idempotency_key=term, tenant_id=tenant,
                                                     limit=PAGE_SIZE))
    return page


@routes.get(f"{PREFIX}/jobs")
@signed_in
async def job_list(request: web.Request) -> web.StreamResponse:
    """Newest first, filtered by queue, state, type and (admins) tenant, or found by id or
    idempotency key; `after` pages on like the API's cursor."""
    engine, caller = request.app[ENGINE], request[PRINCIPAL]
    filters = _filters(request)
    context: dict[str, Any] = {"filters": filters, "jobs": [], "next_cursor": None,
                               "problem": None, "states": [s.value for s in JobState],
                               "queue_names": [q.name for q in engine.registry.queues],
                               "type_names": sorted(t.name for t in engine.registry.types)}
    try:
        values = {k: v for k, v in filters.items() if k != "q"}
        q = parse(ListQuery, query_values(MultiDict(values)), what="the filters", strict=False)
        if q.queue is not None:
            engine.registry.queue(q.queue)
        tenant = tenant_filter(caller, q.tenant)
        term = filters.get("q")
        if term is not None:
            found = await _search(engine, request, term[:256], tenant)
            cursor = None
        else:
            query = JobQuery(queue=q.queue, states=frozenset(q.state) if q.state else None,
                             type=q.type, tenant_id=tenant, after=q.after, limit=PAGE_SIZE)
            found, cursor = await page_of(engine, caller, query)
    except TickqError as exc:
        context["problem"] = exc.message
        return render(request, "jobs.html", context, status=400 if exc.code != "forbidden"
                      else 403)
    now = engine.clock.now()
    context["jobs"] = [{"job": j, "status": status_of(j, now)} for j in found]
    if cursor is not None:
        context["next_query"] = {**{k: v for k, v in filters.items() if k != "after"},
                                 "after": cursor}
    context["next_cursor"] = cursor
    return render(request, "jobs.html", context)


def pretty(value: Any) -> str:
    """A JSON value with personal data and secrets masked, indented for reading."""
    return orjson.dumps(redact_value(value), option=orjson.OPT_INDENT_2).decode()


#: operator actions on one job, as the audit trail names them, and how the timeline says them
OPERATOR_STEPS = {"job.retry": "put back to waiting by an operator",
                  "dlq.retry": "put back to waiting by an operator",
                  "job.cancel": "cancelled by an operator"}


async def operator_steps(request: web.Request, job: Job) -> list[tuple[float, str]]:
    """The audited operator actions that succeeded on `job` (a DLQ retry is in no field of
    the record, only in the trail), with the acting role but not the operator's name: the
    job's tenant may read this page."""
    trail = request.get(AUDIT_LOG_KEY)
    if trail is None:
        return []
    steps = []
    for entry in await trail.read(AUDIT_MAX_LIMIT):
        label = OPERATOR_STEPS.get(str(entry.get("action")))
        if (label is None or entry.get("outcome") != "ok"
                or job.id not in str(entry.get("target") or "").split(",")):
            continue
        try:
            at = datetime.fromisoformat(str(entry["at"])).timestamp()
        except (KeyError, ValueError):
            continue
        steps.append((at, f"{label} ({entry.get('role')})"))
    return steps


def timeline(job: Job, now: float, steps: Sequence[tuple[float, str]] = ()
             ) -> list[tuple[float, str]]:
    """The job's state changes, oldest first, from what the store keeps: when it was enqueued,
    each failed attempt, its latest start, when it is (or was) due, and how it ended; with the
    operator `steps` (retries, cancels) that the record itself does not keep."""
    events: list[tuple[float, str]] = [(job.created_at, f"enqueued on {job.queue}"), *steps]
    for e in job.errors:
        events.append((e.at, f"attempt {e.attempt} failed: {e.type}"))
    if job.started_at is not None:
        events.append((job.started_at, f"started (attempt {max(1, job.attempts)})"))
    if job.state is JobState.WAITING and job.run_at > job.created_at:
        label = "due to run" if job.run_at > now else "became due"
        events.append((job.run_at, f"{label} (attempt {job.attempts + 1})"))
    if job.finished_at is not None:
        events.append((job.finished_at, job.state.value))
    return sorted(events, key=lambda e: e[0])


@routes.get(f"{PREFIX}/jobs/{{id}}")
@signed_in
async def job_detail(request: web.Request) -> web.StreamResponse:
    """One job the caller may see (another tenant's answers 404, as in the API)."""
    engine = request.app[ENGINE]
    job = await visible_job(request, None)
    now = engine.clock.now()
    errors = [{"attempt": e.attempt, "type": e.type, "code": e.code, "at": e.at,
               "message": redact_text(e.message)} for e in job.errors]
    return render(request, "job.html", {
        "job": job, "status": status_of(job, now), "data": pretty(job.data),
        "result": None if job.result is None else pretty(job.result), "errors": errors,
        "timeline": timeline(job, now, await operator_steps(request, job))})
