"""What the periodic work has done, for operators.

    GET /api/v1/queue/maintenance?task=&limit=   (admin)                                 200

Answers whether this node runs the scheduler and leads, each task with its interval and next run,
and the latest runs, newest first, each with what it removed (`counts`). Runs are kept in memory
per process (see `tickq.scheduling.runs`); every run is also a log line.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tickq.clock import iso
from tickq.http.access import require
from tickq.http.body import parse
from tickq.http.keys import ENGINE
from tickq.http.responses import json_response
from tickq.http.schedules import SCHEDULER
from tickq.http.schemas import query_values
from tickq.scheduling.runs import MAX_RUNS

PREFIX = "/api/v1/queue"
routes = web.RouteTableDef()


class MaintenanceQuery(BaseModel):
    """GET /api/v1/queue/maintenance query string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: only runs of this task
    task: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    limit: int = Field(default=50, ge=1, le=MAX_RUNS)


@routes.get(f"{PREFIX}/maintenance")
@require("admin")
async def maintenance(request: web.Request) -> web.Response:
    q = parse(MaintenanceQuery, query_values(request.query), what="the query string",
              strict=False)
    scheduler = request.app.get(SCHEDULER)
    if scheduler is None or not scheduler.running:
        engine = request.app[ENGINE]
        return json_response({
            "scheduler": {"running": False, "leader": None},
            "note": "no scheduler runs in this process: the engine removes finished jobs "
                    "past retention on its own timer"
                    if engine.prunes_on_timer else "no scheduler runs in this process",
            "tasks": [], "runs": []})
    tasks: list[dict[str, Any]] = []
    for task in scheduler.tasks:
        last = scheduler.runs.last(task.name)
        tasks.append({"name": task.name, "intervalS": task.interval_s,
                      "nextRunAt": iso(scheduler.next_run_at(task.name)),
                      "lastRun": None if last is None else last.view()})
    return json_response({
        "scheduler": {"running": True, "leader": await scheduler.leader()},
        "tasks": tasks,
        "runs": [run.view() for run in scheduler.runs.latest(q.limit, q.task)]})
