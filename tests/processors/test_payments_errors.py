"""How Stripe's failures reach the engine: 429, 5xx, 409, 401 and silence, each answered by a
small HTTP server on 127.0.0.1 that fails the way Stripe fails (status and error body), and what
the engine does with each: a deferral without spending an attempt, a retry counted against the
circuit breaker, the dead-letter queue."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

import tickq
from tickq.clock import SystemClock
from tickq.engine.breaker import BreakerBoard, BreakerConfig, BreakerState
from tickq.engine.job import ErrorEntry, Job, append_error
from tickq.errors import PermanentError, ProviderError, RateLimited
from tickq.processors import Integrations
from tickq.processors.payments import StripeIntegration
from tickq.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAST = tickq.BackoffPolicy(kind=tickq.BackoffKind.FIXED, base_s=0.01, cap_s=0.01, jitter=False)

#: Stripe's error bodies for each status it fails with
ERRORS: dict[int, dict[str, Any]] = {
    429: {"type": "invalid_request_error", "code": "rate_limit",
          "message": "Too many requests hit the API too quickly."},
    500: {"type": "api_error", "message": "An unknown error occurred."},
    503: {"type": "api_error", "message": "Stripe is temporarily unavailable."},
    401: {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"},
    409: {"type": "idempotency_error",
          "message": "There is currently another in-progress request using this "
                     "Idempotent Key."},
    402: {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
          "message": "Your card has insufficient funds."},
}


class FailingStripe:
    """Answers every request with `status` and Stripe's error body for it (after `delay_s`,
    if set); records what it was sent."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: dict[str, str] = {}
        self.delay_s = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.queries: list[dict[str, str]] = []
        self.url = ""
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        self.queries.append(dict(request.query))
        if self.delay_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), self.delay_s)
        return web.json_response({"error": ERRORS[self.status]}, status=self.status,
                                 headers={"Request-Id": "req_test", **self.headers})

    def release(self) -> None:
        self._release.set()


@pytest_asyncio.fixture(loop_scope="session")
async def failing() -> AsyncIterator[FailingStripe]:
    peer = FailingStripe()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    peer.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield peer
    finally:
        peer.release()
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def against(failing: FailingStripe, stripe_settings: Callable[..., Any]
                  ) -> AsyncIterator[StripeIntegration]:
    """The integration pointed at the failing server, with a short request timeout."""
    integration = StripeIntegration(stripe_settings(failing.url, STRIPE_TIMEOUT_S="0.3"),
                                    SystemClock())
    await integration.start()
    try:
        yield integration
    finally:
        await integration.close()


async def test_429_is_rate_limited_for_retry_after_seconds(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    failing.status, failing.headers = 429, {"Retry-After": "7"}

    with pytest.raises(RateLimited) as caught:
        await against.process_payment(make_job("payment-process", payment()))

    assert (caught.value.retry_after, caught.value.provider) == (7.0, "stripe-charges")
    assert caught.value.code == "rate_limit"


async def test_429_without_retry_after_waits_one_second(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job]
        ) -> None:
    failing.status = 429
    job = make_job("refund-process", {"transactionId": "pi_1", "userId": "u1", "venueId": "v1"})

    with pytest.raises(RateLimited) as caught:
        await against.process_refund(job)

    assert (caught.value.retry_after, caught.value.provider) == (1.0, "stripe-refunds")


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_a_provider_fault_to_retry(
        status: int, failing: FailingStripe, against: StripeIntegration,
        make_job: Callable[..., Job]) -> None:
    failing.status = status
    job = make_job("payout-process", {"venueId": "v1", "amount": 100,
                                      "bankAccountId": "acct_1"})

    with pytest.raises(ProviderError) as caught:
        await against.process_payout(job)

    error = caught.value
    assert (error.status, error.provider, error.is_fault, error.retryable) == (
        status, "stripe-payouts", True, True)


