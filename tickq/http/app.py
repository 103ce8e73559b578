"""`make_app(settings, engine)`: the aiohttp application.

Routes live in one module per area, each with its own `RouteTableDef`; adding an area is adding
its table to `ROUTE_TABLES` (and, for a route that needs no token, its path to
`access.PUBLIC_PATHS`). The engine's lifecycle is tied to the application's through
`cleanup_ctx`: it starts before the server accepts connections and stops (gracefully, within
`settings.shutdown_grace_s`) after the server has stopped taking requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tickq.engine.engine import Engine
from tickq.http import (
    audit,
    dlq,
    health,
    jobs,
    limits,
    openapi,
    prometheus,
    queues,
    ratelimit,
    reports,
    webhooks_in,
)
from tickq.http.access import authenticate
from tickq.http.auth import TokenVerifier, verifier_from_settings
from tickq.http.keys import ENGINE, INTEGRATIONS, METRICS, SETTINGS, VERIFIER
from tickq.http.middleware import json_errors, request_context, secure_headers
from tickq.metrics import Metrics
from tickq.processors import Integrations, build_integrations
from tickq.settings import Settings

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (health.routes, jobs.routes, queues.routes,
                                               dlq.routes, limits.routes, openapi.routes,
                                               audit.routes, prometheus.routes,
                                               reports.routes, webhooks_in.routes)


def make_app(settings: Settings, engine: Engine, *,
             verifier: TokenVerifier | None = None,
             integrations: Integrations | None = None) -> web.Application:
    """The application. Tokens are verified as `settings` say unless a `verifier` is given;
    outside development, settings without a key raise `ConfigError`. The integrations
    (Stripe, Solana, email, ...) are made from `settings` unless given, and get a processor
    installed for every job type the engine has none for."""
    app = web.Application(middlewares=[request_context, audit.audit_trail(settings), json_errors,
                                       authenticate, ratelimit.api_rate_limit(settings)],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[VERIFIER] = verifier or verifier_from_settings(settings)
    app[METRICS] = Metrics(engine)
    app[METRICS].subscribe()
    app[INTEGRATIONS] = integrations or build_integrations(settings, engine)
    app[INTEGRATIONS].install()
    for table in ROUTE_TABLES:
        app.add_routes(table)
    app.on_response_prepare.append(secure_headers)
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    integrations = app[INTEGRATIONS]
    await integrations.start()
    try:
        await engine.start()  # idempotent: an engine started by the embedding code stays so
        yield
        await engine.stop(app[SETTINGS].shutdown_grace_s)
    finally:
        await integrations.close()
        app[METRICS].close()
