"""Between the queues and the providers: rate limits and circuit breakers at claim time.

The store asks the gate about every job it is about to claim. A job whose provider is stopped,
has an open breaker, is cooling down after a 429, has no token or no free slot is not claimed:
it is parked in its provider's lot (still waiting, no attempt spent, nothing written) and the
jobs behind it, of other providers, are claimed in the same pass. The lot is unparked the moment
it can run again: a timer at the time the next token is due, or the cooldown or the breaker's
open period ends; a release of a slot; a resume or a reset. Unparking puts back about as many
jobs as could start, not the whole lot, so a backlog of 100,000 jobs behind a 25/s limit costs
nothing while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from tickq.clock import Clock
from tickq.engine.breaker import BreakerBoard, BreakerTransition
from tickq.engine.gate import Deferral
from tickq.engine.job import Job
from tickq.engine.limiter import RateLimiter
from tickq.errors import RateLimited

log = logging.getLogger(__name__)

#: how many jobs of a provider with no limits one unpark puts back
UNLIMITED_BATCH = 1_000


class ProviderGate:
    def __init__(self, limiter: RateLimiter, breakers: BreakerBoard, clock: Clock,
                 provider_of: Callable[[str], str | None],
                 unpark: Callable[[str, int], Awaitable[int]],
                 on_unparked: Callable[[], None]) -> None:
        self.limiter = limiter
        self.breakers = breakers
        self._clock = clock
        self._provider_of = provider_of
        self._unpark = unpark
        self._on_unparked = on_unparked
        #: job id -> provider, for every job that holds a token and a slot
        self._holding: dict[str, str] = {}
        #: lots with parked jobs -> how many were parked (an upper bound: some may be gone)
        self._lots: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        #: counters for metrics: parked jobs by reason, breaker transitions by (bucket, state);
        #: the limiter keeps its own per-bucket decision counts (`limiter.stats`)
        self.deferrals: dict[str, int] = {}
        self.transitions: dict[tuple[str, str], int] = {}
        limiter.add_waker(self.kick)
        breakers.on_transition = self._breaker_moved

    # --- the gate the store calls while claiming ---------------------------------------------

    def __call__(self, job: Job, now: float) -> Deferral | None:
        provider = self._provider_of(job.type)
        if provider is None:
            return None
        lot = self.limiter.bucket_of(provider)
        if not self.breakers.allow(provider, now):
            return self._park(lot, "circuit_open", self.breakers.retry_at(provider, now))
        decision = self.limiter.try_acquire(provider, now)
        if not decision.granted:
            self.breakers.release(provider, now)  # give the probe slot back
            return self._park(lot, decision.reason or "limited", decision.retry_at)
        self._holding[job.id] = provider
        return None

    def _park(self, lot: str, reason: str, retry_at: float | None) -> Deferral:
        self._lots[lot] = self._lots.get(lot, 0) + 1
        self.deferrals[reason] = self.deferrals.get(reason, 0) + 1
        if retry_at is not None:
            self._wake_at(lot, retry_at)
        return Deferral(lot, reason)

    def blocked(self, job_id: str, now: float) -> str | None:
        """Why a claimed job must not start after all (None: it may start).

        The gate decides at claim time, but a claimed job can wait in its runner's buffer
        while its provider is stopped, throttles us or its breaker opens; starting it then
        would call a provider that said stop. The runner hands such a job back instead."""
        provider = self._holding.get(job_id)
        if provider is None:
            return None
        status = self.limiter.status(provider, now)
        if status["stopped"]:
            return "stopped"
        if self.breakers.retry_at(provider, now) is not None:
            return "circuit_open"
        if status["cooldown_left_s"] > 0:
            return "cooldown"
        return None

    # --- the end of a run ---------------------------------------------------------------------

    def finished(self, job_id: str, error: BaseException | None, ran: bool = True) -> None:
        """A claimed job's run ended (`ran`), or it was handed back without running."""
        provider = self._holding.pop(job_id, None)
        if provider is None:
            return
        now = self._clock.now()
        if isinstance(error, RateLimited):
            self.limiter.cooldown(provider, now, error.retry_after)
        if ran:
            self.breakers.record_result(provider, error, now)
        else:
            self.breakers.release(provider, now)
        self.limiter.release(provider, now)  # wakes the lot through `kick`

    # --- unparking -----------------------------------------------------------------------------

    def kick(self, lot: str) -> None:
        """Something changed for `lot` (a slot freed, a resume, a reset): look at it now."""
        if self._lots.get(lot):
            self._wake_at(lot, self._clock.now())

    def _breaker_moved(self, key: str, transition: BreakerTransition) -> None:
        moved = (key, transition.dst.value)
        self.transitions[moved] = self.transitions.get(moved, 0) + 1
        log.warning("circuit breaker changed", extra={
            "event": "breaker", "provider": key, "from": transition.src.value,
            "to": transition.dst.value})
        self.kick(key)

    def _wake_at(self, lot: str, at: float) -> None:
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - self._clock.now())
        when = loop.time() + delay
        timer = self._timers.get(lot)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[lot] = loop.call_at(when, self._fire, lot)

    def _fire(self, lot: str) -> None:
        self._timers.pop(lot, None)
        task = asyncio.create_task(self.unpark(lot), name=f"tickq-unpark-{lot}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def capacity(self, lot: str, now: float) -> int:
        """How many parked jobs of `lot` could start now (0 while stopped or open)."""
        status = self.limiter.status(lot, now)
        if status["stopped"]:
            return 0
        opens_at = self.breakers.retry_at(lot, now)
        if opens_at is not None and opens_at > now:
            return 0
        if status["cooldown_left_s"] > 0:
            return 0
        n = min(status["max_concurrent"] - status["in_flight"], status["tokens"])
        return UNLIMITED_BATCH if math.isinf(n) else max(0, int(n))

    async def unpark(self, lot: str) -> None:
        now = self._clock.now()
        n = self.capacity(lot, now)
        if n <= 0:
            ready = self.limiter.ready_at(lot, now)
            breaker_at = self.breakers.retry_at(lot, now)
            later = [t for t in (ready, breaker_at) if t is not None and t > now]
            if later:
                self._wake_at(lot, min(later))
            return
        moved = await self._unpark(lot, n)
        left = self._lots.get(lot, 0) - moved
        if moved == 0 or left <= 0:
            self._lots.pop(lot, None)
        else:
            self._lots[lot] = left
        if moved:
            self._on_unparked()

    async def sweep(self) -> None:
        """Look at every lot with parked jobs (called from the engine's maintenance)."""
        for lot in list(self._lots):
            await self.unpark(lot)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._running:
            task.cancel()

    def holding(self, job_id: str) -> str | None:
        return self._holding.get(job_id)
