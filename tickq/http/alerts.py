"""Alerts under /api/v1/queue/alerts (spec seed-003 "Alert Management Endpoints").

    GET  /alerts                    recent alerts, newest first (admin, monitoring)       200
    POST /alerts/{id}/acknowledge   mark one acknowledged, by whom and when (admin)         200
    POST /alerts/test               raise a test alert through the channels (admin)         200

Alerts describe the whole service (every tenant's queues), so they are for operators: admins
and the read-only monitoring role list them, and only admins act on them. The spec let any
authenticated caller list and acknowledge; a tenant's user has no business with another
tenant's backlog. Acknowledging and testing are audited like every operator action.

A test alert is logged and stored like any other (type `test`, which never starts a cooldown)
and delivered on every configured channel, SMS included whatever its severity: a test exists to
show that each channel works. The answer reports each channel: `logged`, `stored`, `queued`
(with the delivery job's id), `sent` or `failed` (when `waitS` let it finish), `skipped`, or
`not_configured` with the settings it lacks.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tickq.clock import iso
from tickq.engine.monitor import AlertType, Breach, Severity
from tickq.engine.states import JobState
from tickq.errors import JobNotFoundError, JobTimeoutError, NotFoundError
from tickq.http.access import principal, require
from tickq.http.audit import audited, note
from tickq.http.body import parse, read_json
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schemas import query_values
from tickq.monitoring import CHANNELS, ChannelResult, MonitorService, Outcome
from tickq.storage.base import AlertRecord

PREFIX = "/api/v1/queue/alerts"
routes = web.RouteTableDef()

MONITOR = web.AppKey("tickq.monitor", MonitorService)

DEFAULT_LIMIT, MAX_LIMIT = 50, 100
#: the spec lists the last 24 hours; alerts are kept 7 days
DEFAULT_HOURS, MAX_HOURS = 24, 7 * 24
MAX_WAIT_S = 30.0
#: outcomes that mean a channel did its part
_DONE = frozenset({Outcome.LOGGED, Outcome.STORED, Outcome.QUEUED, Outcome.SENT})

SeverityName = Literal["critical", "warning", "info"]


class AlertListQuery(BaseModel):
    """GET /api/v1/queue/alerts query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: SeverityName | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    #: how far back to look, in hours
    hours: float = Field(default=DEFAULT_HOURS, gt=0, le=MAX_HOURS, allow_inf_nan=False)
    queue: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    #: only acknowledged (true) or only pending (false) alerts
    acknowledged: bool | None = None


class AlertTest(BaseModel):
    """POST /api/v1/queue/alerts/test (the body is optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: SeverityName = "info"
    #: one channel, or every channel ("all"); log and stored always take the alert
    channel: Literal["all", "log", "stored", "webhook", "email", "sms"] = "all"
    #: how long to wait for the delivery jobs to finish before answering (0: answer at once)
    waitS: float = Field(default=0.0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False)


def _number(value: float | None) -> float | int | None:
    if value is not None and value.is_integer():
        return int(value)
    return value


def alert_view(alert: AlertRecord) -> dict[str, Any]:
    """An alert in the spec's field names."""
    return {"id": alert.id, "severity": alert.severity, "alert_type": alert.alert_type,
            "message": alert.message, "queue_name": alert.queue_name,
            "metric_value": _number(alert.metric_value),
            "threshold_value": _number(alert.threshold_value),
            "acknowledged": alert.acknowledged, "acknowledged_by": alert.acknowledged_by,
            "acknowledged_at": iso(alert.acknowledged_at), "created_at": iso(alert.created_at),
            "channels": dict(alert.channels)}


def _alert_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise NotFoundError(f"alert {raw[:40]!r} not found (alert ids are whole numbers)",
                            code="alert_not_found")
    return int(raw)


async def acknowledge_alert(request: web.Request) -> tuple[AlertRecord, bool]:
    """Acknowledge the alert the path names as the caller, noted for the audit trail (the
    API's route and the dashboard's button): the alert after it, and whether it had been
    acknowledged before. `NotFoundError` for an id that is not a whole number or names no
    alert."""
    engine, raw_id = request.app[ENGINE], request.match_info["id"]
    note(request, raw_id[:40])
    alert_id = _alert_id(raw_id)
    before = await engine.store.alert_get(alert_id)
    if before is None:
        raise NotFoundError(f"alert {alert_id} not found", code="alert_not_found")
    alert = await engine.store.alert_acknowledge(alert_id, principal(request).user_id,
                                                 engine.clock.now())
    if alert is None:  # removed by retention in between
        raise NotFoundError(f"alert {alert_id} not found", code="alert_not_found")
    note(request, str(alert.id), already=before.acknowledged)
    return alert, before.acknowledged


