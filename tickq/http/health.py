"""Kubernetes probes: liveness, readiness and startup, and the spec's health routes.

`/health/*` are the root probes. `/api/v1/queue/health` and `/api/v1/queue/health/ready` are the
spec's (seed-003 endpoints 24 and 25), kept for the load balancers written against it; both run
the same `readiness_checks` as `/health/ready`, so the two families can never disagree.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from tickq.clock import iso
from tickq.engine.engine import Engine
from tickq.http.keys import ENGINE, INTEGRATIONS
from tickq.http.responses import json_response
from tickq.storage.base import Store

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: a store that takes longer than this to answer a ping is not ready
PING_TIMEOUT_S = 2.0


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    """200 for as long as the process serves requests."""
    return json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """200 when the engine runs and its store answers; 503 otherwise. Lists every check."""
    checks = await readiness_checks(request.app[ENGINE])
    ok = all(c["ok"] for c in checks.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks,
                          "integrations": integration_status(request.app)},
                         status=200 if ok else 503)


def integration_status(app: web.Application) -> dict[str, Any]:
    """Each integration as ready, degraded (a provider's breaker is open) or not_configured.
    Informational: the service stays ready without them, and their jobs fail with the reason."""
    return {name: s.to_dict() for name, s in app[INTEGRATIONS].status().items()}


@routes.get("/api/v1/queue/health")
async def spec_health(request: web.Request) -> web.Response:
    """The spec's health check: each check as "healthy"/"unhealthy" under the spec's names
    ("service" is the engine, "database" the store); 503 when any is unhealthy."""
    engine = request.app[ENGINE]
    checks = await readiness_checks(engine)
    ok = all(c["ok"] for c in checks.values())
    named = {SPEC_CHECK_NAMES.get(k, k): "healthy" if c["ok"] else "unhealthy"
             for k, c in checks.items()}
    problems = {SPEC_CHECK_NAMES.get(k, k): c["message"] for k, c in checks.items()
                if not c["ok"]}
    body: dict[str, Any] = {"status": "healthy" if ok else "unhealthy", "checks": named,
                            "timestamp": iso(engine.clock.now())}
    if problems:
        body["problems"] = problems
    body["integrations"] = {name: s.status.value
                            for name, s in request.app[INTEGRATIONS].status().items()}
    return json_response(body, status=200 if ok else 503)


@routes.get("/api/v1/queue/health/ready")
async def spec_ready(request: web.Request) -> web.Response:
    """The spec's readiness check: the root readiness checks, in the spec's shorter shape."""
    engine = request.app[ENGINE]
    checks = await readiness_checks(engine)
    ok = all(c["ok"] for c in checks.values())
    return json_response({"status": "ready" if ok else "not_ready",
                          "timestamp": iso(engine.clock.now())}, status=200 if ok else 503)


#: root check name -> the spec's name for it
SPEC_CHECK_NAMES = {"engine": "service", "store": "database"}


async def readiness_checks(engine: Engine) -> dict[str, dict[str, Any]]:
    """Every readiness check by name, each `{"ok": bool}` plus a `message` when not ok."""
    return {
        "engine": _check(engine.running, "the engine is not running"),
        "store": await _ping(engine.store),
    }


@routes.get("/health/startup")
async def startup(request: web.Request) -> web.Response:
    """200 once the engine has started (recovered its journal and dispatches)."""
    if request.app[ENGINE].running:
        return json_response({"status": "started"})
    return json_response({"status": "not_running"}, status=503)


def _check(ok: bool, problem: str) -> dict[str, Any]:
    return {"ok": True} if ok else {"ok": False, "message": problem}


async def _ping(store: Store) -> dict[str, Any]:
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            ok = bool(await store.ping())
    except TimeoutError:
        return {"ok": False, "message": f"no answer within {PING_TIMEOUT_S:g}s"}
    except Exception as exc:
        log.warning("store ping failed", extra={"event": "ping_failed", "error": repr(exc)})
        return {"ok": False, "message": f"ping failed: {exc}"}
    return _check(ok, "the store cannot take writes")
