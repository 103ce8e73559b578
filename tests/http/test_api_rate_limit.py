"""Per-caller API rate limits: windows, headers, who is counted, what is exempt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpkit import JOBS, Api, auth, payment, serve_api

from tickq.clock import FakeClock
from tickq.http.ratelimit import WindowCounter

QUEUES = "/api/v1/queue/queues"
START = 1_800_000_000.0  # a multiple of 60: windows start here


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def limited(clock: FakeClock) -> AsyncIterator[Api]:
    env = {"API_RATE_LIMIT_USER_PER_MIN": "5", "API_RATE_LIMIT_JOBS_PER_MIN": "3",
           "API_RATE_LIMIT_SERVICE_PER_MIN": "50", "API_RATE_LIMIT_METRICS_PER_MIN": "2"}
    async with serve_api(env, rate_limit=True, clock=clock) as running:
        yield running


async def test_the_request_past_the_limit_is_refused_with_headers(limited: Api) -> None:
    for i in range(5):
        resp = await limited.client.get(QUEUES, headers=auth("user"))
        assert resp.status == 200
        assert resp.headers["X-RateLimit-Limit"] == "5"
        assert resp.headers["X-RateLimit-Remaining"] == str(4 - i)
        assert resp.headers["X-RateLimit-Reset"] == str(int(START + 60))
    resp = await limited.client.get(QUEUES, headers={**auth("user"), "X-Request-ID": "r-1"})
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "60"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    body = await resp.json()
    assert body["code"] == "rate_limited"
    assert body["error"] == "Too Many Requests"
    assert body["requestId"] == "r-1"
    assert "5 per 60 s" in body["message"]


async def test_another_caller_is_not_affected(limited: Api) -> None:
    for _ in range(6):
        await limited.client.get(QUEUES, headers=auth("user", user="a"))
    assert (await limited.client.get(QUEUES, headers=auth("user", user="a"))).status == 429
    assert (await limited.client.get(QUEUES, headers=auth("user", user="b"))).status == 200
    assert (await limited.client.get(QUEUES, headers=auth("user", "t2", "a"))).status == 200


async def test_the_window_resets(limited: Api, clock: FakeClock) -> None:
    for _ in range(5):
        await limited.client.get(QUEUES, headers=auth("user"))
    clock.advance(30)
    resp = await limited.client.get(QUEUES, headers=auth("user"))
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "30"
    clock.advance(30)
    resp = await limited.client.get(QUEUES, headers=auth("user"))
    assert resp.status == 200
    assert resp.headers["X-RateLimit-Remaining"] == "4"


async def test_enqueues_have_their_own_smaller_limit(limited: Api) -> None:
    for i in range(3):
        resp = await limited.client.post(JOBS, json=payment(amount=100 + i), headers=auth("admin"))
        assert resp.status == 201
    resp = await limited.client.post(JOBS, json=payment(), headers=auth("admin"))
    assert resp.status == 429
    assert resp.headers["X-RateLimit-Limit"] == "3"
    # the refused enqueue consumed nothing: 3 of the 5 overall are used
    resp = await limited.client.get(QUEUES, headers=auth("admin"))
    assert resp.headers["X-RateLimit-Remaining"] == "1"


async def test_service_callers_get_their_higher_limit(limited: Api) -> None:
    for i in range(10):
        resp = await limited.client.post(JOBS, json=payment(amount=100 + i),
                                         headers=auth("service"))
        assert resp.status == 201, await resp.text()
    assert resp.headers["X-RateLimit-Limit"] == "50"
    assert resp.headers["X-RateLimit-Remaining"] == "40"


async def test_health_is_exempt_and_metrics_limited_by_ip(limited: Api) -> None:
    for _ in range(20):
        for path in ("/health", "/health/ready", "/api/v1/queue/health"):
            resp = await limited.client.get(path)
            assert resp.status < 429
            assert "X-RateLimit-Limit" not in resp.headers
    for _ in range(2):  # 404 until the metrics route exists: counted all the same
        assert (await limited.client.get("/metrics")).status != 429
    resp = await limited.client.get("/metrics")
    assert resp.status == 429
    assert resp.headers["X-RateLimit-Limit"] == "2"


async def test_stripe_webhook_deliveries_are_not_limited(limited: Api) -> None:
    # unsigned and not configured here (503), but never refused for their number
    for _ in range(20):
        resp = await limited.client.post("/api/v1/queue/webhooks/stripe", data=b"{}")
        assert resp.status == 503
        assert "X-RateLimit-Limit" not in resp.headers


async def test_off_by_default_in_the_fixtures(api: Api) -> None:
    for _ in range(120):
        resp = await api.client.get("/api/v1/queue/queues", headers=auth("user"))
        assert resp.status == 200
    assert "X-RateLimit-Limit" not in resp.headers


def test_counter_sweeps_stale_windows() -> None:
    clock = FakeClock(START)
    counter = WindowCounter(clock, max_windows=3)
    for key in ("a", "b", "c"):
        assert counter.check([(key, 1)]).allowed
    clock.advance(60)
    assert counter.check([("d", 1)]).allowed
    assert len(counter) == 1