async def test_no_answer_within_the_timeout_is_a_provider_fault_without_status(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    failing.delay_s = 5.0
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        await against.process_payment(make_job("payment-process", payment()))

    assert time.monotonic() - started < 2.0, "the request outlived STRIPE_TIMEOUT_S"
    assert (caught.value.status, caught.value.is_fault) == (None, True)
    assert caught.value.code == "stripe_unreachable"


async def test_an_idempotency_conflict_is_retried_without_blaming_stripe(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    failing.status = 409

    with pytest.raises(ProviderError) as caught:
        await against.process_payment(make_job("payment-process", payment()))

    assert (caught.value.status, caught.value.is_fault, caught.value.retryable) == (
        409, False, True)


@pytest.mark.parametrize(("status", "code"), [(401, "stripe_auth"), (402, "card_declined")])
async def test_a_refused_key_or_card_is_permanent(
        status: int, code: str, failing: FailingStripe, against: StripeIntegration,
        make_job: Callable[..., Job], payment: Callable[..., Any]) -> None:
    failing.status = status

    with pytest.raises(PermanentError) as caught:
        await against.process_payment(make_job("payment-process", payment()))

    assert caught.value.code == code


async def test_every_money_request_carries_the_jobs_idempotency_key(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    failing.status = 500
    keyed = make_job("payment-process", payment(), idempotency_key="order-17")
    keyless = make_job("payout-process", {"venueId": "v1", "amount": 100,
                                          "bankAccountId": "acct_1"})
    keyless.idempotency_key = None

    for call in (against.process_payment(keyed), against.process_payout(keyless)):
        with pytest.raises(ProviderError):
            await call

    (m1, p1, h1), (m2, p2, h2) = failing.requests
    assert (m1, p1, h1["Idempotency-Key"]) == ("POST", "/v1/payment_intents", "order-17")
    assert (m2, p2, h2["Idempotency-Key"]) == ("POST", "/v1/payouts", f"tickq-{keyless.id}")
    assert h2["Stripe-Account"] == "acct_1"
    assert h1["Authorization"] == "Bearer sk_test_tickq_0123456789"


async def test_a_retry_asks_stripe_for_the_jobs_window_before_charging_again(
        failing: FailingStripe, against: StripeIntegration, make_job: Callable[..., Job],
        payment: Callable[..., Any]) -> None:
    failing.status = 500
    job = make_job("payment-process", payment(), attempts=2)
    job.errors_json = append_error(None, ErrorEntry(
        attempt=1, type="ProviderError", message="Stripe failed with 500", code="api_error",
        at=job.created_at + 30.5))

    with pytest.raises(ProviderError):
        await against.process_payment(job)

    assert [(m, p) for m, p, _ in failing.requests] == [("GET", "/v1/payment_intents")]
    assert failing.queries == [{"limit": "100",
                                "created[gte]": str(int(job.created_at - 600)),
                                "created[lte]": str(int(job.created_at + 30.5 + 600) + 1)}]


# --- through the engine -----------------------------------------------------------------------


def engine_for(integration: StripeIntegration, **options: Any) -> tickq.Engine:
    engine = tickq.Engine(MemoryStore(), shutdown_grace_s=1.0, **options)
    fast = dataclasses.replace(engine.registry.job_type("payment-process"), backoff=FAST)
    engine.register(fast, integration.process_payment)
    Integrations(engine, [integration]).install()
    return engine


async def settled(engine: tickq.Engine, job_id: str, check: Callable[[Job], bool],
                  timeout: float = 5.0) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = await engine.get(job_id)
        assert job is not None
        if check(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job never got there: {job!r} {job.errors}")
        await asyncio.sleep(0.01)


async def test_engine_opens_the_stripe_breaker_on_5xx_and_defers_without_spending_attempts(
        failing: FailingStripe, against: StripeIntegration, payment: Callable[..., Any]) -> None:
    failing.status = 503
    breakers = BreakerBoard(BreakerConfig(consecutive_failures=3, open_s=60))
    engine = engine_for(against, breakers=breakers)
    async with engine:
        job = await engine.enqueue("payment-process", payment())
        now = engine.clock.now()
        held = await settled(engine, job.id, lambda j: breakers.get("stripe").state(
            engine.clock.now()) is BreakerState.OPEN and j.state is tickq.JobState.WAITING)
        await asyncio.sleep(0.1)  # the breaker holds the job: no further attempt
        later = await engine.get(job.id)

    assert breakers.get("stripe-refunds").state(now) is BreakerState.OPEN  # one breaker, shared
    assert held.attempts == 3 and len(failing.requests) == 3
    assert [e.code for e in held.errors] == ["stripe_unavailable"] * 3
    assert later is not None and later.attempts == 3 and len(failing.requests) == 3


async def test_engine_defers_a_rate_limited_payment_and_cools_the_stripe_bucket_down(
        failing: FailingStripe, against: StripeIntegration, payment: Callable[..., Any]) -> None:
    failing.status, failing.headers = 429, {"Retry-After": "30"}
    engine = engine_for(against)
    async with engine:
        job = await engine.enqueue("payment-process", payment())
        deferred = await settled(engine, job.id, lambda j: bool(failing.requests)
                                 and j.state is tickq.JobState.WAITING)
        now = engine.clock.now()
        bucket = engine.providers.limiter.status("stripe-charges", now)
        breaker = engine.providers.breakers.get("stripe").state(now)

    assert deferred.attempts == 0 and deferred.errors == []
    assert 25 < deferred.run_at - now <= 30
    assert 25 < bucket["cooldown_left_s"] <= 30
    assert breaker is BreakerState.CLOSED
    assert len(failing.requests) == 1


async def test_requests_pin_the_configured_api_version_and_never_retry_inside_the_sdk(
        failing: FailingStripe, stripe_settings: Callable[..., Any],
        make_job: Callable[..., Job], payment: Callable[..., Any]) -> None:
    failing.status = 503
    settings = stripe_settings(failing.url, STRIPE_API_VERSION="2024-06-20")
    integration = StripeIntegration(settings, SystemClock())
    await integration.start()
    try:
        with pytest.raises(ProviderError):
            await integration.process_payment(make_job("payment-process", payment()))
    finally:
        await integration.close()

    [(_, _, headers)] = failing.requests  # one request: the engine, not the SDK, retries
    assert headers["Stripe-Version"] == "2024-06-20"