@routes.get(PREFIX)
@require("admin", "monitoring")
async def list_alerts(request: web.Request) -> web.Response:
    """Alerts of the last `hours` (default 24), newest first."""
    q = parse(AlertListQuery, query_values(request.query), what="the query string",
              strict=False)
    engine = request.app[ENGINE]
    since = engine.clock.now() - q.hours * 3600
    alerts = await engine.store.alert_list(q.severity, q.limit, since=since, queue=q.queue,
                                           acknowledged=q.acknowledged)
    return json_response({"alerts": [alert_view(a) for a in alerts], "count": len(alerts)})


@routes.post(f"{PREFIX}/{{id}}/acknowledge")
@audited("alert.acknowledge")
@require("admin")
async def acknowledge(request: web.Request) -> web.Response:
    """Acknowledge one alert. Acknowledging it again answers 200 with the first
    acknowledgement (`alreadyAcknowledged: true`)."""
    alert, again = await acknowledge_alert(request)
    return json_response({"alertId": str(alert.id), "status": "acknowledged",
                          "acknowledgedBy": alert.acknowledged_by,
                          "acknowledgedAt": iso(alert.acknowledged_at),
                          "alreadyAcknowledged": again, "alert": alert_view(alert)})


@routes.post(f"{PREFIX}/test")
@audited("alert.test")
@require("admin")
async def test_alert(request: web.Request) -> web.Response:
    caller = principal(request)
    raw = await read_json(request, optional=True)
    body = parse(AlertTest, {} if raw is None else raw)
    monitor = request.app[MONITOR]
    only = None if body.channel == "all" else body.channel
    breach = Breach(queue=None, alert_type=AlertType.TEST, severity=Severity(body.severity),
                    value=None, threshold=None,
                    message=f"TEST: alert channels check requested by user {caller.user_id} "
                            f"(severity {body.severity})")
    raised = await monitor.raise_alert(breach, test=True, only=only)
    results = dict(raised.channels)
    if body.waitS > 0:
        results = await _wait_for(request, results, body.waitS)
    wanted = [c for c in CHANNELS if only is None or c == only or c in ("log", "stored")]
    problems = [c for c in wanted if results[c].status not in _DONE]
    note(request, str(raised.alert.id), severity=body.severity, channel=body.channel,
         outcomes={c: results[c].status.value for c in CHANNELS})
    if problems:
        why = "; ".join(f"{c}: {results[c].status.value}"
                        + (f" ({results[c].reason})" if results[c].reason else "")
                        for c in problems)
        message = f"Test alert raised, but not every channel took it: {why}"
    else:
        message = "Test alert sent successfully"
    return json_response({"status": "incomplete" if problems else "sent",
                          "alertId": str(raised.alert.id), "severity": body.severity,
                          "channel": body.channel, "message": message,
                          "channels": {c: _result_view(results[c]) for c in CHANNELS}})


async def _wait_for(request: web.Request, results: dict[str, ChannelResult],
                    wait_s: float) -> dict[str, ChannelResult]:
    """Wait (up to `wait_s` in all) for the queued deliveries to end; each that ended is
    reported sent or failed, the rest stay queued."""
    engine = request.app[ENGINE]
    deadline = time.monotonic() + wait_s
    out = dict(results)
    for channel, result in results.items():
        if result.status is not Outcome.QUEUED or result.job_id is None:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            job = await engine.wait(result.job_id, timeout=left)
        except (JobTimeoutError, JobNotFoundError):
            continue
        if job.state is JobState.COMPLETED:
            out[channel] = ChannelResult(Outcome.SENT, job_id=job.id)
        else:
            errors = job.errors
            out[channel] = ChannelResult(Outcome.FAILED, job_id=job.id,
                                         reason=errors[-1].message if errors else job.state.value)
    return out


def _result_view(result: ChannelResult) -> dict[str, Any]:
    view: dict[str, Any] = {"status": result.status.value}
    if result.job_id is not None:
        view["jobId"] = result.job_id
    if result.reason is not None:
        view["reason"] = result.reason
    return view


__all__ = ["MONITOR", "AlertListQuery", "AlertTest", "acknowledge_alert", "alert_view", "routes"]
