"""The monitor loop: every MONITOR_INTERVAL_S, measure each queue, keep a snapshot, and raise
the alerts `tickq.engine.monitor.Monitor` says are due.

A check reads, per queue, the counts (`engine.counts`) and the run_at of the longest-waiting due
job (`Store.queue_oldest_due`, a look at the top of the index's heaps), stores one
`QueueSnapshot` per queue, and hands the samples to the monitor. Each alert it raises goes
through every channel: the log (always; critical alerts at ERROR), the store (always; the
`alert_history` that the API lists and acknowledges), then the delivered channels
(`channels.py`).

With several nodes on one PostgreSQL database only the leader may check, or every node would
raise every alert (spec seed-003 "ISSUES & BUGS" #9). `is_leader` is that hook: always true for
SQLite and memory, where one process owns the store; the PostgreSQL store answers from its
advisory lock (`tickq.scheduling.store_leader_check`), asked again every interval, so a follower
takes over within one interval of the leader's session ending. A node that becomes leader
first reloads the cooldowns from the alerts already stored, so a failover or a restart does not
announce again what was just announced.

Retention of snapshots (30 days) and alerts (7 days) is `prune_monitor_data`, which the
maintenance scheduler's `telemetry-retention` task runs; the store's `snapshot_prune` and
`alert_prune` do the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tickq.engine.monitor import (
    COOLDOWN_S,
    MINUTE,
    AlertType,
    Breach,
    Monitor,
    QueueSample,
    QueueThresholds,
    Severity,
    retention_cutoffs,
)
from tickq.monitoring.channels import (
    ALWAYS,
    AlertChannels,
    AlertCounter,
    ChannelResult,
    DeliveryTracker,
    Outcome,
)
from tickq.storage.base import AlertRecord, NewAlert, QueueSnapshot

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)

LeaderCheck = Callable[[], Awaitable[bool]]
#: the log level of an alert by severity (seed-003: critical alerts are logged as errors)
LEVELS = {Severity.CRITICAL: logging.ERROR, Severity.WARNING: logging.WARNING,
          Severity.INFO: logging.INFO}
#: how far back stored alerts are read to restore cooldowns and reconcile deliveries
LOOKBACK_S = max(COOLDOWN_S.values())
#: at most this many stored alerts are read back at start
LOOKBACK_LIMIT = 1000


async def always_leader() -> bool:
    """The leader check of a store one process owns (SQLite, memory)."""
    return True


def thresholds_from_settings(settings: Settings) -> dict[str, QueueThresholds]:
    """seed-003's per-queue thresholds with the ALERT_THRESHOLD_* overrides applied."""
    s = settings
    return {
        "money": QueueThresholds(
            queue="money", severity=Severity.CRITICAL, depth=s.alert_threshold_money_queue,
            age_s=s.alert_threshold_money_age_minutes * MINUTE,
            failures=s.alert_threshold_money_failures),
        "communication": QueueThresholds(
            queue="communication", severity=Severity.WARNING,
            depth=s.alert_threshold_comm_queue,
            age_s=s.alert_threshold_comm_age_minutes * MINUTE,
            failures=s.alert_threshold_comm_failures),
        "background": QueueThresholds(
            queue="background", severity=Severity.INFO,
            depth=s.alert_threshold_background_queue,
            age_s=s.alert_threshold_background_age_minutes * MINUTE,
            failures=s.alert_threshold_background_failures),
    }


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert as stored, with what each channel did with it."""

    alert: AlertRecord
    channels: dict[str, ChannelResult] = field(default_factory=dict)


class MonitorService:
    """Runs the checks of one engine (see the module docstring). `start` and `stop` are
    idempotent; `check_once` and `raise_alert` may also be called directly."""

    def __init__(self, engine: Engine, channels: AlertChannels, *,
                 monitor: Monitor | None = None, interval_s: float = 30.0,
                 is_leader: LeaderCheck = always_leader,
                 count: AlertCounter | None = None) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.engine = engine
        self.channels = channels
        self.monitor = monitor or Monitor(engine.clock)
        self.interval_s = interval_s
        self.is_leader = is_leader
        self.count = count
        self.tracker = DeliveryTracker(engine, count)
        #: checks completed so far (for tests and the logs)
        self.checks = 0
        self._leading = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, *,
                      is_leader: LeaderCheck = always_leader,
                      count: AlertCounter | None = None) -> MonitorService:
        return cls(engine, AlertChannels(settings, engine),
                   monitor=Monitor(engine.clock, thresholds_from_settings(settings)),
                   interval_s=settings.monitor_interval_s, is_leader=is_leader, count=count)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start tracking deliveries and checking (the engine must be running)."""
        if self._task is not None:
            return
        self.tracker.start()
        self._task = asyncio.create_task(self._run(), name="tickq-monitor")
        log.info("monitor started", extra={
            "event": "monitor_started", "interval_s": self.interval_s,
            "channels": {c: self.channels.why_not_configured(c) or "configured"
                         for c in ("webhook", "email", "sms")}})

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.tracker.close()
        self._leading = False

    async def _run(self) -> None:
        try:
            await self._catch_up()
        except Exception:
            log.exception("alert delivery outcomes not caught up",
                          extra={"event": "alert_deliveries_unreconciled"})
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor check failed", extra={"event": "monitor_failed"})
            await asyncio.sleep(self.interval_s)

    async def _catch_up(self) -> None:
        """Deliveries a previous run left behind: ones that ended while nobody listened, and
        ones never enqueued (the process stopped between storing an alert and enqueueing its
        deliveries; the idempotency keys make enqueueing them now safe either way)."""
        store = self.engine.store
        recent = await store.alert_list(limit=LOOKBACK_LIMIT,
                                        since=self.engine.clock.now() - LOOKBACK_S)
        for alert in recent:
            pending = {c: ChannelResult(Outcome.PENDING) for c, status in alert.channels.items()
                       if status == Outcome.PENDING}
            if pending:
                done = await self.channels.deliver(alert, pending)
                await store.alert_set_channels(alert.id,
                                               {c: r.status.value for c, r in done.items()})
        changed = await self.tracker.reconcile(recent)
        if changed:
            log.info("alert delivery outcomes caught up",
                     extra={"event": "alert_deliveries_reconciled", "count": changed})

    async def tick(self) -> list[RaisedAlert]:
        """One turn of the loop: check if this node leads, else only note that it does not."""
        if not await self._leads():
            if self._leading:
                log.info("monitor paused: not the leader", extra={"event": "monitor_follower"})
            self._leading = False
            return []
        if not self._leading:
            await self.restore_cooldowns()
            self._leading = True
        return await self.check_once()

    async def _leads(self) -> bool:
        """A check that fails answers no: a missed check is harmless, alerts raised by two
        nodes are what the check prevents."""
        try:
            return await self.is_leader()
        except Exception:
            log.exception("the leader check failed", extra={"event": "leader_check_failed"})
            return False

    async def restore_cooldowns(self) -> None:
        """Start the cooldowns of alerts raised recently (by this node before a restart, or by
        the previous leader)."""
        recent = await self.engine.store.alert_list(
            limit=LOOKBACK_LIMIT, since=self.engine.clock.now() - LOOKBACK_S)
        known = {t.value for t in AlertType if t is not AlertType.TEST}
        self.monitor.remember((a.queue_name, AlertType(a.alert_type), a.created_at)
                              for a in recent if a.alert_type in known)

    # --- the check ------------------------------------------------------------------------

    async def sample(self) -> list[QueueSample]:
        """Every registered queue, measured now."""
        engine = self.engine
        now = engine.clock.now()
        out: list[QueueSample] = []
        for cfg in engine.registry.queues:
            counts = await engine.counts(cfg.name)
            oldest = await engine.store.queue_oldest_due(cfg.name, now)
            out.append(QueueSample(
                queue=cfg.name, at=now, due=max(0, counts.waiting - counts.delayed),
                delayed=counts.delayed, active=counts.active, completed=counts.completed,
                failed=counts.failed, oldest_due_at=oldest))
        return out

    async def check_once(self) -> list[RaisedAlert]:
        """Measure, keep the snapshots, raise what is due; returns the alerts raised."""
        samples = await self.sample()
        await self.engine.store.snapshot_insert([
            QueueSnapshot(queue_name=s.queue, waiting_count=s.due + s.delayed,
                          delayed_count=s.delayed, active_count=s.active,
                          completed_count=s.completed, failed_count=s.failed,
                          oldest_age_s=s.oldest_age_s, captured_at=s.at) for s in samples])
        raised: list[RaisedAlert] = []
        for breach in self.monitor.pending(samples):
            try:
                done = await self.raise_alert(breach)
            except Exception:
                # No cooldown starts: the next check tries again.
                log.exception("alert not raised", extra={
                    "event": "alert_failed", "queue": breach.queue,
                    "alert_type": breach.alert_type.value})
                continue
            self.monitor.raised(breach, done.alert.created_at)
            raised.append(done)
        self.checks += 1
        return raised

    async def raise_alert(self, breach: Breach, *, test: bool = False,
                          only: str | None = None) -> RaisedAlert:
        """Log, store and deliver one alert. `test` sends SMS whatever the severity; `only`
        limits the delivered channels to one (log and store are never skipped)."""
        now = self.engine.clock.now()
        severity = Severity(breach.severity)
        log.log(LEVELS[severity], breach.message, extra={
            "event": "alert", "severity": severity.value, "alert_type": breach.alert_type.value,
            "queue": breach.queue, "metric_value": breach.value,
            "threshold_value": breach.threshold, "test": test})
        plan = self.channels.plan(severity, test=test, only=only)
        results: dict[str, ChannelResult] = {"log": ChannelResult(Outcome.LOGGED),
                                             "stored": ChannelResult(Outcome.STORED), **plan}
        stored = await self.engine.store.alert_insert(NewAlert(
            severity=severity.value, alert_type=breach.alert_type.value, message=breach.message,
            queue_name=breach.queue, metric_value=breach.value, threshold_value=breach.threshold,
            created_at=now, channels={c: r.status.value for c, r in results.items()}))
        for channel in ALWAYS:
            self._count(stored, channel)
        for channel, result in plan.items():
            if result.status is Outcome.NOT_CONFIGURED:
                log.info(f"alert channel {channel} not configured: {result.reason}",
                         extra={"event": "alert_channel_not_configured", "channel": channel,
                                "alert_id": stored.id})
        delivered = await self.channels.deliver(stored, plan)
        changed = {c: r.status.value for c, r in delivered.items() if r != plan[c]}
        if changed:
            await self.engine.store.alert_set_channels(stored.id, changed)
        results.update(delivered)
        record = await self.engine.store.alert_get(stored.id) or stored
        return RaisedAlert(record, results)

    def _count(self, alert: AlertRecord, channel: str) -> None:
        if self.count is not None:
            try:
                self.count(alert.severity, alert.alert_type, channel)
            except Exception:
                log.exception("counting an alert failed", extra={"event": "alert_count_failed"})

    # --- retention ------------------------------------------------------------------------

    async def retention(self, now: float | None = None) -> dict[str, int]:
        """Remove snapshots older than 30 days and alerts older than 7; returns how many of
        each (`{"snapshots": n, "alerts": m}`)."""
        return await prune_monitor_data(self.engine, now)


async def prune_monitor_data(engine: Engine, now: float | None = None) -> dict[str, int]:
    """The monitor's retention on `engine`'s store at `now` (default: the engine's clock)."""
    at = engine.clock.now() if now is None else now
    snapshots_before, alerts_before = retention_cutoffs(at)
    removed = {"snapshots": await engine.store.snapshot_prune(snapshots_before),
               "alerts": await engine.store.alert_prune(alerts_before)}
    if any(removed.values()):
        log.info("monitor data past retention removed",
                 extra={"event": "monitor_pruned", **removed})
    return removed


__all__ = ["LEVELS", "LeaderCheck", "MonitorService", "RaisedAlert", "always_leader",
           "prune_monitor_data", "thresholds_from_settings"]
