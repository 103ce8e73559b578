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
    alerts,
    audit,
    cache,
    dashboard,
    dlq,
    health,
    jobs,
    limits,
    maintenance,
    metrics_json,
    openapi,
    prometheus,
    queues,
    ratelimit,
    reports,
    schedules,
    webhooks_in,
)
from tickq.http.access import authenticate
from tickq.http.auth import TokenVerifier, verifier_from_settings
from tickq.http.keys import ENGINE, INTEGRATIONS, METRICS, SETTINGS, VERIFIER
from tickq.http.middleware import json_errors, request_context, secure_headers
from tickq.metrics import Metrics
from tickq.metrics_wallet import wallet_source
from tickq.monitoring import MonitorService
from tickq.processors import Integrations, build_integrations
from tickq.scheduling import Scheduler, SchedulerConfig, store_leader_check
from tickq.settings import Settings

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (health.routes, jobs.routes, queues.routes,
                                               dlq.routes, limits.routes, openapi.routes,
                                               audit.routes, prometheus.routes,
                                               reports.routes, webhooks_in.routes,
                                               alerts.routes, metrics_json.routes,
                                               schedules.routes, maintenance.routes,
                                               cache.routes)


def make_app(settings: Settings, engine: Engine, *,
             verifier: TokenVerifier | None = None,
             integrations: Integrations | None = None,
             scheduler: Scheduler | None = None) -> web.Application:
    """The application. Tokens are verified as `settings` say unless a `verifier` is given;
    outside development, settings without a key raise `ConfigError`. The integrations
    (Stripe, Solana, email, ...) are made from `settings` unless given, and get a processor
    installed for every job type the engine has none for. Maintenance and cron schedules run
    on a `Scheduler` made from `settings` (unless one is given, or TICKQ_SCHEDULER_ENABLED is
    off), started after the engine and stopped before it."""
    app = web.Application(middlewares=[request_context,
                                       audit.audit_trail(settings, engine.store), json_errors,
                                       authenticate, ratelimit.api_rate_limit(settings)],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[ENGINE] = engine
    app[VERIFIER] = verifier or verifier_from_settings(settings)
    app[METRICS] = Metrics(engine)
    app[METRICS].subscribe()
    app[INTEGRATIONS] = integrations or build_integrations(settings, engine)
    app[INTEGRATIONS].install()
    app[METRICS].watch_wallet(wallet_source(app[INTEGRATIONS]))
    leads = store_leader_check(engine.store)  # PostgreSQL: one node of those sharing it
    app[alerts.MONITOR] = MonitorService.from_settings(settings, engine, is_leader=leads,
                                                       count=app[METRICS].alert_sent)
    if scheduler is None and settings.scheduler_enabled:
        scheduler = Scheduler(engine, SchedulerConfig.from_settings(settings), is_leader=leads)
    if scheduler is not None:
        app[schedules.SCHEDULER] = scheduler
    for table in ROUTE_TABLES:
        app.add_routes(table)
    dashboard.setup(app)  # the operators' pages at /dashboard, signed in by cookie
    app.on_response_prepare.append(secure_headers)
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    integrations = app[INTEGRATIONS]
    await integrations.start()
    try:
        await engine.start()  # idempotent: an engine started by the embedding code stays so
        app[METRICS].attach_journal()  # the store is open now
        await app[alerts.MONITOR].start()
        scheduler = app.get(schedules.SCHEDULER)
        if scheduler is not None:
            await scheduler.start()
        yield
        if scheduler is not None:
            await scheduler.stop()  # runs in progress finish while the store is open
        await app[alerts.MONITOR].stop()  # the checks stop before the store closes under them
        await engine.stop(app[SETTINGS].shutdown_grace_s)
    finally:
        await app[METRICS].aclose()  # a wallet read in flight uses an integration's client
        await integrations.close()
