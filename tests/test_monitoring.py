"""The monitor loop over a live engine: breaches become alerts once per cooldown window, every
check leaves snapshots, alerts and cooldowns outlive a restart, followers stay quiet, retention
removes exactly what expired. Time is a fake clock; the checks are called, not waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import tickq
from tickq.clock import FakeClock
from tickq.errors import PermanentError, StoreClosedError
from tickq.monitoring import MonitorService, prune_monitor_data
from tickq.settings import load_settings
from tickq.storage.base import AlertRecord, NewAlert, QueueSnapshot
from tickq.storage.memory import MemoryStore

T0 = 1_800_000_000.0
MIN, HOUR, DAY = 60.0, 3600.0, 86_400.0


def payment(n: int) -> tickq.JobSpec:
    return tickq.JobSpec(type="payment-process", data={
        "userId": f"u{n}", "venueId": "v1", "eventId": "e1", "amount": 1000 + n,
        "paymentMethod": "pm_card_visa"}, tenant_id="t1")


class Counted:
    """A stand-in for `Metrics.alert_sent` that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, severity: str, alert_type: str, channel: str) -> None:
        self.calls.append((severity, alert_type, channel))


@asynccontextmanager
async def monitored(url: str, clock: FakeClock, env: Mapping[str, str] | None = None,
                    **options: object) -> AsyncIterator[MonitorService]:
    """A started engine on `url` (money paused, so its jobs stay waiting) and a monitor made
    from `env`, not looping: tests call `tick`/`check_once` themselves."""
    settings = load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": url, **(env or {})})
    engine = tickq.Engine(tickq.open_store(url), clock=clock, shutdown_grace_s=0.5)
    engine.register("send-push", _refuse)
    await engine.start()
    await engine.pause("money")
    service = MonitorService.from_settings(settings, engine, **options)  # type: ignore[arg-type]
    try:
        yield service
    finally:
        await service.stop()
        await engine.stop()


def _refuse(job: tickq.Job) -> None:
    raise PermanentError("the push gateway refused the token")


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/tickq.db"


async def test_a_money_backlog_alerts_once_per_five_minutes(url: str) -> None:
    clock = FakeClock(T0)
    counted = Counted()
    async with monitored(url, clock, {"ALERT_THRESHOLD_MONEY_QUEUE": "2"},
                         count=counted) as service:
        engine = service.engine
        await engine.enqueue_many([payment(i) for i in range(3)])

        [raised] = await service.check_once()
        alert = raised.alert
        assert (alert.severity, alert.alert_type, alert.queue_name, alert.metric_value,
                alert.threshold_value) == ("critical", "queue_depth", "money", 3.0, 2.0)
        assert alert.message == "CRITICAL: Money queue has 3 jobs waiting (threshold 2)"
        # Nothing is configured for delivery: recorded as such, nothing enqueued.
        assert dict(alert.channels) == {"log": "logged", "stored": "stored",
                                        "webhook": "not_configured",
                                        "email": "not_configured", "sms": "not_configured"}
        assert "ADMIN_WEBHOOK_URL" in (raised.channels["webhook"].reason or "")
        assert (await engine.counts("communication")).waiting == 0
        assert counted.calls == [("critical", "queue_depth", "log"),
                                 ("critical", "queue_depth", "stored")]

        clock.advance(5 * MIN - 1)
        assert await service.check_once() == []
        clock.advance(1)
        assert [r.alert.alert_type for r in await service.check_once()] == ["queue_depth"]
        stored = await engine.store.alert_list()
        assert [a.created_at for a in stored] == [T0 + 5 * MIN, T0]
        # Three checks, one snapshot per queue each.
        snaps = await engine.store.snapshot_list(None, T0, T0 + HOUR)
        assert len(snaps) == 9
        money = [s for s in snaps if s.queue_name == "money"]
        assert [(s.waiting_count, s.delayed_count, s.captured_at) for s in money] == [
            (3, 0, T0), (3, 0, T0 + 5 * MIN - 1), (3, 0, T0 + 5 * MIN)]
        assert money[-1].oldest_age_s == 5 * MIN


async def test_the_oldest_waiting_job_alerts_after_ten_minutes() -> None:
    clock = FakeClock(T0)
    async with monitored("memory://", clock) as service:
        await service.engine.enqueue_many([payment(1)])
        clock.advance(10 * MIN)
        assert await service.check_once() == []
        clock.advance(1)
        [raised] = await service.check_once()
        assert (raised.alert.alert_type, raised.alert.metric_value,
                raised.alert.threshold_value) == ("job_age", 10 * MIN + 1, 10 * MIN)
        # Delayed jobs are not a backlog: neither counted nor aged before their time.
        await service.engine.enqueue_many([tickq.JobSpec(
            type="send-email", data={"to": "a@example.com", "template": "welcome"},
            delay_s=DAY)])
        [sample] = [s for s in await service.sample() if s.queue == "communication"]
        assert (sample.due, sample.delayed, sample.oldest_due_at) == (0, 1, None)


async def test_dead_letter_jobs_raise_a_warning_once_an_hour() -> None:
    clock = FakeClock(T0)
    env = {"ALERT_THRESHOLD_COMM_FAILURES": "0"}
    async with monitored("memory://", clock, env) as service:
        engine = service.engine
        job = await engine.enqueue("send-push", {"userId": "u1", "title": "t", "body": "b"})
        assert (await engine.wait(job.id, timeout=5)).state is tickq.JobState.FAILED

        [raised] = await service.check_once()
        assert (raised.alert.severity, raised.alert.alert_type, raised.alert.queue_name) == (
            "warning", "high_failures", "communication")
        clock.advance(HOUR - 1)
        assert await service.check_once() == []
        clock.advance(1)
        assert len(await service.check_once()) == 1


