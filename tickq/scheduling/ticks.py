"""Turning a cron schedule's due slots into jobs, at most once per slot.

A tick is decided against the schedule's `last_slot` (every slot up to it is claimed) and the
engine's clock:

* the newest due slot, if it is at most `misfire_grace_s` old, is on time and is enqueued;
* older due slots were missed (nothing ran then: the service was down, or this node was not the
  leader). `skip` drops them; `catch_up_once` enqueues the newest of them, once, whatever the
  number missed.

The slots are first claimed with `Store.schedule_claim`, a compare-and-set on the schedule's
version: of two nodes (or two runs of one node) that see the same slots due, one claims them and
the other finds the version moved and does nothing. The claimer then enqueues each slot with the
idempotency key `schedule:<name>:<slot in UTC>` and settles the claim. If it dies in between, the
slots stay pending; after `pending_grace_s` whoever runs the schedule next claims them again (one
node wins that too) and enqueues them under the same keys, so a job that did get enqueued is
found by its key instead of made twice.

A paused schedule claims nothing (a claim made before the pause is still finished); resuming it
moves `last_slot` to the moment of the resume, so the slots that fell meanwhile are dropped
whatever the missed-tick policy says: a pause is an operator's decision, not an outage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from tickq.engine.engine import Engine
from tickq.errors import ValidationError
from tickq.scheduling.cron import Cron, slot_iso
from tickq.scheduling.template import JobTemplate
from tickq.storage.base import Schedule

log = logging.getLogger(__name__)

MISSED_POLICIES = ("skip", "catch_up_once")
#: missed slots are counted up to this many (a long outage of a per-minute schedule would
#: otherwise cost a walk over every minute of it)
MAX_COUNTED = 10_000


def tick_key(name: str, slot: float) -> str:
    """The idempotency key of one slot of one schedule."""
    return f"schedule:{name}:{slot_iso(slot)}"


@dataclass(slots=True)
class TickReport:
    """What one run of one schedule did."""

    name: str
    #: (slot, job id) of every slot enqueued by this run, a job found by its key included
    enqueued: list[tuple[float, str]] = field(default_factory=list)
    #: of those, slots whose key an existing job already held (enqueued before a crash)
    existing: int = 0
    #: missed slots dropped (at most MAX_COUNTED are counted)
    skipped: int = 0
    #: why the slots could not be enqueued, when they could not
    error: str | None = None


class ScheduleTicker:
    def __init__(self, engine: Engine, *, misfire_grace_s: float = 60.0,
                 pending_grace_s: float = 60.0) -> None:
        self.engine = engine
        self.misfire_grace_s = misfire_grace_s
        self.pending_grace_s = pending_grace_s
        self._crons: dict[tuple[str, str], Cron] = {}

    def cron(self, schedule: Schedule) -> Cron:
        key = (schedule.cron, schedule.timezone)
        cron = self._crons.get(key)
        if cron is None:
            cron = self._crons[key] = Cron.parse(schedule.cron, schedule.timezone)
        return cron

    def next_run_at(self, schedule: Schedule) -> float | None:
        """The first slot after those already claimed."""
        return self.cron(schedule).next_after(schedule.last_slot)

    async def run_all(self) -> list[TickReport]:
        """Run every schedule that has something due (or a pending claim to finish)."""
        reports = []
        for schedule in await self.engine.store.schedule_list():
            report = await self.run_schedule(schedule)
            if report is not None:
                reports.append(report)
        return reports

    async def run(self, name: str) -> TickReport | None:
        schedule = await self.engine.store.schedule_get(name)
        return None if schedule is None else await self.run_schedule(schedule)

    async def run_schedule(self, schedule: Schedule) -> TickReport | None:
        """Claim and enqueue what is due of `schedule` now; None when nothing was (or another
        run claimed it first)."""
        now = self.engine.clock.now()
        if schedule.pending:
            if schedule.pending_at is not None and now - schedule.pending_at < self.pending_grace_s:
                return None  # its claimer is enqueueing them right now
            # Claimed again first, so that of two nodes finding it only one finishes it.
            taken = await self.engine.store.schedule_claim(
                schedule.name, schedule.version, last_slot=schedule.last_slot,
                pending=schedule.pending, at=now)
            if taken is None:
                return None
            log.warning("finishing a claim left pending", extra={
                "event": "schedule_pending_recovered", "schedule": schedule.name,
                "slots": [slot_iso(s) for s in schedule.pending]})
            return await self._enqueue(taken, taken.pending, TickReport(schedule.name))
        if schedule.paused:
            return None
        cron = self.cron(schedule)
        latest = cron.latest(schedule.last_slot, now)
        if latest is None:
            return None
        if now - latest <= self.misfire_grace_s:
            on_time: float | None = latest
            missed = cron.previous(latest, schedule.last_slot)
        else:
            on_time, missed = None, latest
        slots: list[float] = []
        report = TickReport(schedule.name)
        if missed is not None:
            counted = len(cron.slots(schedule.last_slot, missed, MAX_COUNTED))
            if schedule.missed == "catch_up_once":
                slots.append(missed)
                counted -= 1
            report.skipped = counted
        if on_time is not None:
            slots.append(on_time)
        claimed = await self.engine.store.schedule_claim(
            schedule.name, schedule.version, last_slot=latest, pending=tuple(slots), at=now)
        if claimed is None:
            return None
        if report.skipped:
            log.warning("missed schedule slots skipped", extra={
                "event": "schedule_slots_skipped", "schedule": schedule.name,
                "count": report.skipped, "through": slot_iso(missed or latest),
                "policy": schedule.missed})
        if not slots:
            return report
        return await self._enqueue(claimed, claimed.pending, report)

    async def _enqueue(self, schedule: Schedule, slots: tuple[float, ...],
                       report: TickReport) -> TickReport:
        engine, store = self.engine, self.engine.store
        template = JobTemplate.from_json(schedule.template_json)
        try:
            specs = [template.spec(engine.registry, key=tick_key(schedule.name, slot),
                                   tenant_id=schedule.tenant_id, user_id=schedule.user_id)
                     for slot in slots]
            # Any other error (the store closed, the journal broke) propagates and leaves the
            # slots pending: whoever runs the schedule next enqueues them.
            results = await engine.enqueue_many(specs)
        except ValidationError as exc:
            # The template no longer fits the registry: retrying cannot help, so the slots are
            # settled with the reason (shown on the schedule) rather than kept pending.
            report.error = f"{exc.code}: {exc.message}"
            await store.schedule_settle(schedule.name, slots, job_id=None, error=report.error)
            log.error("schedule tick refused", extra={
                "event": "schedule_tick_refused", "schedule": schedule.name,
                "code": exc.code, "error": exc.message})
            return report
        for slot, (job, created) in zip(slots, results, strict=True):
            report.enqueued.append((slot, job.id))
            if not created:
                report.existing += 1
            log.info("schedule tick enqueued", extra={
                "event": "schedule_tick", "schedule": schedule.name, "slot": slot_iso(slot),
                "job_id": job.id, "queue": job.queue, "tenant_id": job.tenant_id,
                "created": created})
        await store.schedule_settle(schedule.name, slots, job_id=results[-1].job.id, error=None)
        return report


__all__ = ["MISSED_POLICIES", "ScheduleTicker", "TickReport", "tick_key"]
