"""Making and removing cron schedules, for the HTTP API and for embedding applications alike.

A schedule is checked whole before it is stored: its name, its crontab expression and time zone
(APScheduler parses the expression; the zone must be an IANA name), its missed-tick policy, and
its job template, which is built once as the engine would build a tick's job (type, queue, data
schema, options). A schedule that could never enqueue a job is refused, not stored.
"""

from __future__ import annotations

import re

from tickq.engine.engine import Engine
from tickq.engine.producer import Enqueued
from tickq.errors import IdempotencyConflictError, NotFoundError, ValidationError
from tickq.scheduling.cron import Cron, CronError, slot_iso
from tickq.scheduling.scheduler import Scheduler
from tickq.scheduling.template import JobTemplate
from tickq.scheduling.ticks import MISSED_POLICIES, tick_key
from tickq.storage.base import Schedule

#: letters, digits, dot, dash and underscore, starting with a letter or digit: it goes into
#: every tick's idempotency key and into URLs
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


class ScheduleExistsError(IdempotencyConflictError):
    """A schedule of that name exists (its name is its unique key, like an idempotency key's;
    HTTP 409). Delete it first to replace it."""

    code = "schedule_exists"


async def create_schedule(engine: Engine, *, name: str, cron: str, template: JobTemplate,
                          timezone: str = "UTC", missed: str = "skip",
                          tenant_id: str | None = None, user_id: str | None = None,
                          scheduler: Scheduler | None = None) -> Schedule:
    """Check and store a new schedule; its first slot is the first one after now. With a
    running `scheduler`, it fires from then on; otherwise the scheduler that syncs next picks
    it up. Raises `ValidationError` (field named) or `ScheduleExistsError`."""
    now = engine.clock.now()
    check_schedule(engine, name=name, cron=cron, timezone=timezone, template=template,
                   missed=missed, tenant_id=tenant_id, user_id=user_id)
    schedule = Schedule(name=name, cron=" ".join(cron.split()), timezone=timezone,
                        template_json=template.to_json(), missed=missed, tenant_id=tenant_id,
                        user_id=user_id, created_at=now, last_slot=now)
    if not await engine.store.schedule_put(schedule):
        raise ScheduleExistsError(f"a schedule named {name!r} exists; delete it first to "
                                  "replace it")
    if scheduler is not None:
        scheduler.watch(schedule)
    return schedule


def check_schedule(engine: Engine, *, name: str, cron: str, timezone: str,
                   template: JobTemplate, missed: str, tenant_id: str | None,
                   user_id: str | None) -> Cron:
    """Everything `create_schedule` checks before storing, as `ValidationError`s naming the
    field: `name`, `cron`, `timezone`, `missedTicks`, or the template's (`type`, `data...`,
    `priority`, ...). Returns the parsed expression."""
    if not _NAME.match(name):
        raise ValidationError(f"schedule name {name[:80]!r} must be 1-64 letters, digits, '.', "
                              "'-' or '_', starting with a letter or digit",
                              code="invalid_schedule_name", field="name")
    if missed not in MISSED_POLICIES:
        raise ValidationError(f"missed-tick policy must be one of {', '.join(MISSED_POLICIES)}",
                              code="invalid_missed_policy", field="missedTicks")
    try:
        parsed = Cron.parse(cron, timezone, now=engine.clock.now())
    except CronError as exc:
        raise ValidationError(exc.message, code=f"invalid_{exc.field}",
                              field=exc.field) from None
    spec = template.spec(engine.registry, key=tick_key(name, engine.clock.now()),
                         tenant_id=tenant_id, user_id=user_id)
    engine.build(spec)  # the engine's own checks of a tick's job: type, data, options
    return parsed


async def delete_schedule(engine: Engine, name: str, *,
                          scheduler: Scheduler | None = None) -> None:
    """Remove a schedule (`NotFoundError` when there is none); jobs it enqueued stay."""
    if not await engine.store.schedule_delete(name):
        raise NotFoundError(f"no schedule named {name[:80]!r}", code="schedule_not_found")
    if scheduler is not None:
        scheduler.forget(name)


async def set_schedule_paused(engine: Engine, name: str, paused: bool) -> Schedule:
    """Pause a schedule (no slot is enqueued until it is resumed) or resume it (from its next
    slot on; those that fell while it was paused are dropped). `NotFoundError` when there is
    no such schedule. Every node sees the change, since it is in the store."""
    changed = await engine.store.schedule_set_paused(name, paused, at=engine.clock.now())
    if changed is None:
        raise NotFoundError(f"no schedule named {name[:80]!r}", code="schedule_not_found")
    return changed


async def run_schedule_now(engine: Engine, name: str) -> Enqueued:
    """Enqueue the job of schedule `name` once, now, outside its slots (an operator's "run
    now"); the schedule's own slots are untouched. The key is `schedule:<name>:now:<second>`,
    so a request sent twice within the same second enqueues one job."""
    schedule = await engine.store.schedule_get(name)
    if schedule is None:
        raise NotFoundError(f"no schedule named {name[:80]!r}", code="schedule_not_found")
    template = JobTemplate.from_json(schedule.template_json)
    spec = template.spec(engine.registry, key=f"schedule:{name}:now:{slot_iso(engine.clock.now())}",
                         tenant_id=schedule.tenant_id, user_id=schedule.user_id)
    [enqueued] = await engine.enqueue_many([spec])
    return enqueued


__all__ = ["NAME_PATTERN", "ScheduleExistsError", "check_schedule", "create_schedule",
           "delete_schedule", "run_schedule_now", "set_schedule_paused"]
