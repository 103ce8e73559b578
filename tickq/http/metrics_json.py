"""Metrics as JSON, for dashboards that do not speak Prometheus.

    GET /metrics/json                     every metric of the registry           (seed-001)
    GET /metrics/queue-stats              per queue: counts, oldest job, throughput (seed-001)
    GET /metrics/system                   this process: memory, CPU, uptime      (seed-001)
    GET /api/v1/queue/metrics/summary     queue averages, alerts (last hour)     (seed-003 #18)
    GET /api/v1/queue/metrics/throughput  completed jobs per queue and minute    (seed-003 #19)
    GET /api/v1/queue/metrics/failures    failure trends, most frequent failures (seed-003 #20)

All need a token with the admin or monitoring role, the root ones included: unlike the
Prometheus scrape they are not probes, and they say more than a scraper needs (error codes,
alert counts). The seed-003 routes keep the spec's field names (`queue_name`, `avg_waiting`,
`topFailures`, ...); the root ones use the API's camelCase. Times are ISO-8601 UTC on the
engine's clock.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from tickq.clock import iso
from tickq.http.access import require
from tickq.http.body import parse
from tickq.http.keys import ENGINE, METRICS
from tickq.http.responses import json_response
from tickq.http.schemas import query_values
from tickq.metrics import Metrics
from tickq.metrics_analysis import failures, summary
from tickq.metrics_process import memory_bytes
from tickq.metrics_recent import KEEP_MINUTES

PREFIX = "/api/v1/queue/metrics"
routes = web.RouteTableDef()

#: the window queue-stats averages throughput over (whole minutes before the current one)
STATS_THROUGHPUT_MINUTES = 5


class ThroughputQuery(BaseModel):
    """GET /api/v1/queue/metrics/throughput query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the last N minutes, the current one included
    minutes: int = Field(default=KEEP_MINUTES, ge=1, le=KEEP_MINUTES)