async def test_alerts_snapshots_and_cooldowns_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tickq.db"
    clock = FakeClock(T0)
    env = {"ALERT_THRESHOLD_MONEY_QUEUE": "0"}
    async with monitored(url, clock, env) as service:
        await service.engine.enqueue_many([payment(1)])
        [first] = await service.tick()
        ack = await service.engine.store.alert_acknowledge(first.alert.id, "u9", T0 + 1)
        assert ack is not None

    clock.advance(MIN)
    async with monitored(url, clock, env) as service:
        store = service.engine.store
        assert await store.alert_get(first.alert.id) == ack
        assert len(await store.snapshot_list(None, T0, T0 + HOUR)) == 3
        # The restarted monitor knows the alert of a minute ago: its cooldown still runs.
        assert await service.tick() == []
        clock.advance(4 * MIN)
        [again] = await service.tick()
        assert again.alert.id > first.alert.id
        assert len(await store.snapshot_list("money", T0, T0 + HOUR)) == 3


async def test_a_follower_neither_checks_nor_alerts_until_it_leads() -> None:
    clock = FakeClock(T0)
    leading = False

    async def is_leader() -> bool:
        return leading

    async with monitored("memory://", clock, {"ALERT_THRESHOLD_MONEY_QUEUE": "0"},
                         is_leader=is_leader) as service:
        store = service.engine.store
        await service.engine.enqueue_many([payment(1)])
        # Another node raised this one a minute ago.
        await store.alert_insert(NewAlert(severity="critical", alert_type="queue_depth",
                                          message="earlier", queue_name="money",
                                          created_at=T0 - MIN))
        assert await service.tick() == []
        assert await store.snapshot_list(None, 0, T0 + DAY) == []

        leading = True
        assert await service.tick() == []  # leads now, but the earlier alert's window runs
        assert len(await store.snapshot_list(None, 0, T0 + DAY)) == 3
        clock.advance(4 * MIN)
        assert len(await service.tick()) == 1


async def test_retention_removes_exactly_the_expired_rows(url: str) -> None:
    clock = FakeClock(T0)
    async with monitored(url, clock) as service:
        store = service.engine.store
        for age in (8 * DAY, 7 * DAY + 1, 7 * DAY, DAY):
            await store.alert_insert(NewAlert(severity="info", alert_type="queue_depth",
                                              message=f"{age}", created_at=T0 - age))
        await store.snapshot_insert([
            QueueSnapshot(queue_name="money", waiting_count=1, delayed_count=0,
                          active_count=0, completed_count=0, failed_count=0,
                          captured_at=T0 - age)
            for age in (31 * DAY, 30 * DAY + 1, 30 * DAY, 29 * DAY)])

        assert await service.retention() == {"snapshots": 2, "alerts": 2}
        assert [a.message for a in await store.alert_list(since=0)] == [
            f"{DAY}", f"{7 * DAY}"]
        assert [T0 - s.captured_at for s in await store.snapshot_list(None, 0, T0)] == [
            30 * DAY, 29 * DAY]
        assert await prune_monitor_data(service.engine) == {"snapshots": 0, "alerts": 0}


async def test_the_loop_checks_every_interval_and_stops_cleanly() -> None:
    clock = FakeClock(T0)
    async with monitored("memory://", clock) as service:
        service.interval_s = 0.02
        await service.start()
        await service.start()  # idempotent
        deadline = time.monotonic() + 5
        while service.checks < 3:
            assert time.monotonic() < deadline, "the monitor did not keep checking"
            await asyncio.sleep(0.01)
        await service.stop()
        done = service.checks
        await asyncio.sleep(0.06)
        assert service.checks == done
        await service.stop()  # idempotent


def test_thresholds_come_from_the_settings() -> None:
    from tickq.monitoring import thresholds_from_settings

    settings = load_settings({"TICKQ_DATABASE_URL": "memory://",
                              "ALERT_THRESHOLD_MONEY_QUEUE": "7",
                              "ALERT_THRESHOLD_MONEY_AGE_MINUTES": "2.5",
                              "ALERT_THRESHOLD_COMM_QUEUE": "70",
                              "ALERT_THRESHOLD_BACKGROUND_QUEUE": "700",
                              "ALERT_THRESHOLD_BACKGROUND_FAILURES": "3"})
    t = thresholds_from_settings(settings)
    assert (t["money"].depth, t["money"].age_s, t["money"].failures) == (7, 150.0, 10)
    assert (t["communication"].depth, t["communication"].age_s) == (70, 30 * MIN)
    assert (t["background"].depth, t["background"].failures) == (700, 3)
    assert settings.monitor_interval_s == 30.0


class FlakyAlertStore(MemoryStore):
    """A memory store whose first alert write fails, as a store error would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def alert_insert(self, alert: NewAlert) -> AlertRecord:
        if self.failures:
            self.failures -= 1
            raise StoreClosedError("the store is not open")
        return await super().alert_insert(alert)


async def test_an_alert_that_could_not_be_stored_is_raised_at_the_next_check() -> None:
    clock = FakeClock(T0)
    settings = load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://",
                              "ALERT_THRESHOLD_MONEY_QUEUE": "0"})
    engine = tickq.Engine(FlakyAlertStore(), clock=clock, shutdown_grace_s=0.5)
    async with engine:
        await engine.pause("money")
        await engine.enqueue_many([payment(1)])
        service = MonitorService.from_settings(settings, engine)
        assert await service.check_once() == []
        clock.advance(1)
        [raised] = await service.check_once()
        assert raised.alert.created_at == T0 + 1
        assert await service.check_once() == []
