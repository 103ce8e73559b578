"""`AsyncLimiter`: waiting for a grant sleeps the computed time or until a wake-up, never polls."""

from __future__ import annotations

import asyncio
import time

import pytest

from tickq.clock import FakeClock, SystemClock
from tickq.engine.limiter import GRANTED, Decision, LimitConfig, RateLimiter
from tickq.engine.limiter_wait import AsyncLimiter

T0 = 1_800_000_000.0


def fast_limiter(max_concurrent: int = 10) -> tuple[RateLimiter, list[Decision]]:
    """50/s with a burst of 1: the second call must wait exactly 20 ms."""
    seen: list[Decision] = []
    cfg = LimitConfig(rate_per_s=50, burst=1, max_concurrent=max_concurrent, cooldown_s=0)
    return RateLimiter({"p": cfg}, {}, on_decision=lambda _, d: seen.append(d)), seen


async def test_acquire_sleeps_the_computed_time_not_a_poll_interval() -> None:
    lim, seen = fast_limiter()
    waiter = AsyncLimiter(lim, SystemClock())
    assert await waiter.acquire("p")
    started = time.perf_counter()
    assert await asyncio.wait_for(waiter.acquire("p"), 1.0)
    elapsed = time.perf_counter() - started
    assert 0.018 <= elapsed < 0.1
    # one grant, one refusal, then (at most a couple of re-checks for clock skew) the grant:
    # a 1 ms poll would have asked some 20 times
    assert seen[0] is GRANTED and seen[-1] is GRANTED
    assert len(seen) <= 4


async def test_acquire_is_woken_by_release() -> None:
    lim, seen = fast_limiter(max_concurrent=1)
    clock = FakeClock(T0)  # time never moves: only the release can let the waiter in
    waiter = AsyncLimiter(lim, clock)
    assert await waiter.acquire("p")
    clock.advance(1)
    task = asyncio.create_task(waiter.acquire("p"))
    await asyncio.sleep(0.02)
    assert not task.done()
    assert [d.reason for d in seen] == [None, "concurrency"]  # it sleeps, it does not poll
    waiter.release("p")
    assert await asyncio.wait_for(task, 0.5)


async def test_acquire_is_woken_by_resume_and_by_a_release_on_the_bare_limiter() -> None:
    lim, _ = fast_limiter(max_concurrent=1)
    clock = FakeClock(T0)
    waiter = AsyncLimiter(lim, clock)
    lim.emergency_stop()
    task = asyncio.create_task(waiter.acquire("p"))
    await asyncio.sleep(0.01)
    assert not task.done()
    lim.resume()
    assert await asyncio.wait_for(task, 0.5)
    clock.advance(1)
    task = asyncio.create_task(waiter.acquire("p"))
    await asyncio.sleep(0.01)
    lim.release("p", clock.now())
    assert await asyncio.wait_for(task, 0.5)


async def test_acquire_gives_up_at_the_timeout() -> None:
    lim, _ = fast_limiter(max_concurrent=1)
    waiter = AsyncLimiter(lim, SystemClock())
    assert await waiter.acquire("p")
    started = time.perf_counter()
    assert not await asyncio.wait_for(waiter.acquire("p", timeout=0.03), 1.0)
    assert 0.025 <= time.perf_counter() - started < 0.2
    with pytest.raises(TimeoutError):
        async with waiter.slot("p", timeout=0):
            pass
    waiter.release("p")
    async with waiter.slot("p", timeout=1):
        assert lim.status("p", time.time())["in_flight"] == 1
    assert lim.status("p", time.time())["in_flight"] == 0
