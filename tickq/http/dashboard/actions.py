"""Dashboard actions: each is a POSTed form (CSRF-checked by `guard.signed_in`), admitted for
the roles of the API route doing the same (`guard.ACTION_ROLES`), audited under the same action
name, and carried out by the same code the API route calls. Each answers with a redirect back
to its page saying what happened (post/redirect/get), so a reload never repeats it.

Destructive or far-reaching actions (discarding dead jobs, an emergency stop, lifting one)
first POST to a `.../confirm` route, which changes nothing and shows what would happen with a
button to go ahead: a confirmation that works without JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tickq.errors import TickqError, ValidationError
from tickq.http import queues, schedules
from tickq.http.access import RouteHandler, check_role, principal, require
from tickq.http.alerts import acknowledge_alert
from tickq.http.audit import audited, note
from tickq.http.dashboard.guard import ACTION_ROLES, PREFIX, signed_in
from tickq.http.dashboard.render import done, render
from tickq.http.dlq import discard_failed, retry_failed
from tickq.http.keys import ENGINE
from tickq.http.limits import service_named
from tickq.http.schemas import MAX_LIMIT

routes = web.RouteTableDef()


def action(name: str) -> Callable[[RouteHandler], RouteHandler]:
    """A dashboard action: signed in (with its CSRF token), audited as the API's `name`
    action is, and admitted to the roles of the API route doing the same."""
    def wrap(handler: RouteHandler) -> RouteHandler:
        return signed_in(audited(name)(require(*ACTION_ROLES[name])(handler)))
    return wrap


async def _job_ids(request: web.Request) -> list[str]:
    """The ticked `job` checkboxes of a DLQ form: up to 100 distinct ids (none: nothing to
    do, and the page says so)."""
    form = await request.post()
    ids = list(dict.fromkeys(str(v) for v in form.getall("job", [])))
    if len(ids) > MAX_LIMIT:
        raise ValidationError(f"select at most {MAX_LIMIT} jobs at a time", field="job",
                              code="too_many_jobs")
    return ids


async def _service(request: web.Request) -> str | None:
    """The provider a limits form names ("" or absent: every provider)."""
    form = await request.post()
    raw = str(form.get("service") or "")
    return service_named(request.app[ENGINE], raw) if raw else None


# --- queues ---------------------------------------------------------------------------------


@routes.post(f"{PREFIX}/queues/{{name}}/pause")
@action("queue.pause")
async def pause_queue(request: web.Request) -> web.StreamResponse:
    await queues.set_paused(request, True)
    return done(PREFIX, "paused")


@routes.post(f"{PREFIX}/queues/{{name}}/resume")
@action("queue.resume")
async def resume_queue(request: web.Request) -> web.StreamResponse:
    await queues.set_paused(request, False)
    return done(PREFIX, "queue-resumed")


# --- dead-letter queue ----------------------------------------------------------------------


@routes.post(f"{PREFIX}/dlq/retry")
@action("dlq.retry")
async def retry_dlq(request: web.Request) -> web.StreamResponse:
    ids = await _job_ids(request)
    if not ids:
        return done(f"{PREFIX}/dlq", "nothing")
    results = await retry_failed(request.app[ENGINE], principal(request), ids)
    retried = sum(1 for r in results if r["status"] == "retrying")
    note(request, ",".join(ids), requested=len(ids), retried=retried)
    if retried < len(ids):
        return done(f"{PREFIX}/dlq", "retry-failed", len(ids) - retried)
    return done(f"{PREFIX}/dlq", "retried", retried)


@routes.post(f"{PREFIX}/dlq/discard/confirm")
@signed_in
@require(*ACTION_ROLES["dlq.discard"])
async def confirm_discard(request: web.Request) -> web.StreamResponse:
    ids = await _job_ids(request)
    if not ids:
        return done(f"{PREFIX}/dlq", "nothing")
    return render(request, "confirm.html", {
        "title": "Discard dead-letter jobs",
        "question": f"Delete {len(ids)} failed job(s) and their history for good?",
        "items": ids, "action": f"{PREFIX}/dlq/discard", "fields": [("job", i) for i in ids],
        "button": "Discard", "back": f"{PREFIX}/dlq"})


@routes.post(f"{PREFIX}/dlq/discard")
@action("dlq.discard")
async def discard_dlq(request: web.Request) -> web.StreamResponse:
    """Discard each selected job; one that cannot be (gone meanwhile, no longer failed) is
    skipped and the count says how many went."""
    ids = await _job_ids(request)
    if not ids:
        return done(f"{PREFIX}/dlq", "nothing")
    engine, caller = request.app[ENGINE], principal(request)
    gone = 0
    for job_id in ids:
        try:
            await discard_failed(engine, caller, job_id)
        except TickqError:
            continue
        gone += 1
    note(request, ",".join(ids), requested=len(ids), discarded=gone)
    return done(f"{PREFIX}/dlq", "discarded", gone)


# --- provider limits ------------------------------------------------------------------------


@routes.post(f"{PREFIX}/limits/{{service}}/reset")
@action("rate_limit.reset")
async def reset_limit(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    service = service_named(engine, request.match_info["service"])
    engine.reset_provider(service)
    note(request, service)
    return done(f"{PREFIX}/limits", "reset")


_CONFIRM = {"stop": ("emergency.stop", "Emergency stop",
                     "Start no job that calls {what} until it is resumed? Running jobs finish; "
                     "waiting ones wait without spending attempts.", "Stop"),
            "resume": ("emergency.resume", "Resume",
                       "Lift the emergency stop of {what}? Parked jobs start again at once.",
                       "Resume")}


@routes.post(f"{PREFIX}/limits/{{verb:stop|resume}}/confirm")
@signed_in
async def confirm_limit(request: web.Request) -> web.StreamResponse:
    verb = request.match_info["verb"]
    action, title, question, button = _CONFIRM[verb]
    check_role(principal(request), *ACTION_ROLES[action])
    service = await _service(request)
    what = "every provider" if service is None else service
    return render(request, "confirm.html", {
        "title": title, "question": question.format(what=what), "items": [],
        "action": f"{PREFIX}/limits/{verb}", "fields": [("service", service or "")],
        "button": button, "back": f"{PREFIX}/limits"})


@routes.post(f"{PREFIX}/limits/stop")
@action("emergency.stop")
async def emergency_stop(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    service = await _service(request)
    engine.emergency_stop(service)
    note(request, service or "*")
    return done(f"{PREFIX}/limits", "stopped")


@routes.post(f"{PREFIX}/limits/resume")
@action("emergency.resume")
async def emergency_resume(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    service = await _service(request)
    engine.resume_provider(service)
    note(request, service or "*")
    return done(f"{PREFIX}/limits", "resumed")


# --- alerts and schedules -------------------------------------------------------------------


@routes.post(f"{PREFIX}/alerts/{{id}}/acknowledge")
@action("alert.acknowledge")
async def acknowledge(request: web.Request) -> web.StreamResponse:
    await acknowledge_alert(request)
    return done(f"{PREFIX}/alerts", "acknowledged")


@routes.post(f"{PREFIX}/schedules/{{name}}/pause")
@action("schedule.pause")
async def pause_schedule(request: web.Request) -> web.StreamResponse:
    await schedules.set_paused(request, True)
    return done(f"{PREFIX}/schedules", "schedule-paused")


@routes.post(f"{PREFIX}/schedules/{{name}}/resume")
@action("schedule.resume")
async def resume_schedule(request: web.Request) -> web.StreamResponse:
    await schedules.set_paused(request, False)
    return done(f"{PREFIX}/schedules", "schedule-resumed")


@routes.post(f"{PREFIX}/schedules/{{name}}/run")
@action("schedule.run")
async def run_schedule(request: web.Request) -> web.StreamResponse:
    await schedules.run_now(request)
    return done(f"{PREFIX}/schedules", "ran")
