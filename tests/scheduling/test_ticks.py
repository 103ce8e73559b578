"""Cron ticks: once per slot across restarts and nodes, missed-tick policies, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from schedkit import EMAIL, HOUR, T0, at, engine_on, tick_jobs

from tickq.clock import FakeClock
from tickq.engine.registry import JobType
from tickq.errors import NotFoundError, ValidationError
from tickq.scheduling import (
    SCHEDULES,
    JobTemplate,
    ScheduleExistsError,
    Scheduler,
    ScheduleTicker,
    create_schedule,
    tick_key,
)
from tickq.scheduling.schedules import set_schedule_paused


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/tickq.db"


async def test_cron_ticks_across_a_restart_are_never_enqueued_twice(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with engine_on(url(tmp_path), clock) as engine:
        await create_schedule(engine, name="digest", cron="0 * * * *", template=EMAIL)
        ticker = ScheduleTicker(engine)
        clock.set(T0 + HOUR + 5)
        [report] = await ticker.run_all()
        assert [slot for slot, _ in report.enqueued] == [T0 + HOUR]
        assert await ticker.run_all() == []
        first = await tick_jobs(engine)
    assert list(first) == [tick_key("digest", T0 + HOUR)]

    clock.set(T0 + HOUR + 30)  # restarted within the same slot: nothing new is due
    async with engine_on(url(tmp_path), clock) as engine:
        ticker = ScheduleTicker(engine)
        assert await ticker.run_all() == []
        clock.set(T0 + 2 * HOUR + 1)
        assert len(await ticker.run_all()) == 1
        assert await ticker.run_all() == []
        jobs = await tick_jobs(engine)
        schedule = await engine.store.schedule_get("digest")
    assert jobs == {**first, tick_key("digest", T0 + 2 * HOUR): jobs[tick_key(
        "digest", T0 + 2 * HOUR)]}
    assert schedule is not None and schedule.last_job_id == jobs[tick_key("digest",
                                                                          T0 + 2 * HOUR)]


@pytest.mark.parametrize("enqueued_before_the_crash", [False, True])
async def test_a_slot_claimed_by_a_node_that_died_is_enqueued_once_after_the_grace(
        tmp_path: Path, enqueued_before_the_crash: bool) -> None:
    clock = FakeClock(T0)
    slot = T0 + HOUR
    async with engine_on(url(tmp_path), clock) as engine:
        made = await create_schedule(engine, name="digest", cron="0 * * * *", template=EMAIL)
        clock.set(slot + 1)
        # What a node leaves when it dies between its claim and its settle:
        await engine.store.schedule_claim("digest", made.version, last_slot=slot,
                                          pending=(slot,), at=clock.now())
        if enqueued_before_the_crash:
            await engine.enqueue_many([EMAIL.spec(engine.registry, key=tick_key("digest", slot),
                                                  tenant_id=None, user_id=None)])

    async with engine_on(url(tmp_path), clock) as engine:
        ticker, other_node = (ScheduleTicker(engine, pending_grace_s=60),
                              ScheduleTicker(engine, pending_grace_s=60))
        clock.set(slot + 30)
        assert await ticker.run("digest") is None  # its claimer may still be enqueueing
        clock.set(slot + 62)
        report, other = await asyncio.gather(ticker.run("digest"), other_node.run("digest"))
        assert other is None  # of two nodes finding it, one finishes it
        assert report is not None and [s for s, _ in report.enqueued] == [slot]
        assert report.existing == (1 if enqueued_before_the_crash else 0)
        assert await ticker.run("digest") is None
        assert list(await tick_jobs(engine)) == [tick_key("digest", slot)]
        schedule = await engine.store.schedule_get("digest")
    assert schedule is not None and schedule.pending == ()


async def test_two_nodes_on_one_schedule_store_enqueue_one_job_per_slot(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with engine_on(url(tmp_path), clock) as engine:
        node_a, node_b = Scheduler(engine), Scheduler(engine)
        await create_schedule(engine, name="sweep", cron="*/15 * * * *", template=EMAIL)
        for i in range(1, 9):
            clock.set(T0 + 900 * i + 1)
            runs = await asyncio.gather(node_a.run_task(SCHEDULES), node_b.run_task(SCHEDULES))
            assert sorted(r.counts["enqueued"] for r in runs) == [0, 1]

        # A node working from a record read before the other node claimed finds it moved.
        stale = await engine.store.schedule_get("sweep")
        assert stale is not None
        clock.set(T0 + 900 * 9 + 1)
        assert await node_a.ticker.run_schedule(stale) is not None
        assert await node_b.ticker.run_schedule(stale) is None
        jobs = await tick_jobs(engine)
    assert sorted(jobs) == sorted(tick_key("sweep", T0 + 900 * i) for i in range(1, 10))


@pytest.mark.parametrize(("policy", "now", "slots", "skipped"), [
    # down from 08:00 to 13:30: 09:00 to 13:00 were missed
    ("skip", "2026-01-05T13:30:00", [], 5),
    ("catch_up_once", "2026-01-05T13:30:00", ["13:00"], 4),
    # back at 13:00:10: 13:00 is on time, 09:00 to 12:00 were missed
    ("skip", "2026-01-05T13:00:10", ["13:00"], 4),
    ("catch_up_once", "2026-01-05T13:00:10", ["12:00", "13:00"], 3),
])
async def test_on_start_slots_missed_while_down_follow_the_schedules_policy(
        tmp_path: Path, policy: str, now: str, slots: list[str], skipped: int) -> None:
    clock = FakeClock(T0)
    async with engine_on(url(tmp_path), clock) as engine:
        await create_schedule(engine, name="digest", cron="0 * * * *", template=EMAIL,
                              missed=policy)
    clock.set(at(now))

    async with engine_on(url(tmp_path), clock) as engine, Scheduler(engine) as scheduler:
        jobs = await tick_jobs(engine)
        run = scheduler.runs.last(SCHEDULES)
        schedule = await engine.store.schedule_get("digest")

    assert sorted(jobs) == [tick_key("digest", at(f"2026-01-05T{s}:00")) for s in slots]
    assert run is not None and run.outcome == "ok"
    assert (run.counts["enqueued"], run.counts["skipped"]) == (len(slots), skipped)
    assert schedule is not None and schedule.last_slot == at("2026-01-05T13:00:00")


async def test_a_template_the_registry_no_longer_accepts_is_settled_with_its_reason() -> None:
    clock = FakeClock(T0)
    async with engine_on("memory://", clock) as engine:
        engine.register(JobType(name="digest-mail", queue="communication"), lambda job: None)
        template = JobTemplate(queue="communication", type="digest-mail", data={})
        await create_schedule(engine, name="digest", cron="0 * * * *", template=template)
        engine.registry.add_type(JobType(name="digest-mail", queue="background"), replace=True)
        clock.set(T0 + HOUR + 1)

        report = await ScheduleTicker(engine).run("digest")
        schedule = await engine.store.schedule_get("digest")
        jobs = await tick_jobs(engine)

    assert report is not None and report.enqueued == []
    assert report.error is not None and report.error.startswith("queue_mismatch")
    assert schedule is not None and schedule.pending == ()
    assert schedule.last_error == report.error and jobs == {}


@pytest.mark.parametrize(("change", "field"), [
    ({"name": "no spaces please"}, "name"),
    ({"cron": "0 25 * * *"}, "cron"),
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"missed": "sometimes"}, "missedTicks"),
    ({"template": JobTemplate(queue="communication", type="no-such-type", data={})}, "type"),
    ({"template": JobTemplate(queue="communication", type="send-email", data={})}, "data"),
    ({"template": JobTemplate(queue="money", type="send-email", data={})}, "type"),
])
async def test_a_schedule_that_could_never_enqueue_is_refused_naming_the_field(
        change: dict[str, object], field: str) -> None:
    async with engine_on("memory://", FakeClock(T0)) as engine:
        options: dict[str, object] = {"name": "digest", "cron": "0 * * * *",
                                      "template": EMAIL, **change}
        with pytest.raises(ValidationError) as info:
            await create_schedule(engine, **options)  # type: ignore[arg-type]
        assert info.value.field == field
        assert await engine.store.schedule_list() == []


async def test_a_second_schedule_of_the_same_name_is_refused() -> None:
    async with engine_on("memory://", FakeClock(T0)) as engine:
        first = await create_schedule(engine, name="digest", cron="0 * * * *", template=EMAIL)
        with pytest.raises(ScheduleExistsError):
            await create_schedule(engine, name="digest", cron="*/5 * * * *", template=EMAIL)
        assert await engine.store.schedule_list() == [first]


async def test_a_tick_is_an_ordinary_job_with_the_templates_options() -> None:
    clock = FakeClock(T0)
    template = JobTemplate(queue="communication", type="send-email", priority=9, attempts=2,
                           delay_ms=30_000, data={"to": "ops@example.com", "template": "x"})
    async with engine_on("memory://", clock) as engine:
        await create_schedule(engine, name="digest", cron="0 * * * *", template=template,
                              tenant_id="t1", user_id="u1")
        clock.set(T0 + HOUR)
        report = await ScheduleTicker(engine).run("digest")
        assert report is not None
        job = await engine.get(report.enqueued[0][1])
    assert job is not None
    assert (job.priority, job.max_attempts, job.run_at, job.tenant_id, job.user_id) == (
        9, 2, T0 + HOUR + 30, "t1", "u1")
    assert job.idempotency_key == "schedule:digest:2026-01-05T09:00:00Z"


async def test_a_paused_schedule_enqueues_nothing_and_resumes_from_its_next_slot(
        tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with engine_on(url(tmp_path), clock) as engine:
        await create_schedule(engine, name="digest", cron="0 * * * *", template=EMAIL,
                              missed="catch_up_once")
        ticker = ScheduleTicker(engine)
        await set_schedule_paused(engine, "digest", True)
        clock.set(T0 + 3 * HOUR + 5)
        assert await ticker.run_all() == []
        assert await tick_jobs(engine) == {}
        await set_schedule_paused(engine, "digest", False)
        assert await ticker.run_all() == []  # the slots that fell while paused are dropped
        clock.set(T0 + 4 * HOUR + 5)
        [report] = await ticker.run_all()
        assert [slot for slot, _ in report.enqueued] == [T0 + 4 * HOUR]
        with pytest.raises(NotFoundError):
            await set_schedule_paused(engine, "nope", True)
