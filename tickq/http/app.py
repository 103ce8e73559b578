"""`make_app(settings, engine)`: the aiohttp application.

Routes live in one module per area, each with its own `RouteTableDef`; adding an area is adding
its table to `ROUTE_TABLES`. The engine's lifecycle is tied to the application's through
`cleanup_ctx`: it starts before the server accepts connections and stops (gracefully, within
`settings.shutdown_grace_s`) after the server has stopped taking requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.http import health
from tickq.http.keys import ENGINE, SETTINGS
from tickq.http.middleware import json_errors
from tickq.settings import Settings

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (health.routes,)

#: request bodies above this are refused before a handler reads them
MAX_BODY_BYTES = 2 * 1024 * 1024


def make_app(settings: Settings, engine: Engine) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    for table in ROUTE_TABLES:
        app.add_routes(table)
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    await engine.start()  # idempotent: an engine started by the embedding code stays as it is
    yield
    await engine.stop(app[SETTINGS].shutdown_grace_s)
