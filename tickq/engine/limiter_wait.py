"""Waiting for a `RateLimiter` without polling.

The spec's `waitForTokens` polls every 100 ms, which wakes every waiter ten times a second and
still adds up to 100 ms of latency. Here a waiter sleeps exactly until `ready_at` (tokens and
cooldown are predictable), or until a release, resume or reset makes something possible that
time alone would not (a free slot, a lifted stop, a refilled bucket).

One `asyncio.Event` per bucket is set and replaced on each wake-up, so every waiter of that
bucket re-checks; the first to run takes the grant and the rest sleep again. Waiters are not
served in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tickq.clock import Clock
from tickq.engine.limiter import RateLimiter


class AsyncLimiter:
    """`RateLimiter` plus `await acquire(...)`. Time comes from `clock`."""

    __slots__ = ("_clock", "_events", "limiter")

    def __init__(self, limiter: RateLimiter, clock: Clock) -> None:
        self.limiter = limiter
        self._clock = clock
        self._events: dict[str, asyncio.Event] = {}
        # Wake-ups come from the limiter itself, so a release made directly on it (by the
        # dispatcher, say) reaches waiters here too.
        limiter.add_waker(self._wake)

    def _wake(self, bucket: str) -> None:
        event = self._events.pop(bucket, None)
        if event is not None:
            event.set()

    async def acquire(self, provider: str, n: int = 1, timeout: float | None = None) -> bool:
        """Wait until n tokens and a slot are granted; False if `timeout` seconds pass first.

        A granted call must be followed by `release` when it finishes.
        """
        clock, limiter = self._clock, self.limiter
        bucket = limiter.bucket_of(provider)
        deadline = None if timeout is None else clock.now() + max(0.0, timeout)
        while True:
            now = clock.now()
            if limiter.try_acquire(provider, now, n).granted:
                return True
            ready = limiter.ready_at(provider, now, n)
            delay = None if ready is None else ready - now
            if deadline is not None:
                left = deadline - now
                if left <= 0:
                    return False
                delay = left if delay is None else min(delay, left)
            event = self._events.get(bucket)
            if event is None:
                event = self._events[bucket] = asyncio.Event()
            # Woken by a release, or the next token came due: either way, look again.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await event.wait()

    def release(self, provider: str) -> None:
        """Give back the slot of a finished call (wakes this bucket's waiters)."""
        self.limiter.release(provider, self._clock.now())

    @asynccontextmanager
    async def slot(self, provider: str, n: int = 1,
                   timeout: float | None = None) -> AsyncIterator[None]:
        """`async with limiter.slot("stripe"):` holds a slot for the block.

        Raises `TimeoutError` when no slot came within `timeout`.
        """
        if not await self.acquire(provider, n, timeout):
            raise TimeoutError(f"no {self.limiter.bucket_of(provider)} slot within {timeout} s")
        try:
            yield
        finally:
            self.release(provider)
