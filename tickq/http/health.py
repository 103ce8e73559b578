"""Kubernetes probes: liveness, readiness and startup."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from tickq.http.keys import ENGINE
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
    engine = request.app[ENGINE]
    checks: dict[str, dict[str, Any]] = {
        "engine": _check(engine.running, "the engine is not running"),
        "store": await _ping(engine.store),
    }
    ok = all(c["ok"] for c in checks.values())
    return json_response({"status": "ready" if ok else "not_ready", "checks": checks},
                         status=200 if ok else 503)


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