class FailuresQuery(BaseModel):
    """GET /api/v1/queue/metrics/failures query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the last N hours
    hours: int = Field(default=24, ge=1, le=24)
    #: how many groups of each list to show, most frequent first
    limit: int = Field(default=20, ge=1, le=100)


def _now(request: web.Request) -> float:
    return request.app[ENGINE].clock.now()


# --- root (seed-001) ------------------------------------------------------------------------


def families_json(metrics: Metrics) -> list[dict[str, Any]]:
    """The registry's families as prom-client's JSON shows them: name, help, type and one
    value per sample with its labels (and the sample's own name where it differs, such as a
    histogram's `_bucket`)."""
    out = []
    for family in metrics.registry.collect():
        values = []
        for s in family.samples:
            value: dict[str, Any] = {"labels": dict(s.labels), "value": s.value}
            if s.name != family.name:
                value["metricName"] = s.name
            values.append(value)
        out.append({"name": family.name, "help": family.documentation, "type": family.type,
                    "values": values})
    return out


@routes.get("/metrics/json")
@require("admin", "monitoring")
async def metrics_json(request: web.Request) -> web.StreamResponse:
    metrics = request.app[METRICS]
    await metrics.refresh()
    return json_response({"metrics": families_json(metrics), "timestamp": iso(_now(request))})


@routes.get("/metrics/queue-stats")
@require("admin", "monitoring")
async def queue_stats(request: web.Request) -> web.StreamResponse:
    """Each queue's counts now, its oldest due job's age, and what it finished since start."""
    metrics = request.app[METRICS]
    await metrics.refresh()
    now = _now(request)
    queues = []
    for name, c in metrics.depths.items():
        totals = metrics.recent.totals.get(name)
        queues.append({
            "name": name, "waiting": c.waiting, "delayed": c.delayed, "active": c.active,
            "completed": c.completed, "failed": c.failed, "cancelled": c.cancelled,
            "paused": c.paused, "oldestJobAgeSeconds": round(metrics.oldest_age(name, now), 3),
            "sinceStart": {
                "completed": totals.completed if totals else 0,
                "failed": totals.failed if totals else 0,
                "retried": totals.retried if totals else 0,
                "avgProcessingSeconds": (round(totals.processing_s / totals.timed, 6)
                                         if totals and totals.timed else None),
            },
            "completedPerMinute": round(metrics.recent.per_minute(
                name, now, STATS_THROUGHPUT_MINUTES), 3),
        })
    return json_response({"queues": queues, "throughputWindowMinutes": STATS_THROUGHPUT_MINUTES,
                          "timestamp": iso(now)})


@routes.get("/metrics/system")
@require("admin", "monitoring")
async def system(request: web.Request) -> web.StreamResponse:
    metrics = request.app[METRICS]
    cpu = metrics.cpu.read()
    return json_response({
        "uptimeSeconds": round(max(0.0, time.time() - metrics.started), 3),
        "memory": memory_bytes(),
        "cpu": {"percent": round(cpu.percent, 2), "userSeconds": round(cpu.user_s, 3),
                "systemSeconds": round(cpu.system_s, 3), "cores": os.cpu_count()},
        "process": {"pid": os.getpid(), "python": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "platform": sys.platform},
        "timestamp": iso(_now(request)),
    })


# --- /api/v1/queue/metrics (seed-003) -------------------------------------------------------


@routes.get(f"{PREFIX}/summary")
@require("admin", "monitoring")
async def metrics_summary(request: web.Request) -> web.StreamResponse:
    """Per queue over the last hour of monitor snapshots: average and largest waiting count,
    average active and failed counts; alerts raised in that hour by severity."""
    now = _now(request)
    found = await summary(request.app[ENGINE], now)
    return json_response({
        "queues": [{"queue_name": q.queue, "avg_waiting": q.average(q.waiting_sum),
                    "max_waiting": q.max_waiting, "avg_active": q.average(q.active_sum),
                    "avg_failed": q.average(q.failed_sum), "samples": q.samples}
                   for q in found.queues],
        "alerts": [{"severity": severity, "count": count} for severity, count in found.alerts],
        "windowMinutes": 60, "truncated": found.truncated, "timestamp": iso(now)})


@routes.get(f"{PREFIX}/throughput")
@require("admin", "monitoring")
async def metrics_throughput(request: web.Request) -> web.StreamResponse:
    """Completed (and failed) jobs per queue and minute, newest minute first; counted from the
    engine's events by this process since it started, zeros included."""
    q = parse(ThroughputQuery, query_values(request.query), what="the query string",
              strict=False)
    now = _now(request)
    metrics = request.app[METRICS]
    names = [cfg.name for cfg in request.app[ENGINE].registry.queues]
    rows = metrics.recent.window(now, q.minutes, names)
    return json_response({
        "throughput": [{"queue_name": r.queue, "minute": iso(r.minute),
                        "jobs_per_minute": r.completed, "failed": r.failed,
                        "retried": r.retried} for r in rows],
        "minutes": q.minutes, "timestamp": iso(now)})


@routes.get(f"{PREFIX}/failures")
@require("admin", "monitoring")
async def metrics_failures(request: web.Request) -> web.StreamResponse:
    """Failure trends per queue and hour and the most frequent failures of the last `hours`,
    by job type (`topFailures`) and by job type and error code (`byError`)."""
    q = parse(FailuresQuery, query_values(request.query), what="the query string",
              strict=False)
    now = _now(request)
    found = await failures(request.app[ENGINE], now, q.hours)
    return json_response({
        "trends": [{"queue_name": t.queue, "hour": iso(t.hour), "avg_failures": t.avg_failures,
                    "failures": t.failures, "samples": t.samples} for t in found.trends],
        "topFailures": [{"queue_name": g.queue, "job_type": g.job_type, "count": g.count,
                         "last_failure": iso(g.last_failure)} for g in found.by_type[:q.limit]],
        "byError": [{"queue_name": g.queue, "job_type": g.job_type, "error_code": g.error_code,
                     "count": g.count, "last_failure": iso(g.last_failure)}
                    for g in found.by_error[:q.limit]],
        "hours": q.hours, "scanned": found.scanned, "truncated": found.truncated,
        "timestamp": iso(now)})
