"""Shared pieces of the HTTP tests: an app on 127.0.0.1 over a memory engine, and tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tickq.clock import Clock
from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.errors import PermanentError
from tickq.http import make_app
from tickq.http.auth import mint_token
from tickq.settings import load_settings
from tickq.storage.memory import MemoryStore

SECRET = "tickq-test-secret-that-is-long-enough-0123456789"
JOBS = "/api/v1/queue/jobs"

Client = TestClient[web.Request, web.Application]


def token(role: str = "admin", tenant: str = "t1", user: str = "u1",
          venues: Iterable[str] = (), *, ttl_s: float = 600, secret: str = SECRET,
          issuer: str | None = None, audience: str | None = None) -> str:
    if role == "venue_admin" and not venues:
        venues = ("v1",)
    return mint_token(secret, role=role, tenant_id=tenant, user_id=user, venues=venues,
                      ttl_s=ttl_s, issuer=issuer, audience=audience)


def auth(role: str = "admin", tenant: str = "t1", user: str = "u1",
         venues: Iterable[str] = ()) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, tenant, user, venues)}"}


def email(to: str = "fan@example.com", template: str = "welcome") -> dict[str, Any]:
    return {"queue": "communication", "type": "send-email",
            "data": {"to": to, "template": template}}


def payment(venue: str = "v1", user: str = "u1", amount: int = 1000) -> dict[str, Any]:
    """A payment on the paused money queue: it stays waiting."""
    return {"queue": "money", "type": "payment-process",
            "data": {"userId": user, "venueId": venue, "eventId": "e1", "amount": amount,
                     "paymentMethod": "pm_card_visa"}}


class Api:
    """A running app: `client` talks to it, `engine` is behind it."""

    def __init__(self, client: Client, engine: Engine) -> None:
        self.client = client
        self.engine = engine

    async def enqueue(self, body: Mapping[str, Any], **who: Any) -> str:
        resp = await self.client.post(JOBS, json=body, headers=auth(**who))
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["jobId"])

    async def wait_state(self, job_id: str, state: str, timeout: float = 5.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.engine.get(job_id)
            if job is not None and job.state.value == state:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never became {state}: {job!r}")
            await asyncio.sleep(0.01)


async def _hang(job: Job) -> None:
    await asyncio.Event().wait()


def _refuse(job: Job) -> None:
    raise PermanentError("push provider refused the device token")


@asynccontextmanager
async def serve_api(env: Mapping[str, str] | None = None, *, rate_limit: bool = False,
                    clock: Clock | None = None) -> AsyncIterator[Api]:
    """The app with JWT_SECRET=SECRET (unless `env` says otherwise). Money and background are
    paused, so their jobs stay waiting; on communication, send-email completes, send-push fails
    permanently (to the dead-letter queue) and send-sms runs until it is cancelled. API rate
    limits are off unless `rate_limit` (or `env`) turns them on; `clock` drives the engine."""
    settings = load_settings({"TICKQ_DATABASE_URL": "memory://", "JWT_SECRET": SECRET,
                              "API_RATE_LIMIT_ENABLED": "true" if rate_limit else "false",
                              **(env or {})})
    engine = Engine(MemoryStore(), shutdown_grace_s=0.5, clock=clock)
    engine.register("send-email", lambda job: {"sent": True})
    engine.register("send-push", _refuse)
    engine.register("send-sms", _hang)
    app = make_app(settings, engine)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await engine.pause("money")
        await engine.pause("background")
        yield Api(client, engine)


def node_clients(url: str, data_dir: Path, nodes: int = 2) -> list[Client]:
    """Test clients of `nodes` services sharing the PostgreSQL database at `url`, as separate
    `tickq serve` processes would (one engine and store each); enter them to start them."""
    from tickq.storage.postgres import PostgresStore

    clients: list[Client] = []
    for n in range(nodes):
        settings = load_settings({"TICKQ_DATABASE_URL": url, "JWT_SECRET": SECRET,
                                  "TICKQ_DATA_DIR": str(data_dir / f"node{n}"),
                                  "API_RATE_LIMIT_ENABLED": "false",
                                  "TICKQ_SCHEDULER_ENABLED": "false"})
        engine = Engine(PostgresStore(url), shutdown_grace_s=0.5)
        clients.append(TestClient(TestServer(make_app(settings, engine), host="127.0.0.1")))
    return clients
