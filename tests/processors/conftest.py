"""Fixtures of the Stripe tests: localstripe, a Stripe-compatible server, on 127.0.0.1.

localstripe's aiohttp application is one module-level object that binds itself to the event
loop it first runs on, so it is started once per session on the session's loop, and every test
using it runs on that loop too (`pytest.mark.asyncio(loop_scope="session")` in its module).
Its data is cleared before each test with `DELETE /_config/data`.

Two things of localstripe are switched off, neither part of the API it serves: pickling its
whole store to /tmp/localstripe.pickle after every write (a file every localstripe on the
machine shares, and a cost that grows with the store), and webhook registrations left by an
earlier test.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web

with warnings.catch_warnings():
    # localstripe registers plain-function handlers, which aiohttp deprecates, at import.
    warnings.simplefilter("ignore", DeprecationWarning)
    import localstripe.resources
    import localstripe.server
    import localstripe.webhooks

from tickq.clock import SystemClock
from tickq.engine.ids import IdGenerator
from tickq.engine.job import Job
from tickq.engine.jobtypes import BUILTIN_TYPES
from tickq.engine.producer import JobSpec, build_job
from tickq.engine.registry import Registry
from tickq.processors.payments import StripeIntegration
from tickq.settings import Settings, load_settings

#: any key localstripe accepts (it wants the sk_ prefix and nothing else)
SECRET_KEY = "sk_test_tickq_0123456789"
SettingsFactory = Callable[..., Settings]
JobFactory = Callable[..., Job]


def _keep_in_memory() -> None:
    """localstripe's store stays in this process's memory only."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def localstripe_server() -> AsyncIterator[str]:
    """localstripe listening on 127.0.0.1 on a free port, for the whole session."""
    localstripe.resources.store.dump_to_disk = _keep_in_memory
    runner = web.AppRunner(localstripe.server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        # Webhook deliveries localstripe scheduled (each sleeps a second first) are dropped.
        pending = [t for t in asyncio.all_tasks()
                   if getattr(t.get_coro(), "__qualname__", "") == "_send_webhook"]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def stripe_url(localstripe_server: str) -> str:
    """localstripe's base URL, with no objects and no webhooks registered."""
    localstripe.webhooks._webhooks.clear()
    async with ClientSession() as session, session.delete(
            f"{localstripe_server}/_config/data") as resp:
        assert resp.status == 200, await resp.text()
    return localstripe_server


@pytest.fixture
def stripe_settings() -> SettingsFactory:
    """Settings for a Stripe at `base`, with `env` on top."""

    def make(base: str, **env: str) -> Settings:
        return load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://",
                              "STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_API_BASE": base,
                              "STRIPE_TIMEOUT_S": "5", **env})

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def stripe(stripe_url: str, stripe_settings: SettingsFactory
                 ) -> AsyncIterator[StripeIntegration]:
    """The Stripe integration, started against localstripe."""
    integration = StripeIntegration(stripe_settings(stripe_url), SystemClock())
    await integration.start()
    try:
        yield integration
    finally:
        await integration.close()


@pytest.fixture
def make_job() -> JobFactory:
    """A validated job record as a processor sees it on attempt `attempts` (nothing enqueued):
    `make_job("payment-process", data, attempts=2, tenant_id="t1")`."""
    registry, ids = Registry(types=BUILTIN_TYPES), IdGenerator()
    clock = SystemClock()

    def make(type: str, data: dict[str, Any], *, attempts: int = 1, **spec: Any) -> Job:
        job = build_job(registry, ids, JobSpec(type=type, data=data, **spec), clock.now())
        job.attempts = attempts
        return job

    return make


def payment_data(payment_method: str = "pm_card_visa", amount: int = 2500,
                 **extra: Any) -> dict[str, Any]:
    return {"userId": "u1", "venueId": "v1", "eventId": "e1", "amount": amount,
            "currency": "USD", "paymentMethod": payment_method, **extra}


@pytest.fixture
def payment() -> Callable[..., dict[str, Any]]:
    """Data of a `payment-process` job (a Visa test card, 25.00 USD, unless told otherwise)."""
    return payment_data


async def list_objects(base: str, resource: str, *, account: str | None = None
                       ) -> list[dict[str, Any]]:
    """Every object of `resource` ("payment_intents", "refunds", "payouts") that the Stripe at
    `base` holds, read page by page with plain HTTP (not through the code under test)."""
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    if account is not None:
        headers["Stripe-Account"] = account
    found: list[dict[str, Any]] = []
    params = {"limit": "100"}
    async with ClientSession(headers=headers) as session:
        while True:
            async with session.get(f"{base}/v1/{resource}", params=params) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            found.extend(page["data"])
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]


def tagged(objects: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The objects whose metadata names the job."""
    return [o for o in objects if (o.get("metadata") or {}).get("tickq_job_id") == job_id]


@pytest.fixture
def stripe_objects(stripe_url: str) -> Callable[..., Any]:
    """`await stripe_objects("payment_intents", job_id=...)`: what localstripe holds, all of it
    or only what the job created."""

    async def read(resource: str, *, job_id: str | None = None,
                   account: str | None = None) -> list[dict[str, Any]]:
        objects = await list_objects(stripe_url, resource, account=account)
        return objects if job_id is None else tagged(objects, job_id)

    return read
