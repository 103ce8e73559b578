"""Property-based fuzzing of every documented operation against a live server on 127.0.0.1.

Schemathesis generates requests from the app's own OpenAPI document (schema-valid bodies,
query strings and path parameters) and sends them with an admin token, so that every handler
runs past its role check. The checks: no 5xx, and every answer's status code, content type and
body are ones the document promises. The server runs on its own event loop in a thread, since
schemathesis' client is synchronous.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from httpkit import SECRET, token
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tickq.engine.engine import Engine
from tickq.http import make_app
from tickq.http.openapi import build_document
from tickq.settings import load_settings
from tickq.storage.memory import MemoryStore

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


class LiveServer:
    """The app over a memory engine, served from a thread until `stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test server did not start")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        # With a webhook secret, unsigned deliveries are the caller's error (400), not a 503.
        settings_ = load_settings({"TICKQ_DATABASE_URL": "memory://", "JWT_SECRET": SECRET,
                                   "STRIPE_WEBHOOK_SECRET": "whsec_schemathesis"})
        engine = Engine(MemoryStore(), shutdown_grace_s=0.2)
        engine.register("send-email", lambda job: {"sent": True})
        runner = web.AppRunner(make_app(settings_, engine), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._stopped = asyncio.Event()
        self._ready.set()
        await self._stopped.wait()
        await runner.cleanup()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = LiveServer()
    url = server.start()
    yield url
    server.stop()


def _schema() -> Any:
    """The document the app serves, built from an app that is never started."""
    settings_ = load_settings({"TICKQ_DATABASE_URL": "memory://", "JWT_SECRET": SECRET})
    app = make_app(settings_, Engine(MemoryStore()))
    return schemathesis.openapi.from_dict(build_document(app))


schema = _schema()
HEADERS = {"Authorization": f"Bearer {token('admin', ttl_s=3600)}"}


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=HEADERS, checks=CHECKS)
