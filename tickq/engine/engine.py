"""The engine: what an application (or the HTTP layer) talks to.

It validates and enqueues jobs, runs one `QueueRunner` per queue, turns the end of every run into
one store write (batched by a settler, the way River's completer batches), emits events, renews
leases and rescues stuck jobs. It does no I/O of its own: all state goes through the `Store`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from tickq.clock import Clock, SystemClock
from tickq.engine.backoff import BackoffPolicy
from tickq.engine.breaker import BreakerBoard
from tickq.engine.dispatcher import QueueRunner
from tickq.engine.events import EventBus, EventKind
from tickq.engine.gate import Deferral
from tickq.engine.ids import IdGenerator
from tickq.engine.job import Job
from tickq.engine.jobtypes import BUILTIN_TYPES
from tickq.engine.limiter import RateLimiter
from tickq.engine.outcome import Failure, Outcome, Settle, SettleKind, Success, decide
from tickq.engine.producer import Enqueued, JobSpec, build_job, build_jobs
from tickq.engine.providers import ProviderGate
from tickq.engine.queues import QueueConfig, QueueCounts
from tickq.engine.registry import JobType, Registry
from tickq.engine.retention import retention_rules
from tickq.engine.settler import Settler
from tickq.engine.states import FINAL_STATES, JobState
from tickq.errors import (
    IllegalTransitionError,
    JobNotFoundError,
    JobTimeoutError,
    StoreClosedError,
    TickqError,
    ValidationError,
)
from tickq.storage.base import JobQuery, PruneRule, Store

log = logging.getLogger(__name__)

#: jobs read per page when clearing a queue
CLEAR_BATCH = 500

Processor = Callable[[Job], Awaitable[Any]]
P = TypeVar("P", bound=Callable[..., Any])

class JobFailed(TickqError):
    """`Engine.result` on a job that ended in the dead-letter queue or was cancelled."""

    code = "job_failed"

    def __init__(self, job: Job) -> None:
        errors = job.errors
        last = errors[-1].message if errors else job.state.value
        super().__init__(f"job {job.id} {job.state.value}: {last}", job_id=job.id)
        self.job = job


class Engine:
    def __init__(self, store: Store, *, registry: Registry | None = None,
                 clock: Clock | None = None, rng: random.Random | None = None,
                 concurrency: dict[str, int] | None = None,
                 prefetch: dict[str, int] | None = None,
                 limiter: RateLimiter | None = None, breakers: BreakerBoard | None = None,
                 shutdown_grace_s: float = 30.0, maintenance_interval_s: float = 1.0,
                 retention_interval_s: float = 300.0, settle_batch: int = 4096) -> None:
        self.store = store
        self.registry = registry or Registry(types=BUILTIN_TYPES)
        self.clock: Clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.events = EventBus()
        self.shutdown_grace_s = shutdown_grace_s
        self.maintenance_interval_s = maintenance_interval_s
        self.retention_interval_s = retention_interval_s
        #: whether `tick_maintenance` removes finished jobs past retention itself. A scheduler
        #: that takes the duty over (on the leader only, see `tickq.scheduling`) turns it off
        #: while it runs and back on when it stops, so an engine embedded without one still
        #: prunes on its own.
        self.prunes_on_timer = True
        self._last_prune = -math.inf
        self._concurrency = dict(concurrency or {})
        self._prefetch = dict(prefetch or {})
        self._ids = IdGenerator()
        self._processors: dict[str, Processor] = {}
        #: job type -> (processor, timeout, backoff, key TTL), looked up once per type
        self._runtimes: dict[str, _Runtime] = {}
        self._runners: dict[str, QueueRunner] = {}
        #: job id -> claim token for every job this engine has claimed and not yet settled
        self._claims: dict[str, int] = {}
        #: job id -> why its run is being interrupted ("cancelled" or "shutdown")
        self._interrupts: dict[str, str] = {}
        self._aborting = False
        self._settler = Settler(store, self._after_settle, settle_batch)
        self.providers = ProviderGate(
            limiter or RateLimiter(), breakers or BreakerBoard(), self.clock,
            provider_of=self._provider_of, unpark=self._unpark, on_unparked=self._wake_all)
        self._settle_task: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._waiters: dict[str, list[asyncio.Future[Job]]] = {}
        #: serialises `update_result` (read, change, write)
        self._result_lock = asyncio.Lock()
        self._started = False
        self._stopped = False
        #: counters since start (the metrics layer reads these)
        self.stats: dict[str, int] = {"stalled": 0, "expired": 0, "completed": 0, "failed": 0,
                                      "retried": 0, "deferred": 0, "cancelled": 0, "enqueued": 0}

    # --- registration ---------------------------------------------------------------------

    def register(self, job_type: JobType | str, fn: Callable[[Job], Any]) -> None:
        """Attach a processor to a job type (registering the type if it is a new `JobType`)."""
        if isinstance(job_type, JobType):
            try:
                existing = self.registry.job_type(job_type.name)
            except TickqError:
                existing = None
            if existing is None:
                self.registry.add_type(job_type)
            elif existing != job_type:
                self.registry.add_type(job_type, replace=True)
            name = job_type.name
        else:
            name = self.registry.job_type(job_type).name
        self._processors[name] = _as_async(fn)
        self._runtimes.clear()

    def has_processor(self, type_name: str) -> bool:
        return type_name in self._processors

    def processor(self, type_name: str, *, queue: str | None = None, **options: Any
                  ) -> Callable[[P], P]:
        """Decorator: `@engine.processor("send-welcome", queue="communication")`.

        With `queue` (and any other `JobType` field as a keyword) it registers a new job type;
        without, the type must already be known (the built-in ones are)."""
        def wrap(fn: P) -> P:
            if queue is not None:
                self.register(JobType(name=type_name, queue=queue, **options), fn)
            else:
                if options:
                    raise TypeError("job type options need queue=")
                self.register(type_name, fn)
            return fn
        return wrap

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, recover what an earlier run left, and start dispatching. Idempotent."""
        if self._started:
            return
        if self._stopped:
            raise StoreClosedError("an engine cannot be started again after it stopped")
        now = self.clock.now()
        queues = {q.name: q for q in self.registry.queues}
        report = await self.store.open(queues, now)
        self._started = True
        for job in report.stalled:
            self.stats["stalled"] += 1
            self.events.emit(EventKind.STALLED, job, now, "process restarted")
            if job.state in FINAL_STATES:
                self._resolve(job)
        paused = await self.store.queue_paused()
        self.store.on_available = self._on_available
        for cfg in self.registry.queues:
            conc = self._concurrency.get(cfg.name, cfg.concurrency)
            runner = QueueRunner(self, cfg, conc, self._prefetch.get(cfg.name, conc))
            runner.paused = cfg.name in paused
            self._runners[cfg.name] = runner
            runner.start()
        self._settle_task = asyncio.create_task(self._settler.run(), name="tickq-settler")
        self._maintenance = asyncio.create_task(self._maintain(), name="tickq-maintenance")
        log.info("engine started", extra={"event": "engine_started", "loaded": report.loaded,
                                          "stalled": len(report.stalled)})

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming, let running jobs finish for up to `grace_s`, give the rest back to
        waiting without spending an attempt, flush, and close the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            await self.store.close()
            return
        grace = self.shutdown_grace_s if grace_s is None else grace_s
        for runner in self._runners.values():
            self._release(await runner.stop_feeding())
        workers = [t for r in self._runners.values() for t in r.workers]
        if workers:
            _, pending = await asyncio.wait(workers, timeout=max(0.0, grace))
            if pending:
                # Past the grace period: interrupt the rest; each records a snooze that gives
                # its attempt back.
                self._aborting = True
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for runner in self._runners.values():
            await runner.stop_watchdog()
        self.providers.close()
        # Interrupted runs recorded their snooze; write everything out before closing.
        await self._settler.flush()
        side_tasks = [t for t in (self._settle_task, self._maintenance) if t is not None]
        for side in side_tasks:
            side.cancel()
        await asyncio.gather(*side_tasks, return_exceptions=True)
        await self._settler.flush()
        await self.store.close()
        for futs in self._waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(StoreClosedError("the engine stopped"))
        self._waiters.clear()
        log.info("engine stopped", extra={"event": "engine_stopped"})

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    # --- enqueue --------------------------------------------------------------------------

    def _build(self, spec: JobSpec, now: float) -> Job:
        return build_job(self.registry, self._ids, spec, now)

    async def enqueue(self, type: str, data: Any, **options: Any) -> Job:
        """Enqueue one job; returns it (or the job that already holds its idempotency key)."""
        return (await self.enqueue_many([JobSpec(type=type, data=data, **options)]))[0].job

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Enqueued]:
        """Enqueue a batch. Every spec is validated first: one bad spec refuses the whole batch
        and nothing is written. Returns after the jobs are as durable as their queues ask."""
        if not self._started or self._stopped:
            raise StoreClosedError("the engine is not running")
        now = self.clock.now()
        jobs: list[Job] = []
        for built in build_jobs(self.registry, self._ids, specs, now):
            if isinstance(built, ValidationError):
                raise built
            jobs.append(built)
        return await self.enqueue_jobs(jobs, now)

    def build(self, spec: JobSpec) -> Job:
        """The record `spec` would become, validated, without enqueueing it: for callers that
        check each item of a request themselves (and then hand the records to `enqueue_jobs`
        rather than having them built a second time)."""
        return self._build(spec, self.clock.now())

    def build_many(self, specs: Sequence[JobSpec]) -> list[Job | ValidationError]:
        """`build` for each spec, each record or the reason it was refused in its place; the
        data of specs of one type is validated together, which is what makes big batches
        cheap."""
        return build_jobs(self.registry, self._ids, specs, self.clock.now())

    async def enqueue_jobs(self, jobs: Sequence[Job], now: float | None = None, *,
                           copy: bool = True) -> list[Enqueued]:
        """Enqueue records made by `build`; as `enqueue_many` otherwise. `copy=False` returns
        the store's live records instead of snapshots: only for a caller that reads them at
        once, before its next `await` (they change as the jobs run)."""
        if not self._started or self._stopped:
            raise StoreClosedError("the engine is not running")
        now = self.clock.now() if now is None else now
        results = await self.store.job_insert_many(jobs, now)
        woken: set[str] = set()
        emit = self.events.wants(EventKind.ENQUEUED)
        created = 0
        for job, new in results:
            if new:
                created += 1
                if emit:
                    self.events.emit(EventKind.ENQUEUED, job, now)
                woken.add(job.queue)
        self.stats["enqueued"] += created
        for q in woken:
            runner = self._runners.get(q)
            if runner is not None:
                runner.wake()
        if not copy:
            return [Enqueued(job, new) for job, new in results]
        # Copies: the store's records keep changing as the jobs run.
        return [Enqueued(job.copy(), new) for job, new in results]

    # --- reads and operator actions ---------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        return await self.store.job_get(job_id)

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        return await self.store.job_list(query)

    async def counts(self, queue: str) -> QueueCounts:
        self.registry.queue(queue)
        return await self.store.queue_counts(queue, self.clock.now())

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job is completed, failed or cancelled; returns its final record."""
        job = await self.store.job_get(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
        if job.state in FINAL_STATES:
            return job
        fut: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(fut)
        # It may have finished between the read and the registration.
        job = await self.store.job_get(job_id)
        if job is not None and job.state in FINAL_STATES and not fut.done():
            fut.set_result(job)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise JobTimeoutError(f"job {job_id} did not finish within {timeout}s",
                                  job_id=job_id) from None
        finally:
            futs = self._waiters.get(job_id)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._waiters[job_id]

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's result once it completes; raises `JobFailed` if it failed or was cancelled."""
        job = await self.wait(job_id, timeout)
        if job.state is not JobState.COMPLETED:
            raise JobFailed(job)
        return job.result

    async def cancel(self, job_id: str) -> Job:
        """Cancel a waiting job, or interrupt a running one (cooperatively: its processor sees
        `asyncio.CancelledError` at its next await)."""
        now = self.clock.now()
        job = await self.store.job_cancel(job_id, now)
        if job.state is JobState.CANCELLED:
            self._claims.pop(job.id, None)
            self.stats["cancelled"] += 1
            self.events.emit(EventKind.CANCELLED, job, now)
            self._resolve(job)
            return job
        # Active: interrupt it if it runs here. Elsewhere (another node) it finishes its attempt.
        runner = self._runners.get(job.queue)
        if runner is not None and job.id in runner.running:
            self._interrupts[job.id] = "cancelled"
            runner.interrupt(job.id)
        elif runner is not None and job.id in self._claims:
            for buffered in list(runner.buffer):
                if buffered.id == job.id:
                    runner.buffer.remove(buffered)
                    self.providers.finished(job.id, None, ran=False)
                    self._finish_settle(Settle(job_id=job.id, token=buffered.claim_token, at=now,
                                               kind=SettleKind.CANCEL, reason="cancelled"),
                                        buffered)
        return job

    async def discard(self, job_id: str) -> Job:
        """Delete a dead-letter (failed) job for good; returns it as it was."""
        job = await self.store.job_discard(job_id)
        log.info("dead-letter job discarded", extra={"event": "discarded", "job_id": job.id,
                                                    "queue": job.queue})
        self.events.emit(EventKind.DISCARDED, job, self.clock.now())
        return job

    async def update_result(self, job_id: str, change: Callable[[Job], Any]) -> Job:
        """Replace a finished job's result with `change(job)`, given the job as it is now (a
        provider's later word on a payment, say); returns the job as it is then. The read and
        the write happen under one lock, so two concurrent updates of one job (two webhook
        deliveries) cannot lose each other's change; a change that returns the result as it was
        writes nothing. Raises JobNotFoundError, or IllegalTransitionError for a job that has
        not finished (its run writes its result)."""
        async with self._result_lock:
            job = await self.store.job_get(job_id)
            if job is None:
                raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
            if job.state not in FINAL_STATES:
                raise IllegalTransitionError(
                    f"job {job_id} is {job.state.value}; its result is written when it finishes",
                    job_id=job_id)
            result = change(job)
            if result == job.result:
                return job
            return await self.store.job_update_result(job_id, orjson.dumps(result))

    async def retry(self, job_id: str, extra_attempts: int | None = None) -> Job:
        """Put a dead-letter (failed) job back to waiting; its error history is kept."""
        job = await self.store.job_get(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
        jt = self.registry.job_type(job.type)
        more = extra_attempts or jt.max_attempts or self.registry.queue(job.queue).max_attempts
        now = self.clock.now()
        job = await self.store.job_retry_failed(job_id, now, more)
        self.events.emit(EventKind.REVIVED, job, now)
        runner = self._runners.get(job.queue)
        if runner is not None:
            runner.wake()
        return job

    async def pause(self, queue: str) -> None:
        self.registry.queue(queue)
        await self.store.queue_set_paused(queue, True)
        runner = self._runners.get(queue)
        if runner is not None:
            runner.paused = True
            runner.wake()

    async def resume(self, queue: str) -> None:
        self.registry.queue(queue)
        await self.store.queue_set_paused(queue, False)
        runner = self._runners.get(queue)
        if runner is not None:
            runner.paused = False
            runner.wake()

    async def clear(self, queue: str, *, delayed_only: bool = False) -> tuple[int, int]:
        """Cancel the queue's jobs that have not started (only the delayed ones when
        `delayed_only`); returns (cancelled, skipped). The queue is held paused meanwhile, so
        nothing is claimed half-way through, and a job that started or finished anyway is
        skipped, never interrupted."""
        self.registry.queue(queue)
        was_paused = self.is_paused(queue) or queue in await self.store.queue_paused()
        if not was_paused:
            await self.pause(queue)
        cancelled = skipped = 0
        try:
            after: str | None = None
            while True:
                page = await self.store.job_list(JobQuery(
                    queue=queue, states=frozenset({JobState.WAITING}), after=after,
                    limit=CLEAR_BATCH, newest_first=False))
                now = self.clock.now()
                for job in page:
                    if delayed_only and job.run_at <= now:
                        continue
                    try:
                        done = await self.cancel(job.id)
                    except (JobNotFoundError, IllegalTransitionError):
                        skipped += 1
                        continue
                    if done.state is JobState.CANCELLED:
                        cancelled += 1
                    else:
                        skipped += 1
                if len(page) < CLEAR_BATCH:
                    return cancelled, skipped
                after = page[-1].id
        finally:
            if not was_paused:
                await self.resume(queue)

    def is_paused(self, queue: str) -> bool:
        runner = self._runners.get(queue)
        return bool(runner and runner.paused)

    # --- providers ------------------------------------------------------------------------------

    def emergency_stop(self, provider: str | None = None) -> None:
        """Stop starting jobs that draw on `provider` (all providers when None) until
        `resume_provider`. Running jobs finish; waiting ones wait without spending attempts."""
        self.providers.limiter.emergency_stop(provider)
        log.warning("emergency stop", extra={"event": "emergency_stop",
                                             "provider": provider or "*"})

    def resume_provider(self, provider: str | None = None) -> None:
        self.providers.limiter.resume(provider)
        log.warning("emergency stop lifted", extra={"event": "emergency_resume",
                                                    "provider": provider or "*"})

    def reset_provider(self, provider: str) -> None:
        """Full tokens, no cooldown and a closed breaker for `provider`."""
        self.providers.limiter.reset(provider, self.clock.now())
        self.providers.breakers.reset(provider)
        self.providers.kick(self.providers.limiter.bucket_of(provider))

    async def set_progress(self, job: Job, progress: int) -> None:
        """Report a running job's progress (0-100)."""
        if await self.store.job_progress(job.id, job.claim_token, progress):
            self.events.emit(EventKind.PROGRESS, job, self.clock.now())

    # --- called by the runners ---------------------------------------------------------------

    def _on_available(self, queue: str) -> None:
        runner = self._runners.get(queue)
        if runner is not None:
            runner.wake()

    def _on_claimed(self, jobs: list[Job], now: float) -> None:
        claims = self._claims
        for job in jobs:
            claims[job.id] = job.claim_token
        if self.events.wants(EventKind.STARTED):
            for job in jobs:
                self.events.emit(EventKind.STARTED, job, now)

    def _on_expired(self, jobs: list[Job], now: float) -> None:
        for job in jobs:
            self.stats["expired"] += 1
            self.events.emit(EventKind.EXPIRED, job, now, "expired")
            self._resolve(job)

    def _provider_of(self, type_name: str) -> str | None:
        rt = self._runtimes.get(type_name)
        if rt is None:
            try:
                queue = self.registry.job_type(type_name).queue
            except TickqError:
                return None
            rt = self._runtimes[type_name] = self._make_runtime(type_name, queue)
        return rt.provider

    async def _unpark(self, lot: str, n: int) -> int:
        return await self.store.job_unpark(lot, n, self.clock.now())

    def _wake_all(self) -> None:
        for runner in self._runners.values():
            runner.wake()

    def _on_deferred(self, deferred: list[tuple[Job, Deferral]], now: float) -> None:
        self.stats["deferred"] += len(deferred)
        if self.events.wants(EventKind.DEFERRED):
            for job, why in deferred:
                self.events.emit(EventKind.DEFERRED, job, now, why.reason)

    def _runtime(self, type_name: str, cfg: QueueConfig) -> tuple[Processor | None, float]:
        rt = self._runtimes.get(type_name)
        if rt is None:
            rt = self._runtimes[type_name] = self._make_runtime(type_name, cfg.name)
        return rt.fn, rt.timeout_s

    def _make_runtime(self, type_name: str, queue: str) -> _Runtime:
        try:
            jt = self.registry.job_type(type_name)
        except TickqError:
            # A job of a type this process does not know (left by another version, say): it
            # fails as not configured rather than taking its worker down.
            cfg = self.registry.queue(queue)
            return _Runtime(None, cfg.timeout_s, cfg.backoff, 86_400.0, None)
        cfg = self.registry.queue(jt.queue)
        return _Runtime(self._processors.get(type_name), jt.timeout_s or cfg.timeout_s,
                        jt.backoff or cfg.backoff, jt.key_ttl_s, jt.provider)

    def _finish(self, job: Job, outcome: Outcome) -> None:
        """Turn the end of a run into its store write (queued for the settler)."""
        rt = self._runtimes.get(job.type) or self._make_runtime(job.type, job.queue)
        if isinstance(outcome, Failure):
            self.providers.finished(job.id, outcome.error)
        else:
            self.providers.finished(job.id, None, ran=isinstance(outcome, Success))
        settle = decide(outcome, job, self.clock.now(), max_attempts=job.max_attempts,
                        policy=rt.policy, key_ttl_s=rt.key_ttl_s, rng=self.rng)
        self._finish_settle(settle, job)

    def _release(self, jobs: Sequence[Job]) -> None:
        """Give claimed jobs that never started back to waiting, attempt refunded."""
        now = self.clock.now()
        for job in jobs:
            self.providers.finished(job.id, None, ran=False)
            self._finish_settle(Settle(job_id=job.id, token=job.claim_token, at=now,
                                       kind=SettleKind.SNOOZE, run_at=job.run_at,
                                       reason="shutdown"), job)

    def _finish_settle(self, settle: Settle, job: Job) -> None:
        self._interrupts.pop(job.id, None)
        self._settler.add(settle)

    # --- settling --------------------------------------------------------------------------

    def _after_settle(self, batch: list[Settle], done: list[Job]) -> None:
        claims = self._claims
        for s in batch:
            if claims.get(s.job_id) == s.token:
                del claims[s.job_id]
        emit = self.events.emit
        stats = self.stats
        reasons = {s.job_id: s for s in batch}
        woken: set[str] = set()
        for job in done:
            s = reasons[job.id]
            kind = s.kind
            if kind is SettleKind.COMPLETE:
                stats["completed"] += 1
                emit(EventKind.COMPLETED, job, s.at)
            elif kind is SettleKind.RETRY:
                stats["retried"] += 1
                emit(EventKind.RETRIED, job, s.at, s.reason)
                woken.add(job.queue)
            elif kind is SettleKind.SNOOZE:
                stats["deferred"] += 1
                emit(EventKind.DEFERRED, job, s.at, s.reason)
                woken.add(job.queue)
            elif kind is SettleKind.FAIL:
                stats["failed"] += 1
                emit(EventKind.FAILED, job, s.at, s.reason)
            else:
                stats["cancelled"] += 1
                emit(EventKind.CANCELLED, job, s.at, s.reason)
            if self._waiters and job.state in FINAL_STATES:
                self._resolve(job)
        if not self._stopped:
            for q in woken:
                runner = self._runners.get(q)
                if runner is not None:
                    runner.wake()

    def _resolve(self, job: Job) -> None:
        futs = self._waiters.pop(job.id, None)
        if futs:
            snapshot = job.copy()
            for fut in futs:
                if not fut.done():
                    fut.set_result(snapshot)

    # --- leases and rescue -------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Renew the leases of everything this engine holds, then rescue expired ones."""
        while True:
            await asyncio.sleep(self.maintenance_interval_s)
            try:
                await self.tick_maintenance()
            except Exception:
                log.exception("lease maintenance failed", extra={"event": "maintenance_failed"})

    def retention_rules(self, now: float) -> list[PruneRule]:
        """What retention removes at `now`: per job type, completed jobs past the type's (or its
        queue's) retention, failed and cancelled ones past the queue's."""
        return retention_rules(self.registry, now)

    async def tick_maintenance(self) -> None:
        now = self.clock.now()
        if self._claims:
            lease_s = min(r.cfg.lease_s for r in self._runners.values()) if self._runners else 30.0
            lost = await self.store.job_heartbeat(list(self._claims.items()), now + lease_s)
            for job_id in lost:
                # Someone else settled or rescued it; a late write from us would be dropped anyway.
                self._claims.pop(job_id, None)
                self.providers.finished(job_id, None, ran=False)
        if self.prunes_on_timer and now - self._last_prune >= self.retention_interval_s:
            self._last_prune = now
            removed = await self.store.job_prune(self.retention_rules(now))
            if removed:
                log.info("finished jobs past retention removed",
                         extra={"event": "pruned", "count": removed})
        rescued = await self.store.job_rescue_stuck(now)
        await self.providers.sweep()
        for job in rescued:
            self.stats["stalled"] += 1
            self._claims.pop(job.id, None)
            self.providers.finished(job.id, None, ran=False)
            self.events.emit(EventKind.STALLED, job, now, "lease expired")
            if job.state in FINAL_STATES:
                self._resolve(job)
            else:
                runner = self._runners.get(job.queue)
                if runner is not None:
                    runner.wake()


@dataclass(slots=True, frozen=True)
class _Runtime:
    fn: Processor | None
    timeout_s: float
    policy: BackoffPolicy
    key_ttl_s: float
    provider: str | None


def _as_async(fn: Callable[[Job], Any]) -> Processor:
    """Processors may be plain functions; those run in a worker thread so they cannot block."""
    if inspect.iscoroutinefunction(fn):
        return fn

    async def run_in_thread(job: Job) -> Any:
        return await asyncio.to_thread(fn, job)

    run_in_thread.__name__ = getattr(fn, "__name__", "processor")
    return run_in_thread

