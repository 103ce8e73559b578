"""Maintenance tasks remove exactly what has expired and say how much; the scheduler runs them
on the leader only and holds the engine's retention duty while it runs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from schedkit import T0

from tickq.clock import FakeClock
from tickq.engine.engine import Engine
from tickq.engine.registry import JobType
from tickq.errors import PermanentError
from tickq.scheduling import Maintenance, Scheduler, SchedulerConfig, TaskOutcome
from tickq.scheduling.maintenance import HOUSEKEEPING, KEY_EXPIRY, RETENTION, TELEMETRY
from tickq.storage.base import NewAlert, QueueSnapshot
from tickq.storage.memory import MemoryStore
from tickq.storage.sqlite import SqliteStore

DAY = 86_400.0
LEDGER = JobType(name="ledger-entry", queue="money")
NOTE = JobType(name="bulk-note", queue="communication")


def _refuse(job: Any) -> None:
    raise PermanentError("refused")


@asynccontextmanager
async def sqlite_engine(tmp_path: Path, clock: FakeClock, *, writer: str = "process"
                        ) -> AsyncIterator[Engine]:
    engine = Engine(SqliteStore(str(tmp_path / "tickq.db"), writer=writer), clock=clock,
                    shutdown_grace_s=0.5)
    engine.register(LEDGER, lambda job: {"ok": True})
    engine.register(NOTE, lambda job: {"ok": True})
    engine.register("send-email", lambda job: {"sent": True})
    engine.register("send-push", _refuse)
    await engine.start()
    # What a running scheduler does: the engine's own timer must not prune behind the test.
    engine.prunes_on_timer = False
    try:
        yield engine
    finally:
        await engine.stop()


async def rows(engine: Engine, tmp_path: Path) -> dict[str, str]:
    """The jobs table as the file has it, once what the engine settled is committed."""
    store = engine.store
    assert isinstance(store, SqliteStore)
    await store.journal.flush()
    with sqlite3.connect(tmp_path / "tickq.db") as conn:
        return dict(conn.execute("SELECT id, state FROM jobs").fetchall())


async def test_retention_removes_exactly_the_expired_rows_per_tier_and_counts_them(
        tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with sqlite_engine(tmp_path, clock) as engine:
        paid = await engine.enqueue("ledger-entry", {"amount": 10})
        mailed = await engine.enqueue("send-email", {"to": "fan@example.com",
                                                     "template": "welcome"})
        pushed = await engine.enqueue("send-push", {"userId": "u1", "title": "t", "body": "b"})
        for job in (paid, mailed, pushed):
            await engine.wait(job.id, timeout=5)
        maintenance = Maintenance(engine, SchedulerConfig())
        assert await rows(engine, tmp_path) == {paid.id: "completed", mailed.id: "completed",
                                  pushed.id: "failed"}

        clock.set(T0 + 6 * DAY)
        assert (await maintenance.retention()).counts == {
            "money": 0, "communication": 0, "background": 0}
        clock.set(T0 + 8 * DAY)  # communication keeps completed jobs 7 days
        assert (await maintenance.retention()).counts["communication"] == 1
        assert await rows(engine, tmp_path) == {paid.id: "completed", pushed.id: "failed"}
        clock.set(T0 + 31 * DAY)  # ... and failed ones 30
        assert (await maintenance.retention()).counts == {
            "money": 0, "communication": 1, "background": 0}
        clock.set(T0 + 91 * DAY)  # money keeps completed jobs 90 days
        assert (await maintenance.retention()).counts["money"] == 1
        assert await rows(engine, tmp_path) == {}
        assert (await maintenance.retention()).counts == {
            "money": 0, "communication": 0, "background": 0}


async def test_key_expiry_releases_ended_holds_once_and_counts_them(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with sqlite_engine(tmp_path, clock) as engine:
        first = await engine.enqueue("send-email", {"to": "a@example.com", "template": "x"},
                                     idempotency_key="welcome:1")
        second = await engine.enqueue("send-email", {"to": "b@example.com", "template": "x"},
                                      idempotency_key="welcome:2")
        for job in (first, second):
            await engine.wait(job.id, timeout=5)
        maintenance = Maintenance(engine, SchedulerConfig())
        assert (await maintenance.key_expiry()).counts == {"idempotencyKeys": 0}

        clock.set(T0 + DAY + 60)  # send-email holds its key for a day
        assert (await maintenance.key_expiry()).counts == {"idempotencyKeys": 2}
        assert (await maintenance.key_expiry()).counts == {"idempotencyKeys": 0}
        with sqlite3.connect(tmp_path / "tickq.db") as conn:
            held = conn.execute("SELECT COUNT(*) FROM jobs WHERE key_until IS NOT NULL")
            assert held.fetchone()[0] == 0


async def test_telemetry_retention_prunes_alerts_and_snapshots_past_their_retention() -> None:
    clock = FakeClock(T0)
    engine = Engine(MemoryStore(), clock=clock)
    async with engine:
        store = engine.store
        for days_ago in (10, 6):
            await store.alert_insert(NewAlert(severity="warning", alert_type="queue_depth",
                                              message="deep", created_at=T0 - days_ago * DAY))
        await store.snapshot_insert([
            QueueSnapshot(queue_name="money", waiting_count=1, delayed_count=0,
                          active_count=0, completed_count=0, failed_count=0,
                          captured_at=T0 - days_ago * DAY) for days_ago in (40, 31, 29)])

        outcome = await Maintenance(engine, SchedulerConfig()).telemetry_retention()

        assert outcome.counts == {"metricSnapshots": 2, "alerts": 1}
        assert len(await store.alert_list(limit=10, since=0)) == 1
        assert len(await store.snapshot_list(None, 0, T0 + 1)) == 1


@pytest.mark.parametrize("writer", ["process", "inline"])
async def test_journal_housekeeping_checkpoints_the_wal_and_gives_free_pages_back(
        tmp_path: Path, writer: str) -> None:
    clock = FakeClock(T0)
    wal = tmp_path / "tickq.db-wal"
    async with sqlite_engine(tmp_path, clock, writer=writer) as engine:
        await engine.pause("communication")
        for _ in range(10):
            await engine.enqueue_many([_note() for _ in range(50)])
        assert wal.stat().st_size > 0
        assert await engine.clear("communication") == (500, 0)
        clock.set(T0 + 31 * DAY)  # cancelled jobs are kept 30 days
        maintenance = Maintenance(engine, SchedulerConfig(vacuum_pages=100_000))
        assert (await maintenance.retention()).counts["communication"] == 500
        assert [t.name for t in maintenance.tasks()][-1] == HOUSEKEEPING

        outcome = await maintenance.journal_housekeeping()

        assert outcome.counts["walFrames"] > 0 and outcome.counts["freePages"] > 0
        assert outcome.details["incrementalVacuum"] is True
        assert outcome.details["walCheckpointBusy"] is False
        assert outcome.details["freePagesLeft"] == 0
        assert wal.stat().st_size == 0
        # the journal goes on working after it
        job = await engine.enqueue("ledger-entry", {"amount": 1})
        assert (await engine.wait(job.id, timeout=5)).state.value == "completed"


def _note() -> Any:
    from tickq.engine.producer import JobSpec

    return JobSpec(type="bulk-note", data={"text": "x" * 2000})


async def test_a_store_without_a_journal_has_no_housekeeping_task() -> None:
    async with Engine(MemoryStore()) as engine:
        names = [t.name for t in Maintenance(engine, SchedulerConfig()).tasks()]
    assert names == [RETENTION, KEY_EXPIRY, TELEMETRY]


async def test_a_scheduler_holds_the_retention_duty_only_while_it_runs() -> None:
    clock = FakeClock(T0)
    async with Engine(MemoryStore(), clock=clock) as engine:
        assert engine.prunes_on_timer
        scheduler = Scheduler(engine, SchedulerConfig(retention_interval_s=0.05))
        async with scheduler:
            assert not engine.prunes_on_timer
            for _ in range(200):  # APScheduler fires on real time: wait for its first run
                if scheduler.runs.last(RETENTION) is not None:
                    break
                await asyncio.sleep(0.025)
            run = scheduler.runs.last(RETENTION)
            assert run is not None and run.outcome == "ok"
            assert scheduler.next_run_at(RETENTION) is not None
        assert engine.prunes_on_timer and not scheduler.running


async def test_a_node_that_does_not_lead_skips_every_run() -> None:
    leading = False

    async def is_leader() -> bool:
        return leading

    async with Engine(MemoryStore(), clock=FakeClock(T0)) as engine:
        scheduler = Scheduler(engine, is_leader=is_leader)
        skipped = await scheduler.run_task(RETENTION)
        leading = True
        done = await scheduler.run_task(RETENTION)
    assert (skipped.outcome, skipped.reason, skipped.counts) == (
        "skipped", "this node is not the leader", {})
    assert done.outcome == "ok"
    assert [r.outcome for r in scheduler.runs.latest(10, RETENTION)] == ["ok", "skipped"]


async def test_each_run_is_recorded_and_logged_with_its_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> TaskOutcome:
        raise RuntimeError("disk on fire")

    async def counts() -> TaskOutcome:
        return TaskOutcome({"widgets": 3})

    async with Engine(MemoryStore(), clock=FakeClock(T0)) as engine:
        scheduler = Scheduler(engine)
        scheduler.add_task("widgets", counts, 3600)
        scheduler.add_task("fragile", fails, 3600)
        with caplog.at_level(logging.INFO, logger="tickq.scheduling"):
            ok = await scheduler.run_task("widgets")
            failed = await scheduler.run_task("fragile")

    assert (ok.outcome, dict(ok.counts)) == ("ok", {"widgets": 3})
    assert failed.outcome == "failed" and failed.error == "RuntimeError: disk on fire"
    [logged] = [r for r in caplog.records if getattr(r, "event", None) == "maintenance_run"]
    assert (getattr(logged, "task", None), getattr(logged, "counts", None)) == (
        "widgets", {"widgets": 3})
    assert any(getattr(r, "event", None) == "maintenance_failed" for r in caplog.records)
    assert [r.task for r in scheduler.runs.latest(5)] == ["fragile", "widgets"]
