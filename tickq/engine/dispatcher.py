"""Running one queue: a feeder that claims jobs in batches and long-lived worker coroutines.

Why this shape: a task and a future per job cost more than a no-op job itself, so each queue has
`concurrency` worker coroutines that live as long as the engine and take claimed jobs from a local
buffer, and one feeder that claims many jobs per store round trip. The buffer holds up to
`prefetch` claimed jobs beyond those running, and is topped up while it still has work in it, so
workers do not sit idle while a claim commits. Buffered jobs' leases are renewed like running
ones, and a shutdown gives them back without spending an attempt.

A worker runs the processor inline. Interrupting a run (cancel, timeout, shutdown) cancels the
worker's task while it is inside the processor; the worker takes the cancellation back
(`uncancel`) and carries on. Timeouts are enforced by one watchdog per queue with a resolution of
`WATCHDOG_S`, not by a timer per job: a timer per job cost more than the rest of the dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from tickq.engine.job import Job
from tickq.engine.outcome import Cancelled, Deferred, Failure, Outcome, Success
from tickq.engine.queues import QueueConfig
from tickq.errors import JobTimeoutError, PermanentError

if TYPE_CHECKING:
    from tickq.engine.engine import Engine

log = logging.getLogger(__name__)

#: a worker that never has to wait would starve the loop; it yields after this many jobs
_YIELD_EVERY = 64
#: the longest a feeder sleeps without looking again (covers wakeups that never come)
_MAX_IDLE_S = 1.0
#: how often a feeder reads the queue's pause state back from the store, where another node
#: sharing it (PostgreSQL) may have paused or resumed the queue
_PAUSE_RECHECK_S = 1.0
#: how often running jobs are checked against their timeout
WATCHDOG_S = 0.05


class QueueRunner:
    def __init__(self, engine: Engine, cfg: QueueConfig, concurrency: int, prefetch: int) -> None:
        self.engine = engine
        self.cfg = cfg
        self.name = cfg.name
        self.concurrency = concurrency
        self.prefetch = prefetch
        #: claim again once this many slots (running + buffered) are free
        self._refill_at = max(1, (concurrency + prefetch) // 4)
        self.buffer: deque[Job] = deque()
        self.busy = 0
        self.paused = False
        self.stopping = False
        self._parked: deque[asyncio.Future[None]] = deque()
        self._wake = asyncio.Event()
        self._feeder: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.workers: list[asyncio.Task[None]] = []
        #: job id -> (worker task, deadline on the loop clock) while inside the processor
        self.running: dict[str, tuple[asyncio.Task[None], float]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._feeder = asyncio.create_task(self._feed(), name=f"tickq-feed-{self.name}")
        self._watchdog = asyncio.create_task(self._watch(), name=f"tickq-watch-{self.name}")
        self.workers = [asyncio.create_task(self._work(), name=f"tickq-{self.name}-{i}")
                        for i in range(self.concurrency)]

    def wake(self) -> None:
        """New work may be there: a job was enqueued, re-queued, or the queue resumed."""
        self._wake.set()

    async def stop_feeding(self) -> list[Job]:
        """Stop claiming; returns the claimed jobs that never started, for the engine to release."""
        self.stopping = True
        if self._feeder is not None:
            self._feeder.cancel()
            await asyncio.gather(self._feeder, return_exceptions=True)
            self._feeder = None
        unstarted = list(self.buffer)
        self.buffer.clear()
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)
        return unstarted

    async def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    def interrupt(self, job_id: str) -> bool:
        """Cancel the run of `job_id` if it is inside its processor here."""
        entry = self.running.get(job_id)
        if entry is None:
            return False
        entry[0].cancel()
        return True

    def _unpark(self, n: int) -> None:
        while n > 0 and self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    # --- feeding --------------------------------------------------------------------------

    async def _feed(self) -> None:
        engine = self.engine
        store = engine.store
        clock = engine.clock
        loop = asyncio.get_running_loop()
        total = self.concurrency + self.prefetch
        recheck_at = loop.time() + _PAUSE_RECHECK_S
        while not self.stopping:
            self._wake.clear()
            if loop.time() >= recheck_at:
                recheck_at = loop.time() + _PAUSE_RECHECK_S
                await self._recheck_pause()
            if self.paused:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _PAUSE_RECHECK_S)
                continue
            want = total - self.busy - len(self.buffer)
            if want < self._refill_at and (want <= 0 or self.buffer):
                await self._wake.wait()
                continue
            now = clock.now()
            try:
                res = await store.job_fetch_available(self.name, want, now, self.cfg.lease_s,
                                                      engine.providers)
            except Exception:
                log.exception("claiming jobs failed", extra={"event": "fetch_failed",
                                                             "queue": self.name})
                await asyncio.sleep(_MAX_IDLE_S)
                continue
            if res.expired:
                engine._on_expired(res.expired, now)
            if res.deferred:
                engine._on_deferred(res.deferred, now)
            if res.claimed:
                engine._on_claimed(res.claimed, now)
                if self.stopping:
                    # Stopped while the claim committed: hand them straight back.
                    engine._release(res.claimed)
                    return
                self.buffer.extend(res.claimed)
                self._unpark(len(res.claimed))
                if len(res.claimed) == want:
                    continue
            # The queue is drained for now: sleep until a job arrives or a delayed one is due.
            due = await store.next_run_at(self.name)
            sleep = _MAX_IDLE_S if due is None else min(_MAX_IDLE_S, max(0.0, due - clock.now()))
            if sleep > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), sleep)

    async def _recheck_pause(self) -> None:
        """Take the pause state the store holds (another node may have changed it). A pause or
        resume made here while the read was under way wakes the feeder, and wins."""
        try:
            paused = self.name in await self.engine.store.queue_paused()
        except Exception:
            log.exception("reading the pause state failed", extra={
                "event": "pause_read_failed", "queue": self.name})
            return
        if not self._wake.is_set():
            self.paused = paused

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        engine = self.engine
        while True:
            await asyncio.sleep(WATCHDOG_S)
            if not self.running:
                continue
            now = loop.time()
            for job_id, (task, deadline) in list(self.running.items()):
                if deadline <= now and job_id not in engine._interrupts:
                    engine._interrupts[job_id] = "timeout"
                    task.cancel()

    # --- working --------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = self.buffer
        since_yield = 0
        refill_below = self.concurrency + self.prefetch - self._refill_at
        while True:
            if buffer:
                job = buffer.popleft()
            elif self.stopping:
                return
            else:
                fut: asyncio.Future[None] = loop.create_future()
                self._parked.append(fut)
                self._wake.set()
                await fut
                since_yield = 0
                continue
            self.busy += 1
            try:
                await self._run(job, loop)
            finally:
                self.busy -= 1
            if self.busy + len(buffer) <= refill_below:
                self._wake.set()
            since_yield += 1
            if since_yield >= _YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)

    async def _run(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        engine = self.engine
        fn, timeout_s = engine._runtime(job.type, self.cfg)
        if fn is None:
            engine._finish(job, Failure(PermanentError(
                f"no processor is registered for job type {job.type!r}", code="not_configured")))
            return
        blocked = engine.providers.blocked(job.id, engine.clock.now())
        if blocked is not None:
            # Claimed before its provider was stopped, throttled us or failed: back to waiting
            # without spending the attempt; the gate parks it on the next claim.
            engine._finish(job, Deferred(0.0, blocked))
            return
        task = asyncio.current_task()
        assert task is not None
        outcome: Outcome
        self.running[job.id] = (task, loop.time() + timeout_s)
        try:
            result = await fn(job)
            outcome = Success(result)
        except asyncio.CancelledError:
            reason = engine._interrupts.get(job.id) or ("shutdown" if engine._aborting else None)
            if reason is None:
                raise
            task.uncancel()
            if reason == "timeout":
                outcome = Failure(JobTimeoutError(f"exceeded {timeout_s:g}s", job_id=job.id),
                                  timed_out=True)
            elif reason == "cancelled":
                outcome = Cancelled()
            else:
                outcome = Deferred(0.0, reason)
        except Exception as exc:
            outcome = Failure(exc)
        finally:
            del self.running[job.id]
        if task.cancelling() and job.id in engine._interrupts:
            # The processor swallowed the cancellation; the run still ended with its outcome.
            task.uncancel()
        engine._finish(job, outcome)
