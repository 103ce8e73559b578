"""`Scheduler`: tickq's periodic work on APScheduler's `AsyncIOScheduler`.

It runs, on the engine's event loop:

* the maintenance tasks (`tickq.scheduling.maintenance`) on intervals;
* one cron job per user schedule, firing at the schedule's slots, plus a sync task that reads
  every schedule again on an interval: it picks up schedules made on another node, finishes
  claims a dead node left pending, and enqueues slots a busy moment let slip. Firing twice is
  harmless: a slot is claimed once (`tickq.scheduling.ticks`);
* any task an application adds with `add_task` (the monitor, say).

Before every run it asks `is_leader` and skips the run when this node does not lead, so with
several nodes on one database the work happens once. It also asks every
`leader_check_interval_s` on its own: a follower that finds the leader gone (PostgreSQL
released its lock with its session) takes over then, and runs the schedules at once so slots
due during the change are enqueued (once: the slot claims see to that).

While it runs it holds the engine's retention duty (`Engine.prunes_on_timer` is off): the
leader prunes, followers do not, and an engine embedded without a scheduler keeps pruning on
its own timer.

APScheduler keeps the timing only; what is due is decided from the engine's clock and the
store, so a restart, a second node or a fake clock in tests see the same slots.

    async with tickq.open("sqlite:///jobs.db") as engine, Scheduler(engine):
        ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from tickq.engine.engine import Engine
from tickq.errors import NotFoundError
from tickq.scheduling.config import SchedulerConfig
from tickq.scheduling.leader import LeaderCheck, always_leader, ask
from tickq.scheduling.maintenance import Maintenance, PeriodicTask
from tickq.scheduling.runs import RunLog, TaskOutcome, TaskRun
from tickq.scheduling.ticks import ScheduleTicker
from tickq.storage.base import Schedule

log = logging.getLogger(__name__)

#: the task that reads every cron schedule again and runs what is due
SCHEDULES = "schedules"
#: how long `stop` lets runs in progress finish before they are cancelled
STOP_WAIT_S = 10.0
#: the APScheduler job that asks whether this node leads
LEADER_JOB = "leader"


class Scheduler:
    def __init__(self, engine: Engine, config: SchedulerConfig | None = None, *,
                 is_leader: LeaderCheck | None = None) -> None:
        self.engine = engine
        self.config = config or SchedulerConfig()
        self.is_leader: LeaderCheck = is_leader or always_leader
        self.runs = RunLog()
        self.maintenance = Maintenance(engine, self.config)
        self.ticker = ScheduleTicker(engine, misfire_grace_s=self.config.misfire_grace_s,
                                     pending_grace_s=self.config.pending_grace_s)
        self._tasks: dict[str, PeriodicTask] = {}
        for task in self.maintenance.tasks():
            self._tasks[task.name] = task
        self._tasks[SCHEDULES] = PeriodicTask(SCHEDULES, self._sync_schedules,
                                              self.config.schedule_sync_interval_s, quiet=True)
        self._locks: dict[str, asyncio.Lock] = {}
        #: schedule name -> (cron, timezone) of the cron job registered for it
        self._watched: dict[str, tuple[str, str]] = {}
        self._aps: AsyncIOScheduler | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        #: what the last leader check answered
        self.leading = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._aps is not None

    async def start(self) -> None:
        """Start timing runs and take over the engine's retention duty, then run the schedules
        once: slots missed while nothing ran are enqueued or skipped now, by their policy.
        Idempotent."""
        if self._aps is not None:
            return
        self._stopping = False
        aps = AsyncIOScheduler(timezone=UTC, job_defaults={
            # One run at a time per task; runs missed while the loop was busy collapse into
            # one, however late (what is due is decided from the clock, not from APScheduler).
            "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._aps = aps
        for task in self._tasks.values():
            self._add_interval(task)
        every = IntervalTrigger(seconds=self.config.leader_check_interval_s)
        aps.add_job(self._watch_leader, every, id=LEADER_JOB, name="leader check",
                    replace_existing=True)
        aps.start()
        self.engine.prunes_on_timer = False
        log.info("scheduler started", extra={"event": "scheduler_started",
                                             "tasks": sorted(self._tasks)})
        await self.run_task(SCHEDULES)

    async def stop(self) -> None:
        """Stop timing runs, let runs in progress finish (for up to `STOP_WAIT_S`), and hand
        retention back to the engine. Idempotent."""
        aps = self._aps
        if aps is None:
            return
        self._stopping = True
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=STOP_WAIT_S)
        aps.shutdown(wait=False)  # cancels what still runs
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
        self._aps = None
        self.leading = False
        self._watched.clear()
        self.engine.prunes_on_timer = True
        log.info("scheduler stopped", extra={"event": "scheduler_stopped"})

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- tasks ----------------------------------------------------------------------------

    def add_task(self, name: str, run: Callable[[], Awaitable[TaskOutcome]], interval_s: float,
                 *, quiet: bool = False) -> None:
        """Run `run` every `interval_s` seconds on the leader, recorded like maintenance."""
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        task = PeriodicTask(name, run, interval_s, quiet)
        self._tasks[name] = task
        if self._aps is not None:
            self._add_interval(task)

    @property
    def tasks(self) -> list[PeriodicTask]:
        return list(self._tasks.values())

    def next_run_at(self, name: str) -> float | None:
        job = self._aps.get_job(f"task:{name}") if self._aps is not None else None
        when = None if job is None else job.next_run_time
        return None if when is None else float(when.timestamp())

    def _add_interval(self, task: PeriodicTask) -> None:
        assert self._aps is not None
        self._aps.add_job(self._fire_task, IntervalTrigger(seconds=task.interval_s),
                          args=[task.name], id=f"task:{task.name}", name=task.name,
                          replace_existing=True)

    async def _fire_task(self, name: str) -> None:
        if not self._stopping:
            await self._tracked(self.run_task(name))

    async def _tracked(self, run: Awaitable[Any]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await run
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def leader(self) -> bool:
        """Whether this node leads now. A check that fails answers no: skipping a run is safe,
        running it on two nodes at once is what the check exists to prevent."""
        try:
            answer = await ask(self.is_leader)
        except Exception:
            log.exception("the leader check failed", extra={"event": "leader_check_failed"})
            answer = False
        if answer != self.leading:
            self.leading = answer
            log.info("this node leads now" if answer else "this node no longer leads",
                     extra={"event": "leader_gained" if answer else "leader_lost"})
        return answer

    async def _watch_leader(self) -> None:
        if self._stopping or not self.engine.running:
            return
        was = self.leading
        if await self.leader() and not was:
            await self._tracked(self.run_task(SCHEDULES))

    async def run_task(self, name: str) -> TaskRun:
        """Run one task now (if this node leads and the engine runs) and record the run."""
        task = self._tasks.get(name)
        if task is None:
            raise NotFoundError(f"no task {name!r}; tasks: {', '.join(sorted(self._tasks))}",
                                code="unknown_task")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            clock = self.engine.clock
            started, t0 = clock.now(), time.perf_counter()
            reason = None
            if not self.engine.running:
                reason = "the engine is not running"
            elif not await self.leader():
                reason = "this node is not the leader"
            outcome: TaskOutcome | None = None
            error = None
            if reason is None:
                try:
                    outcome = await task.run()
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    log.exception("maintenance task failed", extra={
                        "event": "maintenance_failed", "task": name})
            run = TaskRun(task=name, started_at=started, finished_at=clock.now(),
                          duration_s=time.perf_counter() - t0,
                          outcome="skipped" if reason else "failed" if error else "ok",
                          counts=dict(outcome.counts) if outcome else {},
                          details=dict(outcome.details) if outcome else {},
                          error=error, reason=reason)
            self.runs.add(run)
        if run.outcome == "ok":
            quiet = task.quiet and not any(run.counts.values())
            log.log(logging.DEBUG if quiet else logging.INFO, "maintenance run", extra={
                "event": "maintenance_run", "task": name, "counts": dict(run.counts),
                "duration_ms": round(run.duration_s * 1000, 3)})
        elif run.outcome == "skipped":
            log.debug("maintenance run skipped", extra={
                "event": "maintenance_skipped", "task": name, "reason": reason})
        return run

    # --- cron schedules -------------------------------------------------------------------

    def watch(self, schedule: Schedule) -> None:
        """Fire at `schedule`'s slots from now on (a schedule just made, or changed)."""
        if self._aps is None:
            return
        spec = (schedule.cron, schedule.timezone)
        if self._watched.get(schedule.name) == spec:
            return
        self._aps.add_job(self._fire_schedule, self.ticker.cron(schedule).trigger,
                          args=[schedule.name], id=f"schedule:{schedule.name}",
                          name=f"schedule {schedule.name}", replace_existing=True)
        self._watched[schedule.name] = spec

    def forget(self, name: str) -> None:
        """Stop firing for a deleted schedule."""
        if self._aps is not None and self._watched.pop(name, None) is not None:
            self._aps.remove_job(f"schedule:{name}")

    async def _fire_schedule(self, name: str) -> None:
        if self._stopping or not self.engine.running or not await self.leader():
            return
        try:
            await self._tracked(self.ticker.run(name))
        except Exception:
            log.exception("schedule tick failed", extra={"event": "schedule_tick_failed",
                                                        "schedule": name})

    async def _sync_schedules(self) -> TaskOutcome:
        schedules = await self.engine.store.schedule_list()
        names = {s.name for s in schedules}
        for name in [n for n in self._watched if n not in names]:
            self.forget(name)
        enqueued = existing = skipped = failed = 0
        for schedule in schedules:
            self.watch(schedule)
            report = await self.ticker.run_schedule(schedule)
            if report is None:
                continue
            enqueued += len(report.enqueued) - report.existing
            existing += report.existing
            skipped += report.skipped
            failed += report.error is not None
        return TaskOutcome({"enqueued": enqueued, "alreadyEnqueued": existing,
                            "skipped": skipped, "refused": failed},
                           {"schedules": len(schedules)})


__all__ = ["LEADER_JOB", "SCHEDULES", "Scheduler"]
