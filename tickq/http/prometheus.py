"""Prometheus scrapes: `GET /metrics` (public, for the scraper inside the cluster) and
`GET /api/v1/queue/metrics/prometheus` (seed-003 endpoint 17, admin or monitoring)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tickq.http.access import require
from tickq.http.keys import METRICS

routes = web.RouteTableDef()


async def _scrape(request: web.Request) -> web.Response:
    body = await request.app[METRICS].generate()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The text exposition format; public (listed in `access.PUBLIC_PATHS`)."""
    return await _scrape(request)


@routes.get("/api/v1/queue/metrics/prometheus")
@require("admin", "monitoring")
async def metrics_prometheus(request: web.Request) -> web.StreamResponse:
    """The same exposition, behind a token with the admin or monitoring role."""
    return await _scrape(request)
