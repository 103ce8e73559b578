"""Running the service: the HTTP API and the engine in one process until SIGTERM or SIGINT.

Shutdown order: stop accepting connections, let in-flight requests finish (briefly), then stop the
engine, which lets running jobs finish for `shutdown_grace_s` and gives the rest back to waiting
without spending an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from tickq.engine.engine import Engine
from tickq.errors import ListenError
from tickq.http.app import make_app
from tickq.settings import Settings

log = logging.getLogger(__name__)

#: how long in-flight HTTP requests get to finish once a shutdown begins
HTTP_DRAIN_S = 5.0

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JsonAccessLogger(AbstractAccessLogger):
    """One structured line per request, carrying its request id (aiohttp's default is an
    Apache-style string written after the request's own context is gone)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(f"{request.method} {request.path} {response.status}", extra={
            "event": "http_request", "method": request.method, "path": request.path,
            "status": response.status, "duration_ms": round(time * 1000, 3),
            "request_id": response.headers.get("X-Request-ID"), "remote": request.remote})


async def serve(settings: Settings, engine: Engine,
                on_listening: Callable[[], None] | None = None) -> None:
    """Serve until a stop signal arrives, then shut down gracefully. `on_listening` runs once
    the port is open (development prints its admin token there, once it can be used).

    Raises `StoreLockedError` when another process owns the journal and `ListenError` when the
    address cannot be bound; in both cases nothing is left running."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("shutdown already in progress", extra={"event": "signal_ignored",
                                                              "signal": sig.name})
            return
        log.info("shutting down", extra={"event": "shutdown", "signal": sig.name,
                                         "grace_s": settings.shutdown_grace_s})
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await run_until(settings, engine, stop, on_listening)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def run_until(settings: Settings, engine: Engine, stop: asyncio.Event,
                    on_listening: Callable[[], None] | None = None) -> None:
    """Serve until `stop` is set. The engine starts before the port opens (so a second process
    on the same journal fails before it takes a port) and stops after it closes."""
    runner = web.AppRunner(make_app(settings, engine),
                           shutdown_timeout=min(HTTP_DRAIN_S, settings.shutdown_grace_s),
                           access_log_class=JsonAccessLogger)
    try:
        await runner.setup()
        if stop.is_set():
            return
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise ListenError(f"cannot listen on {settings.host}:{settings.port}: "
                              f"{exc.strerror or exc}") from None
        log.info(f"tickq listening on {site.name} (database {settings.database_url_redacted}, "
                 f"{settings.env})",
                 extra={"event": "listening", "url": site.name, "env": settings.env,
                        "database": settings.database_url_redacted, "pid": os.getpid()})
        if on_listening is not None:
            on_listening()
        await stop.wait()
    finally:
        await runner.cleanup()
    log.info("stopped", extra={"event": "stopped"})
