"""The running engine: background dispatcher, settler and maintenance on a real event loop.

Every test starts an engine with `tickq.open` (or `tickq.Engine` when it must subscribe or register
before the start), registers its own job types with a fast fixed backoff, and bounds every wait.
Most run over both `memory://` and a SQLite journal in `tmp_path`; the ones about what survives a
restart run over SQLite alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import FAST, EventLog, engine_on, eventually, running, sqlite_url

import tickq
from tickq.engine.jobtypes import BUILTIN_TYPES
from tickq.errors import JobTimeoutError

WAITING, ACTIVE, COMPLETED, FAILED, CANCELLED = (
    tickq.JobState.WAITING, tickq.JobState.ACTIVE, tickq.JobState.COMPLETED,
    tickq.JobState.FAILED, tickq.JobState.CANCELLED)
Kind = tickq.EventKind

PAYMENT = {"userId": "u-1", "venueId": "v-1", "eventId": "e-1", "amount": 2500,
           "paymentMethod": "pm_card_visa"}


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else sqlite_url(tmp_path)


def db_row(tmp_path: Path, job_id: str) -> tuple[Any, ...]:
    """A job's journal row, read with a plain connection (what a crash would leave behind)."""
    conn = sqlite3.connect(tmp_path / "tickq.db")
    try:
        row = conn.execute("SELECT state, attempts FROM jobs WHERE id=?", (job_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"job {job_id} has no row in the journal"
    return tuple(row)


# --- dispatch ------------------------------------------------------------------------------


async def test_per_queue_concurrency_caps_running_processors_while_other_queues_run(
        url: str) -> None:
    gate = asyncio.Event()
    now_running = 0
    peak = 0

    async with running(url, concurrency={"communication": 3}) as engine:
        @engine.processor("slow-send", queue="communication", backoff=FAST)
        async def slow_send(job: tickq.Job) -> int:
            nonlocal now_running, peak
            now_running += 1
            peak = max(peak, now_running)
            try:
                await gate.wait()
            finally:
                now_running -= 1
            return int(job.data["n"])

        @engine.processor("tally", queue="background", backoff=FAST)
        async def tally(job: tickq.Job) -> str:
            return "counted"

        sends = [await engine.enqueue("slow-send", {"n": i}) for i in range(10)]
        await eventually(lambda: now_running == 3, what="three sends running")

        # The communication queue is full; the background queue is not held up by it.
        other = await engine.wait((await engine.enqueue("tally", {})).id, timeout=5)
        assert other.state is COMPLETED
        assert other.result == "counted"
        await asyncio.sleep(0.1)
        assert now_running == 3
        assert peak == 3

        gate.set()
        done = [await engine.wait(j.id, timeout=5) for j in sends]

    assert [j.state for j in done] == [COMPLETED] * 10
    assert sorted(j.result for j in done) == list(range(10))
    assert peak == 3


async def test_dispatch_runs_jobs_by_priority_then_run_at_then_id(url: str) -> None:
    order: list[str] = []

    async with running(url, concurrency={"communication": 1}) as engine:
        @engine.processor("ordered", queue="communication", backoff=FAST)
        async def ordered(job: tickq.Job) -> None:
            order.append(job.data["name"])

        await engine.pause("communication")
        # Oldest id, but the latest run_at of the priority-5 jobs.
        late = await engine.enqueue("ordered", {"name": "p5-late"}, priority=5, delay_s=0.2)
        # One batch: one run_at, ids in enqueue order.
        batch = [e.job for e in await engine.enqueue_many(
            [tickq.JobSpec(type="ordered", data={"name": f"p5-{c}"}, priority=5) for c in "abc"])]
        low = await engine.enqueue("ordered", {"name": "p1"}, priority=1)
        top = await engine.enqueue("ordered", {"name": "p10"}, priority=10)
        mid = await engine.enqueue("ordered", {"name": "p7"}, priority=7)
        jobs = [late, *batch, low, top, mid]

        assert len({j.run_at for j in batch}) == 1
        assert [j.id for j in batch] == sorted(j.id for j in batch)
        assert late.id < batch[0].id and late.run_at > batch[0].run_at

        await asyncio.sleep(0.25)  # every job is due now, the delayed one too
        assert order == []
        await engine.resume("communication")
        for job in jobs:
            assert (await engine.wait(job.id, timeout=5)).state is COMPLETED

    assert order == ["p10", "p7", "p5-a", "p5-b", "p5-c", "p5-late", "p1"]


async def test_delayed_job_does_not_start_before_its_time_and_starts_after_it(url: str) -> None:
    started: list[float] = []

    async with running(url) as engine:
        @engine.processor("later", queue="communication", backoff=FAST)
        async def later(job: tickq.Job) -> None:
            started.append(time.time())

        t0 = time.time()
        job = await engine.enqueue("later", {}, delay_s=0.3)
        assert job.run_at >= t0 + 0.3 - 0.001

        await asyncio.sleep(0.15)
        assert started == []
        early = await engine.get(job.id)
        assert early is not None and early.state is WAITING and early.attempts == 0
        assert (await engine.counts("communication")).delayed == 1

        done = await engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED
    assert len(started) == 1
    assert started[0] >= job.run_at
    assert started[0] - job.run_at < 1.5  # picked up when due, not at some later sweep


# --- retries and the dead-letter queue -------------------------------------------------------


async def test_retryable_error_twice_then_success_completes_on_third_attempt(url: str) -> None:
    calls: list[int] = []

    async with running(url) as engine:
        @engine.processor("flaky", queue="communication", max_attempts=5, backoff=FAST)
        async def flaky(job: tickq.Job) -> str:
            calls.append(job.attempts)
            if len(calls) <= 2:
                raise tickq.RetryableError(f"try {len(calls)}", code="upstream_503")
            return "ok"

        job = await engine.enqueue("flaky", {})
        done = await engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED
    assert done.result == "ok"
    assert done.attempts == 3
    assert calls == [1, 2, 3]
    errors = done.errors
    assert len(errors) == 2
    assert [e.attempt for e in errors] == [1, 2]
    assert [e.type for e in errors] == ["RetryableError", "RetryableError"]
    assert [e.code for e in errors] == ["upstream_503", "upstream_503"]
    assert [e.message for e in errors] == ["try 1", "try 2"]


async def test_unknown_exception_is_retried(url: str) -> None:
    calls = 0

    async with running(url) as engine:
        @engine.processor("buggy-once", queue="communication", max_attempts=3, backoff=FAST)
        async def buggy_once(job: tickq.Job) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ValueError("bad value")
            return calls

        job = await engine.enqueue("buggy-once", {})
        done = await engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED
    assert done.attempts == 2
    assert done.result == 2
    assert [(e.attempt, e.type, e.message) for e in done.errors] == [(1, "ValueError", "bad value")]


async def test_permanent_error_goes_straight_to_failed_with_its_code(url: str) -> None:
    calls = 0
    log = EventLog()

    async with running(url) as engine:
        engine.events.subscribe(log)

        @engine.processor("declined", queue="money", max_attempts=5, backoff=FAST)
        async def declined(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1
            raise tickq.PermanentError("card declined", code="card_declined")

        job = await engine.enqueue("declined", {})
        done = await engine.wait(job.id, timeout=5)
        await asyncio.sleep(0.05)  # a retry, if one were scheduled, would run by now

    assert calls == 1
    assert done.state is FAILED
    assert done.attempts == 1
    assert len(done.errors) == 1
    assert done.errors[0].code == "card_declined"
    assert done.errors[0].type == "PermanentError"
    assert [e.reason for e in log.of(Kind.FAILED, job.id)] == ["permanent"]
    assert log.of(Kind.RETRIED, job.id) == []


async def test_exhausting_max_attempts_ends_in_failed(url: str) -> None:
    calls = 0
    log = EventLog()

    async with running(url) as engine:
        engine.events.subscribe(log)

        @engine.processor("always-down", queue="communication", max_attempts=3, backoff=FAST)
        async def always_down(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1
            raise tickq.RetryableError("still down")

        job = await engine.enqueue("always-down", {})
        done = await engine.wait(job.id, timeout=5)
        await asyncio.sleep(0.05)

    assert calls == 3
    assert done.state is FAILED
    assert done.attempts == 3 == done.max_attempts
    assert [e.attempt for e in done.errors] == [1, 2, 3]
    assert len(log.of(Kind.RETRIED, job.id)) == 2
    assert [e.reason for e in log.of(Kind.FAILED, job.id)] == ["exhausted"]


async def test_retry_of_a_failed_job_puts_it_back_and_keeps_its_error_history(url: str) -> None:
    broken = True
    calls = 0

    async with running(url) as engine:
        @engine.processor("needs-fix", queue="communication", max_attempts=2, backoff=FAST)
        async def needs_fix(job: tickq.Job) -> str:
            nonlocal calls
            calls += 1
            if broken:
                raise tickq.RetryableError("dependency missing")
            return "fixed"

        job = await engine.enqueue("needs-fix", {})
        failed = await engine.wait(job.id, timeout=5)
        assert failed.state is FAILED
        assert len(failed.errors) == 2

        broken = False
        revived = await engine.retry(job.id)
        assert revived.state is WAITING
        assert revived.attempts == 2
        assert revived.max_attempts > revived.attempts
        done = await engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED
    assert done.result == "fixed"
    assert calls == 3
    assert done.attempts == 3
    assert [(e.attempt, e.message) for e in done.errors] == [
        (1, "dependency missing"), (2, "dependency missing")]


# --- deferral, timeouts, cancellation --------------------------------------------------------


async def test_rate_limited_defers_without_spending_an_attempt(url: str) -> None:
    runs: list[float] = []
    log = EventLog()

    async with running(url) as engine:
        engine.events.subscribe(log)

        # One attempt only: had a deferral spent one, the job would end in failed.
        @engine.processor("throttled", queue="communication", max_attempts=1, backoff=FAST)
        async def throttled(job: tickq.Job) -> int:
            runs.append(time.monotonic())
            if len(runs) <= 2:
                raise tickq.RateLimited(retry_after=0.05)
            return job.attempts

        job = await engine.enqueue("throttled", {})
        done = await engine.wait(job.id, timeout=5)

    assert len(runs) == 3
    assert done.state is COMPLETED
    assert done.attempts == 1
    assert done.result == 1  # the attempt the processor saw on its real run
    assert done.errors == []
    deferred = log.of(Kind.DEFERRED, job.id)
    assert [e.reason for e in deferred] == ["rate_limited", "rate_limited"]
    assert all(e.job.attempts == 0 for e in deferred)
    assert log.of(Kind.RETRIED, job.id) == []
    # retry_after is honoured (the watchdog-free path: the job is re-queued with a run_at)
    assert runs[1] - runs[0] >= 0.04 and runs[2] - runs[1] >= 0.04


async def test_timeout_interrupts_the_processor_and_fails_on_the_last_attempt(url: str) -> None:
    interrupted: list[int] = []
    reconcile: list[bool] = []

    async with running(url) as engine:
        @engine.processor("sleepy", queue="communication", timeout_s=0.1, max_attempts=2,
                          backoff=FAST)
        async def sleepy(job: tickq.Job) -> None:
            reconcile.append(job.needs_reconcile)
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                interrupted.append(job.attempts)
                raise

        t0 = time.monotonic()
        job = await engine.enqueue("sleepy", {})
        done = await engine.wait(job.id, timeout=5)
        elapsed = time.monotonic() - t0

    assert interrupted == [1, 2]
    assert done.state is FAILED
    assert done.attempts == 2
    assert [(e.attempt, e.code) for e in done.errors] == [(1, "timeout"), (2, "timeout")]
    # A timed-out attempt may have had its effect: the next one is told to reconcile first.
    assert reconcile == [False, True]
    assert elapsed < 2.0


async def test_cancel_interrupts_a_running_job_cooperatively(url: str) -> None:
    started = asyncio.Event()
    saw_cancel: list[int] = []

    async with running(url, concurrency={"communication": 1}) as engine:
        @engine.processor("hold", queue="communication", backoff=FAST)
        async def hold(job: tickq.Job) -> str:
            if job.data.get("quick"):
                return "quick"
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                saw_cancel.append(job.attempts)
                raise
            return "slept"

        job = await engine.enqueue("hold", {})
        await asyncio.wait_for(started.wait(), 5)
        await engine.cancel(job.id)
        done = await engine.wait(job.id, timeout=5)

        # The only worker of the queue is still usable afterwards.
        after = await engine.wait((await engine.enqueue("hold", {"quick": True})).id, timeout=5)

    assert saw_cancel == [1]
    assert done.state is CANCELLED
    assert done.errors == []
    assert after.state is COMPLETED and after.result == "quick"


async def test_cancel_of_a_waiting_job_cancels_it_and_it_never_runs(url: str) -> None:
    calls = 0

    async with running(url) as engine:
        @engine.processor("never", queue="communication", backoff=FAST)
        async def never(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1

        await engine.pause("communication")
        job = await engine.enqueue("never", {})
        cancelled = await engine.cancel(job.id)
        assert cancelled.state is CANCELLED
        await engine.resume("communication")
        await asyncio.sleep(0.15)
        final = await engine.wait(job.id, timeout=5)

    assert calls == 0
    assert final.state is CANCELLED
    assert final.attempts == 0


async def test_cancel_of_a_completed_job_raises_illegal_transition(url: str) -> None:
    async with running(url) as engine:
        @engine.processor("quick", queue="communication", backoff=FAST)
        async def quick(job: tickq.Job) -> str:
            return "done"

        job = await engine.enqueue("quick", {})
        assert (await engine.wait(job.id, timeout=5)).state is COMPLETED
        with pytest.raises(tickq.IllegalTransitionError):
            await engine.cancel(job.id)
        after = await engine.get(job.id)

    assert after is not None and after.state is COMPLETED and after.result == "done"


# --- pause and resume ----------------------------------------------------------------------


async def test_paused_queue_holds_jobs_until_resumed(url: str) -> None:
    calls = 0

    async with running(url) as engine:
        @engine.processor("held", queue="communication", backoff=FAST)
        async def held(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1

        @engine.processor("free", queue="background", backoff=FAST)
        async def free(job: tickq.Job) -> str:
            return "ran"

        assert not engine.is_paused("communication")
        await engine.pause("communication")
        assert engine.is_paused("communication")
        assert not engine.is_paused("background")
        assert (await engine.counts("communication")).paused

        jobs = [await engine.enqueue("held", {"n": i}) for i in range(3)]
        other = await engine.wait((await engine.enqueue("free", {})).id, timeout=5)
        assert other.state is COMPLETED
        await asyncio.sleep(0.15)
        assert calls == 0
        for job in jobs:
            current = await engine.get(job.id)
            assert current is not None and current.state is WAITING

        await engine.resume("communication")
        assert not engine.is_paused("communication")
        done = [await engine.wait(j.id, timeout=5) for j in jobs]

    assert calls == 3
    assert [j.state for j in done] == [COMPLETED] * 3


async def test_pause_survives_an_engine_restart_on_sqlite(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    calls = 0

    def register(engine: tickq.Engine) -> None:
        @engine.processor("held", queue="communication", backoff=FAST)
        async def held(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1

    first = engine_on(url)
    register(first)
    await first.start()
    try:
        await first.pause("communication")
        job = await first.enqueue("held", {})
    finally:
        await first.stop()

    second = engine_on(url)
    register(second)
    await second.start()
    try:
        assert second.is_paused("communication")
        assert not second.is_paused("money")
        await asyncio.sleep(0.15)
        assert calls == 0
        current = await second.get(job.id)
        assert current is not None and current.state is WAITING
        await second.resume("communication")
        done = await second.wait(job.id, timeout=5)
    finally:
        await second.stop()

    assert done.state is COMPLETED
    assert calls == 1

    third = engine_on(url)
    register(third)
    await third.start()
    try:
        assert not third.is_paused("communication")
    finally:
        await third.stop()


# --- shutdown ------------------------------------------------------------------------------


async def test_shutdown_past_grace_gives_the_running_job_back_without_spending_an_attempt(
        tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    started = asyncio.Event()
    interrupted: list[int] = []
    log = EventLog()

    first = engine_on(url)
    first.events.subscribe(log)

    @first.processor("long", queue="communication", backoff=FAST)
    async def long(job: tickq.Job) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            interrupted.append(job.attempts)
            raise

    await first.start()
    try:
        job = await first.enqueue("long", {})
        await asyncio.wait_for(started.wait(), 5)
        active = await first.get(job.id)
        assert active is not None and active.state is ACTIVE and active.attempts == 1
        # Keep the next engine from running the job before it has been looked at.
        await first.pause("communication")
    finally:
        t0 = time.monotonic()
        await first.stop(grace_s=0.1)
        stop_took = time.monotonic() - t0

    assert stop_took < 1.0
    assert interrupted == [1]
    assert [e.reason for e in log.of(Kind.DEFERRED, job.id)] == ["shutdown"]
    assert log.of(Kind.FAILED, job.id) == [] and log.of(Kind.RETRIED, job.id) == []
    assert db_row(tmp_path, job.id) == ("waiting", 0)

    ran: list[int] = []
    second = engine_on(url)

    @second.processor("long", queue="communication", backoff=FAST)
    async def long_again(job: tickq.Job) -> str:
        ran.append(job.attempts)
        return "finished"

    await second.start()
    try:
        back = await second.get(job.id)
        assert back is not None
        assert back.state is WAITING
        assert back.attempts == 0
        assert back.errors == []
        assert back.stalls == 0
        assert second.stats["stalled"] == 0
        await second.resume("communication")
        done = await second.wait(job.id, timeout=5)
    finally:
        await second.stop()

    assert done.state is COMPLETED
    assert done.attempts == 1
    assert ran == [1]


async def test_shutdown_lets_a_job_that_finishes_within_grace_complete(
        url: str, tmp_path: Path) -> None:
    started = asyncio.Event()
    log = EventLog()

    engine = engine_on(url)
    engine.events.subscribe(log)

    @engine.processor("short", queue="communication", backoff=FAST)
    async def short(job: tickq.Job) -> str:
        started.set()
        await asyncio.sleep(0.2)
        return "in time"

    await engine.start()
    try:
        job = await engine.enqueue("short", {})
        await asyncio.wait_for(started.wait(), 5)
    finally:
        t0 = time.monotonic()
        await engine.stop(grace_s=5)
        stop_took = time.monotonic() - t0

    assert stop_took < 2.0  # returns once the job is done, not at the end of the grace period
    completed = log.of(Kind.COMPLETED, job.id)
    assert len(completed) == 1
    assert completed[0].job.result == "in time"
    assert log.of(Kind.DEFERRED, job.id) == []

    if url.startswith("sqlite"):
        assert db_row(tmp_path, job.id) == ("completed", 1)
        again = engine_on(url)
        await again.start()
        try:
            stored = await again.get(job.id)
        finally:
            await again.stop()
        assert stored is not None
        assert stored.state is COMPLETED and stored.result == "in time"


# --- stalls and recovery -------------------------------------------------------------------


def short_lease_registry(lease_s: float) -> tickq.Registry:
    registry = tickq.Registry(types=BUILTIN_TYPES)
    registry.add_queue(replace(registry.queue("communication"), lease_s=lease_s), replace=True)
    return registry


async def test_lease_expiry_puts_a_claimed_job_back_to_waiting_as_stalled(url: str) -> None:
    log = EventLog()
    reconcile: list[bool] = []

    async with running(url, registry=short_lease_registry(0.2),
                       maintenance_interval_s=60) as engine:
        engine.events.subscribe(log)

        @engine.processor("leased", queue="communication", backoff=FAST)
        async def leased(job: tickq.Job) -> int:
            reconcile.append(job.needs_reconcile)
            return job.attempts

        await engine.pause("communication")
        job = await engine.enqueue("leased", {})
        # A claim nobody renews: as if the worker holding it had hung or vanished.
        fetched = await engine.store.job_fetch_available("communication", 10, time.time(), 0.2)
        assert [j.id for j in fetched.claimed] == [job.id]

        await engine.tick_maintenance()
        early = await engine.get(job.id)
        assert early is not None and early.state is ACTIVE  # the lease has not run out yet

        await asyncio.sleep(0.3)
        await engine.tick_maintenance()
        back = await engine.get(job.id)
        assert back is not None
        assert back.state is WAITING
        assert back.stalls == 1
        assert back.attempts == 1
        assert [(e.attempt, e.code) for e in back.errors] == [(1, "stalled")]
        assert engine.stats["stalled"] == 1
        assert [e.reason for e in log.of(Kind.STALLED, job.id)] == ["lease expired"]

        await engine.resume("communication")
        done = await engine.wait(job.id, timeout=5)

    assert done.state is COMPLETED
    assert done.attempts == 2
    assert done.result == 2
    assert reconcile == [True]


async def test_running_job_keeps_its_lease_past_lease_s_and_is_not_stalled(url: str) -> None:
    async with running(url, registry=short_lease_registry(0.2),
                       maintenance_interval_s=0.05) as engine:
        @engine.processor("steady", queue="communication", backoff=FAST)
        async def steady(job: tickq.Job) -> str:
            await asyncio.sleep(0.6)
            return "done"

        job = await engine.enqueue("steady", {})
        done = await engine.wait(job.id, timeout=5)
        stalled = engine.stats["stalled"]

    assert done.state is COMPLETED
    assert done.attempts == 1
    assert done.stalls == 0
    assert done.errors == []
    assert stalled == 0


async def test_job_active_when_the_process_stopped_is_recovered_on_the_next_start(
        tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)

    first = engine_on(url)

    @first.processor("recover-me", queue="communication", backoff=FAST)
    async def first_run(job: tickq.Job) -> None:
        raise AssertionError("the first process never runs it")

    await first.start()
    try:
        await first.pause("communication")
        job = await first.enqueue("recover-me", {"n": 1})
        fetched = await first.store.job_fetch_available("communication", 10, time.time(), 30.0)
        assert [j.id for j in fetched.claimed] == [job.id]
    finally:
        # The engine does not know the claim above, so stopping leaves the job's row active,
        # just as a process that died mid-run would.
        await first.stop()
    assert db_row(tmp_path, job.id) == ("active", 1)

    seen: list[tuple[int, bool]] = []
    log = EventLog()
    second = engine_on(url)
    second.events.subscribe(log)

    @second.processor("recover-me", queue="communication", backoff=FAST)
    async def second_run(job: tickq.Job) -> str:
        seen.append((job.attempts, job.needs_reconcile))
        return "reconciled"

    await second.start()
    try:
        assert second.stats["stalled"] == 1
        assert [e.reason for e in log.of(Kind.STALLED, job.id)] == ["process restarted"]
        back = await second.get(job.id)
        assert back is not None
        assert back.state is WAITING
        assert back.stalls == 1
        assert [(e.attempt, e.code) for e in back.errors] == [(1, "stalled")]
        await second.resume("communication")
        done = await second.wait(job.id, timeout=5)
    finally:
        await second.stop()

    assert done.state is COMPLETED
    assert done.result == "reconciled"
    assert done.attempts == 2
    assert seen == [(2, True)]


# --- results -------------------------------------------------------------------------------


async def test_result_returns_the_processor_return_value(url: str) -> None:
    async with running(url) as engine:
        @engine.processor("answer", queue="communication", backoff=FAST)
        async def answer(job: tickq.Job) -> dict[str, Any]:
            return {"sum": job.data["a"] + job.data["b"], "items": [1, "two"]}

        job = await engine.enqueue("answer", {"a": 40, "b": 2})
        result = await engine.result(job.id, timeout=5)

    assert result == {"sum": 42, "items": [1, "two"]}


async def test_result_raises_job_failed_for_a_failed_job(url: str) -> None:
    async with running(url) as engine:
        @engine.processor("doomed", queue="communication", backoff=FAST)
        async def doomed(job: tickq.Job) -> None:
            raise tickq.PermanentError("no such recipient", code="bad_recipient")

        job = await engine.enqueue("doomed", {})
        with pytest.raises(tickq.JobFailed) as caught:
            await engine.result(job.id, timeout=5)

    assert caught.value.job.id == job.id
    assert caught.value.job.state is FAILED
    assert "no such recipient" in str(caught.value)


async def test_result_times_out_with_job_timeout_error(url: str) -> None:
    async with running(url) as engine:
        @engine.processor("parked", queue="communication", backoff=FAST)
        async def parked(job: tickq.Job) -> None:
            return None

        await engine.pause("communication")
        job = await engine.enqueue("parked", {})
        t0 = time.monotonic()
        with pytest.raises(JobTimeoutError):
            await engine.result(job.id, timeout=0.1)
        assert time.monotonic() - t0 < 1.0
        current = await engine.get(job.id)

    assert current is not None and current.state is WAITING


# --- idempotency -----------------------------------------------------------------------------


async def test_concurrent_enqueues_with_one_key_make_one_job_that_runs_once(url: str) -> None:
    calls = 0

    async with running(url) as engine:
        @engine.processor("charge-once", queue="money", backoff=FAST)
        async def charge_once(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1

        a, b = await asyncio.gather(
            engine.enqueue("charge-once", {"n": 1}, idempotency_key="order-17"),
            engine.enqueue("charge-once", {"n": 2}, idempotency_key="order-17"))
        assert a.id == b.id
        done = await engine.wait(a.id, timeout=5)
        await asyncio.sleep(0.1)
        listed = await engine.list_jobs(tickq.JobQuery(idempotency_key="order-17"))

    assert done.state is COMPLETED
    assert calls == 1
    assert [j.id for j in listed] == [a.id]


async def test_builtin_key_rule_makes_two_identical_payments_one_job(url: str) -> None:
    calls = 0

    async with running(url) as engine:
        @engine.processor("payment-process")
        async def charge(job: tickq.Job) -> str:
            nonlocal calls
            calls += 1
            return f"pi_{job.idempotency_key}"

        first = await engine.enqueue_many([tickq.JobSpec(type="payment-process", data=PAYMENT)])
        second = await engine.enqueue_many([tickq.JobSpec(type="payment-process",
                                                          data=dict(PAYMENT))])
        assert first[0].created is True
        assert second[0].created is False
        assert first[0].job.id == second[0].job.id
        assert first[0].job.idempotency_key == "payment-v-1-u-1-e-1-2500"
        done = await engine.wait(first[0].job.id, timeout=5)
        # Still the same job once it has completed (the key is held for its TTL).
        third = await engine.enqueue("payment-process", PAYMENT)

    assert done.state is COMPLETED
    assert third.id == done.id
    assert calls == 1


# --- events --------------------------------------------------------------------------------


async def test_subscriber_sees_enqueued_started_completed_in_order(url: str) -> None:
    log = EventLog()

    async with running(url) as engine:
        engine.events.subscribe(log)

        @engine.processor("observed", queue="communication", backoff=FAST)
        async def observed(job: tickq.Job) -> str:
            return "seen"

        job = await engine.enqueue("observed", {})
        await engine.wait(job.id, timeout=5)

    assert log.kinds(job.id) == [Kind.ENQUEUED, Kind.STARTED, Kind.COMPLETED]
    at = [e.at for e in log.events if e.job.id == job.id]
    assert at == sorted(at)


async def test_failing_subscriber_does_not_break_processing(url: str) -> None:
    log = EventLog()
    raised = 0

    def broken(event: tickq.Event) -> None:
        nonlocal raised
        raised += 1
        raise RuntimeError("subscriber bug")

    async with running(url) as engine:
        engine.events.subscribe(broken)
        engine.events.subscribe(log)

        @engine.processor("robust", queue="communication", backoff=FAST)
        async def robust(job: tickq.Job) -> int:
            return 7

        job = await engine.enqueue("robust", {})
        result = await engine.result(job.id, timeout=5)

    assert result == 7
    assert raised >= 3
    assert log.kinds(job.id) == [Kind.ENQUEUED, Kind.STARTED, Kind.COMPLETED]


# --- processors ----------------------------------------------------------------------------


async def test_sync_processor_runs_in_a_worker_thread(url: str) -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    async with running(url) as engine:
        @engine.processor("blocking", queue="background", backoff=FAST)
        def blocking(job: tickq.Job) -> int:
            threads.append(threading.get_ident())
            time.sleep(0.05)  # blocks its thread, not the loop
            return int(job.data["x"]) * 2

        job = await engine.enqueue("blocking", {"x": 21})
        result = await engine.result(job.id, timeout=5)

    assert result == 42
    assert threads and threads[0] != loop_thread


async def test_job_type_without_a_processor_fails_as_not_configured(url: str) -> None:
    async with running(url) as engine:
        # A built-in type nobody attached a processor to.
        job = await engine.enqueue("send-push", {"userId": "u-1", "title": "Doors open",
                                                 "body": "See you inside"})
        done = await engine.wait(job.id, timeout=5)

    assert done.state is FAILED
    assert done.attempts == 1
    assert len(done.errors) == 1
    assert done.errors[0].code == "not_configured"


async def test_expired_job_fails_as_expired_and_never_runs(url: str) -> None:
    calls = 0
    log = EventLog()

    async with running(url) as engine:
        engine.events.subscribe(log)

        @engine.processor("perishable", queue="communication", backoff=FAST)
        async def perishable(job: tickq.Job) -> None:
            nonlocal calls
            calls += 1

        await engine.pause("communication")
        job = await engine.enqueue("perishable", {}, expires_in_s=0.05)
        await asyncio.sleep(0.1)
        await engine.resume("communication")
        done = await engine.wait(job.id, timeout=5)

    assert calls == 0
    assert done.state is FAILED
    assert done.attempts == 0
    assert [e.code for e in done.errors] == ["expired"]
    assert [e.kind for e in log.of(Kind.EXPIRED, job.id)] == [Kind.EXPIRED]
    assert log.of(Kind.STARTED, job.id) == []


async def test_clear_cancels_jobs_that_have_not_started_and_restores_the_pause() -> None:
    async with tickq.open("memory://") as engine:
        @engine.processor("noop-clear", queue="communication")
        async def noop(job: tickq.Job) -> None:
            return None

        await engine.pause("communication")
        now_ids = [(await engine.enqueue("noop-clear", {})).id for _ in range(3)]
        later = await engine.enqueue("noop-clear", {}, delay_s=3600)

        assert await engine.clear("communication", delayed_only=True) == (1, 0)
        assert (await engine.get(later.id)).state is tickq.JobState.CANCELLED  # type: ignore[union-attr]
        assert await engine.clear("communication") == (3, 0)
        for job_id in now_ids:
            assert (await engine.get(job_id)).state is tickq.JobState.CANCELLED  # type: ignore[union-attr]
        assert engine.is_paused("communication")  # paused before, paused after
