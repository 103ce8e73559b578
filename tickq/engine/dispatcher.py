"""Running one queue: a feeder that claims jobs in batches and long-lived worker coroutines.

Why this shape: a task and a future per job cost more than the no-op job itself, so each queue
has `concurrency` worker coroutines that live as long as the engine and take claimed jobs from a
local buffer, and one feeder that claims many jobs per store round trip. The buffer holds up to
`prefetch` claimed jobs beyond those running; their leases are renewed like running ones, and a
shutdown gives them back without spending an attempt.

A worker runs the processor inline. Cancelling a running job cancels the worker's task while it
is inside the processor; the worker takes the cancellation back (`uncancel`) and carries on.
"""

from __future__ import annotations

import asyncio
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


class QueueRunner:
    def __init__(self, engine: Engine, cfg: QueueConfig, concurrency: int, prefetch: int) -> None:
        self.engine = engine
        self.cfg = cfg
        self.name = cfg.name
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.buffer: deque[Job] = deque()
        self.busy = 0
        self.paused = False
        self.stopping = False
        self._parked: deque[asyncio.Future[None]] = deque()
        self._wake = asyncio.Event()
        self._feeder: asyncio.Task[None] | None = None
        self.workers: list[asyncio.Task[None]] = []
        #: job id -> the worker task running it, while inside the processor
        self.running: dict[str, asyncio.Task[None]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._feeder = asyncio.create_task(self._feed(), name=f"tickq-feed-{self.name}")
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
        self._unpark_all()
        return unstarted

    def _unpark_all(self) -> None:
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)

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
        while not self.stopping:
            self._wake.clear()
            if self.paused:
                await self._wake.wait()
                continue
            want = self.concurrency + self.prefetch - self.busy - len(self.buffer)
            if want <= 0:
                await self._wake.wait()
                continue
            now = clock.now()
            try:
                res = await store.job_fetch_available(self.name, want, now, self.cfg.lease_s)
            except Exception:
                log.exception("claiming jobs failed", extra={"event": "fetch_failed",
                                                             "queue": self.name})
                await asyncio.sleep(_MAX_IDLE_S)
                continue
            if res.expired:
                engine._on_expired(res.expired, now)
            if res.claimed:
                engine._on_claimed(res.claimed, now)
                self.buffer.extend(res.claimed)
                self._unpark(len(res.claimed))
                if len(res.claimed) == want:
                    continue
                # Fewer than asked: the queue is drained for now; wait until a worker frees a
                # slot or a job arrives, rather than spinning on empty fetches.
            due = await store.next_run_at(self.name)
            sleep = _MAX_IDLE_S if due is None else min(_MAX_IDLE_S, max(0.0, due - clock.now()))
            if sleep > 0 and not self._wake.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), sleep)
                except TimeoutError:
                    pass

    # --- working --------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = self.buffer
        since_yield = 0
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
                await self._run(job)
            finally:
                self.busy -= 1
            if not buffer:
                self._wake.set()
            since_yield += 1
            if since_yield >= _YIELD_EVERY:
                since_yield = 0
                await asyncio.sleep(0)

    async def _run(self, job: Job) -> None:
        engine = self.engine
        fn = engine._processors.get(job.type)
        jt = engine.registry.job_type(job.type)
        if fn is None:
            outcome: Outcome = Failure(PermanentError(
                f"no processor is registered for job type {job.type!r}", code="not_configured"))
            engine._finish(job, outcome)
            return
        task = asyncio.current_task()
        assert task is not None
        timeout_s = jt.timeout_s or self.cfg.timeout_s
        self.running[job.id] = task
        try:
            async with asyncio.timeout(timeout_s):
                result = await fn(job)
            outcome = Success(result)
        except asyncio.CancelledError:
            reason = engine._interrupt_reason(job.id)
            if reason is None:
                raise
            task.uncancel()
            outcome = Cancelled() if reason == "cancelled" else Deferred(0.0, reason)
        except TimeoutError as exc:
            outcome = Failure(JobTimeoutError(f"exceeded {timeout_s:g}s", job_id=job.id)
                              if not str(exc) else exc, timed_out=True)
        except Exception as exc:
            outcome = Failure(exc)
        finally:
            self.running.pop(job.id, None)
        if task.cancelling() and engine._interrupt_reason(job.id) is not None:
            # The processor swallowed a cancellation; the run still ended with its outcome.
            task.uncancel()
        engine._finish(job, outcome)
