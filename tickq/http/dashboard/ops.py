"""Dashboard pages for operators: the dead-letter queue, provider limits and breakers, alerts
and cron schedules. Each reads what its API route reads (`jobs.page_of` over failed jobs, the
limiter's and breakers' status, `Store.alert_list`, `Store.schedule_list`) under the same role
rules (`guard.PAGE_ROLES`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tickq.engine.states import JobState
from tickq.http.access import require, tenant_filter
from tickq.http.dashboard.guard import PAGE_ROLES, PREFIX, signed_in
from tickq.http.dashboard.render import render
from tickq.http.jobs import page_of
from tickq.http.keys import ENGINE, PRINCIPAL
from tickq.http.limits import finite
from tickq.http.schedules import ticker_of
from tickq.redaction import redact_text
from tickq.scheduling.template import JobTemplate
from tickq.storage.base import JobQuery

routes = web.RouteTableDef()

#: failed jobs per DLQ page, and alerts on the alerts page
PAGE_SIZE = 50
#: the alerts page covers this many hours, like the API's default
ALERT_HOURS = 24


@routes.get(f"{PREFIX}/dlq")
@signed_in
async def dlq_page(request: web.Request) -> web.StreamResponse:
    """Failed jobs the caller may see, newest first, with their latest error."""
    engine, caller = request.app[ENGINE], request[PRINCIPAL]
    after = request.query.get("after") or None
    query = JobQuery(states=frozenset({JobState.FAILED}),
                     tenant_id=tenant_filter(caller, None),
                     after=after[:64] if after else None, limit=PAGE_SIZE)
    page, cursor = await page_of(engine, caller, query)
    rows = [{"job": j, "reason": redact_text(j.errors[-1].message) if j.errors else ""}
            for j in page]
    return render(request, "dlq.html", {"rows": rows, "next_cursor": cursor})


def limit_rows(request: web.Request) -> list[dict[str, Any]]:
    """Every provider bucket with its limiter and breaker state, by bucket name."""
    engine = request.app[ENGINE]
    gate, now = engine.providers, engine.clock.now()
    names = sorted(set(gate.limiter.buckets) | set(gate.breakers.status(now)))
    rows = []
    for name in names:
        s = gate.limiter.status(name, now)
        b = gate.breakers.get(name).status(now)
        rows.append({"name": name, "tokens": finite(s["tokens"]),
                     "in_flight": s["in_flight"], "max_concurrent": finite(s["max_concurrent"]),
                     "cooldown_s": finite(s["cooldown_left_s"]), "stopped": s["stopped"],
                     "unlimited": s["unlimited"], "breaker": b["state"],
                     "failures": b["consecutive_failures"],
                     "open_left_s": finite(b["open_left_s"])})
    return rows


@routes.get(f"{PREFIX}/limits")
@signed_in
async def limits_page(request: web.Request) -> web.StreamResponse:
    return render(request, "limits.html", {"rows": limit_rows(request)})


@routes.get(f"{PREFIX}/alerts")
@signed_in
@require(*PAGE_ROLES["alerts"])
async def alerts_page(request: web.Request) -> web.StreamResponse:
    engine = request.app[ENGINE]
    since = engine.clock.now() - ALERT_HOURS * 3600
    found = await engine.store.alert_list(None, PAGE_SIZE, since=since)
    return render(request, "alerts.html", {"alerts": found, "hours": ALERT_HOURS})


@routes.get(f"{PREFIX}/schedules")
@signed_in
@require(*PAGE_ROLES["schedules"])
async def schedules_page(request: web.Request) -> web.StreamResponse:
    engine, ticker = request.app[ENGINE], ticker_of(request)
    rows = [{"s": s, "job": JobTemplate.from_json(s.template_json),
             "next": ticker.next_run_at(s)} for s in await engine.store.schedule_list()]
    return render(request, "schedules.html", {"rows": rows})
