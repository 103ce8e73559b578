"""Periodic work beside the engine: maintenance and user cron schedules on APScheduler.

The engine keeps no timers beyond its leases; this package is what an application (or the HTTP
service, see `tickq.http.app`) starts next to it:

    async with tickq.open("sqlite:///jobs.db") as engine, Scheduler(engine) as scheduler:
        await create_schedule(engine, name="nightly-report", cron="0 2 * * *",
                              timezone="Europe/Paris", scheduler=scheduler,
                              template=JobTemplate(queue="background", type="generate-report",
                                                   data={...}))
"""

from tickq.scheduling.config import SchedulerConfig
from tickq.scheduling.cron import Cron, CronError, slot_iso
from tickq.scheduling.leader import LeaderCheck, always_leader, store_leader_check
from tickq.scheduling.maintenance import Maintenance
from tickq.scheduling.runs import TaskOutcome, TaskRun
from tickq.scheduling.scheduler import SCHEDULES, Scheduler
from tickq.scheduling.schedules import (
    ScheduleExistsError,
    check_schedule,
    create_schedule,
    delete_schedule,
)
from tickq.scheduling.template import JobTemplate
from tickq.scheduling.ticks import MISSED_POLICIES, ScheduleTicker, TickReport, tick_key

__all__ = ["MISSED_POLICIES", "SCHEDULES", "Cron", "CronError",
           "JobTemplate", "LeaderCheck", "Maintenance", "ScheduleExistsError", "ScheduleTicker",
           "Scheduler", "SchedulerConfig", "TaskOutcome", "TaskRun", "TickReport",
           "always_leader", "check_schedule", "create_schedule", "delete_schedule",
           "slot_iso", "store_leader_check", "tick_key"]
