"""The application in-process: probes, and every error rendered as JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tickq.engine.engine import Engine
from tickq.errors import IllegalTransitionError, JobNotFoundError, ValidationError
from tickq.http import health, make_app
from tickq.settings import load_settings
from tickq.storage.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A memory store whose ping answers what the test says."""

    answer: bool | None = True  # None: never answers

    async def ping(self) -> bool:
        if self.answer is None:
            await asyncio.sleep(3600)
        return bool(self.answer) and await super().ping()


async def boom(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "invalid":
        raise ValidationError("priority must be 1..10", code="invalid_priority", field="priority")
    if kind == "missing":
        raise JobNotFoundError("job j1 not found", job_id="j1")
    if kind == "conflict":
        raise IllegalTransitionError("a job cannot go from completed to active")
    raise RuntimeError("secret internals")


Parts = tuple[TestClient[web.Request, web.Application], Engine, FlakyStore]


@pytest.fixture
async def app_parts() -> AsyncIterator[Parts]:
    store = FlakyStore()
    engine = Engine(store, shutdown_grace_s=1)
    app = make_app(load_settings({"TICKQ_DATABASE_URL": "memory://"}), engine)
    app.router.add_get("/health/boom/{kind}", boom)  # under /health/: needs no token
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, engine, store
    assert not engine.running  # the app's cleanup stopped the engine


async def test_probes_report_ready_when_the_engine_runs(app_parts: Parts) -> None:
    client, engine, _ = app_parts
    assert engine.running  # started by the app
    for path, body in (("/health/live", {"status": "ok"}),
                       ("/health/startup", {"status": "started"}),
                       ("/health/ready", {"status": "ready", "checks": {
                           "engine": {"ok": True}, "store": {"ok": True}}})):
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type == "application/json"
        got = await resp.json()
        integrations = got.pop("integrations", None)
        assert got == body
        if path == "/health/ready":
            # nothing is configured in the tests: each integration says so, naming what to set
            assert integrations and integrations["stripe"]["status"] == "not_configured"
            assert "STRIPE_SECRET_KEY" in integrations["stripe"]["message"]
            assert all(i["status"] in ("ready", "not_configured") for i in integrations.values())


async def test_ready_is_503_when_the_store_cannot_write(app_parts: Parts) -> None:
    client, _, store = app_parts
    store.answer = False
    resp = await client.get("/health/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["engine"] == {"ok": True}
    assert body["checks"]["store"]["ok"] is False
    assert (await client.get("/health/live")).status == 200


async def test_ready_does_not_hang_on_a_silent_store(app_parts: Parts,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client, _, store = app_parts
    monkeypatch.setattr(health, "PING_TIMEOUT_S", 0.05)
    store.answer = None
    resp = await client.get("/health/ready")
    assert resp.status == 503
    assert "no answer" in (await resp.json())["checks"]["store"]["message"]


async def test_probes_after_the_engine_stopped(app_parts: Parts) -> None:
    client, engine, _ = app_parts
    await engine.stop()
    ready = await client.get("/health/ready")
    assert ready.status == 503
    checks = (await ready.json())["checks"]
    assert checks["engine"]["ok"] is False and checks["store"]["ok"] is False
    assert (await client.get("/health/startup")).status == 503
    assert (await client.get("/health/live")).status == 200


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("invalid", 400, "invalid_priority"),
    ("missing", 404, "job_not_found"),
    ("conflict", 409, "illegal_transition"),
    ("crash", 500, "internal_error"),
])
async def test_errors_are_json(app_parts: Parts, kind: str, status: int, code: str) -> None:
    client, _, _ = app_parts
    resp = await client.get(f"/health/boom/{kind}")
    assert resp.status == status and resp.content_type == "application/json"
    body = await resp.json()
    assert body["code"] == code
    assert body["error"] == {400: "Bad Request", 404: "Not Found", 409: "Conflict",
                             500: "Internal Server Error"}[status]
    assert body["requestId"] == resp.headers["X-Request-ID"]
    assert "secret internals" not in body["message"]
    if kind == "invalid":
        assert body["details"] == [{"field": "priority", "message": "priority must be 1..10",
                                    "code": "invalid_priority"}]
    else:
        assert "details" not in body


async def test_unknown_routes_and_methods_are_json(app_parts: Parts) -> None:
    client, _, _ = app_parts
    resp = await client.get("/nope", headers={"X-Request-ID": "req-1"})
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found", "code": "not_found",
                                 "message": "no route for GET /nope", "requestId": "req-1"}
    resp = await client.post("/health/live")
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (await resp.json())["code"] == "method_not_allowed"
