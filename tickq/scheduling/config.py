"""How often each periodic task runs."""

from __future__ import annotations

from dataclasses import dataclass

from tickq.settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    #: finished jobs past their retention (the engine's rules: per job type and queue)
    retention_interval_s: float = 300.0
    #: ended idempotency-key holds
    key_expiry_interval_s: float = 3600.0
    #: alerts and queue metric snapshots past their retention
    telemetry_retention_interval_s: float = 3600.0
    #: the SQLite journal's WAL checkpoint and incremental vacuum (pages per run)
    housekeeping_interval_s: float = 3600.0
    vacuum_pages: int = 2000
    #: every cron schedule is read again and run if due (slots a busy loop let slip, schedules
    #: made on another node)
    schedule_sync_interval_s: float = 15.0
    #: a slot at most this late is on time; older ones were missed
    misfire_grace_s: float = 60.0
    #: a claimed slot not enqueued after this long was left by a node that died
    pending_grace_s: float = 60.0
    #: how often a node that does not lead asks again (and the leader confirms it still does);
    #: a node taking over runs the schedules at once, so a failover loses at most this long
    leader_check_interval_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        return cls(retention_interval_s=settings.retention_interval_s,
                   key_expiry_interval_s=settings.key_expiry_interval_s,
                   telemetry_retention_interval_s=settings.telemetry_retention_interval_s,
                   housekeeping_interval_s=settings.housekeeping_interval_s,
                   vacuum_pages=settings.vacuum_pages,
                   schedule_sync_interval_s=settings.schedule_sync_interval_s,
                   misfire_grace_s=settings.schedule_misfire_grace_s,
                   pending_grace_s=settings.schedule_misfire_grace_s)
