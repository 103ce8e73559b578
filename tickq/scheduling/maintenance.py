"""The maintenance tasks: each removes what has outlived its use and reports how much.

* `retention`: finished jobs past their retention, counted per queue (each queue is a tier: money
  keeps completed payments 90 days and NFT mints 365, communication 7, background none), by the
  engine's own rules (`Engine.retention_rules`).
* `key-expiry`: idempotency-key holds of completed jobs that have ended (`Store.job_release_keys`).
* `telemetry-retention`: alerts and queue metric snapshots past their retention (7 and 30 days,
  `tickq.engine.monitor.retention_cutoffs`), removed by the monitor's own
  `tickq.monitoring.prune_monitor_data`.
* `journal-housekeeping` (SQLite only): incremental vacuum and a truncating WAL checkpoint, run by
  the journal's writer between two commits so it never contends with them.

They are plain coroutines; `tickq.scheduling.Scheduler` runs them on APScheduler intervals, on
the leader only, and records each run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tickq.clock import iso
from tickq.engine.engine import Engine
from tickq.engine.monitor import retention_cutoffs
from tickq.monitoring.service import prune_monitor_data
from tickq.scheduling.config import SchedulerConfig
from tickq.scheduling.runs import TaskOutcome
from tickq.storage.base import PruneRule, Store

RETENTION, KEY_EXPIRY, TELEMETRY, HOUSEKEEPING = (
    "retention", "key-expiry", "telemetry-retention", "journal-housekeeping")


@runtime_checkable
class JournalHousekeeping(Protocol):
    """A store with a journal to checkpoint and vacuum (the SQLite store)."""

    async def journal_housekeep(self, vacuum_pages: int) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class PeriodicTask:
    name: str
    run: Callable[[], Awaitable[TaskOutcome]]
    interval_s: float
    #: log a run that counted nothing at DEBUG rather than INFO (a task that runs every few
    #: seconds and usually finds nothing to do)
    quiet: bool = False


class Maintenance:
    def __init__(self, engine: Engine, config: SchedulerConfig) -> None:
        self.engine = engine
        self.config = config

    @property
    def store(self) -> Store:
        return self.engine.store

    def tasks(self) -> list[PeriodicTask]:
        c = self.config
        tasks = [PeriodicTask(RETENTION, self.retention, c.retention_interval_s),
                 PeriodicTask(KEY_EXPIRY, self.key_expiry, c.key_expiry_interval_s),
                 PeriodicTask(TELEMETRY, self.telemetry_retention,
                              c.telemetry_retention_interval_s)]
        if isinstance(self.store, JournalHousekeeping):
            tasks.append(PeriodicTask(HOUSEKEEPING, self.journal_housekeeping,
                                      c.housekeeping_interval_s))
        return tasks

    async def retention(self) -> TaskOutcome:
        """Finished jobs past retention, removed queue by queue so the counts say which tier
        they came from."""
        now = self.engine.clock.now()
        by_queue: dict[str, list[PruneRule]] = {}
        for rule in self.engine.retention_rules(now):
            by_queue.setdefault(rule.queue, []).append(rule)
        counts = {queue: await self.store.job_prune(rules) for queue, rules in by_queue.items()}
        return TaskOutcome(counts)

    async def key_expiry(self) -> TaskOutcome:
        released = await self.store.job_release_keys(self.engine.clock.now())
        return TaskOutcome({"idempotencyKeys": released})

    async def telemetry_retention(self) -> TaskOutcome:
        now = self.engine.clock.now()
        removed = await prune_monitor_data(self.engine, now)
        snapshots_before, alerts_before = retention_cutoffs(now)
        return TaskOutcome({"metricSnapshots": removed["snapshots"], "alerts": removed["alerts"]},
                           {"removedBefore": {"metricSnapshots": iso(snapshots_before),
                                             "alerts": iso(alerts_before)}})

    async def journal_housekeeping(self) -> TaskOutcome:
        store = self.store
        if not isinstance(store, JournalHousekeeping):
            return TaskOutcome(details={"journal": "this store has no journal to keep"})
        report = await store.journal_housekeep(self.config.vacuum_pages)
        return TaskOutcome({"walFrames": report["checkpointed_frames"],
                            "freePages": report["pages_freed"]},
                           {"walCheckpointBusy": bool(report["checkpoint_busy"]),
                            "freePagesLeft": report["free_pages_after"],
                            "incrementalVacuum": report["auto_vacuum"] == 2})
