"""The conformance suite every `Store` backend must pass.

`StoreConformance` holds the tests; `test_conformance.py` runs them against each backend through
the `store_factory` fixture, which yields a `StoreFactory`. Adding a backend means adding a param
to that fixture that builds a `StoreFactory` for it; nothing here changes. Where a backend
legitimately differs (the memory store keeps nothing across a restart, only the SQLite journal
locks its file), the test skips with the reason.

Time is explicit: every call gets a `now` float built from `T0`, nothing sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest

from tickq.engine.gate import Deferral
from tickq.engine.ids import IdGenerator
from tickq.engine.job import ErrorEntry, Job
from tickq.engine.outcome import Settle, SettleKind
from tickq.engine.queues import DEFAULT_QUEUES, QueueConfig, QueueCounts
from tickq.engine.states import JobState
from tickq.errors import (
    IdempotencyConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    StoreLockedError,
)
from tickq.storage.base import (
    AlertRecord,
    AnalyticsEvent,
    JobQuery,
    NewAlert,
    OpenReport,
    PruneRule,
    QueueSnapshot,
    Report,
    ReportInfo,
    Schedule,
    Store,
)

T0 = 1_800_000_000.0
LEASE_S = 30.0

W, A, C, F, X = (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED,
                 JobState.CANCELLED)

#: every field of a job record that a store must keep (claim_token is per claim, checked apart)
FIELDS = tuple(name for name in Job.__slots__ if name not in ("_seq", "claim_token"))


def queue_map() -> dict[str, QueueConfig]:
    return {q.name: q for q in DEFAULT_QUEUES}


class StoreFactory:
    """Opens stores of one backend for one test; the fixture closes whatever is left open.

    `new_store()` builds an unopened store over the test's backing data (the same file, database
    or schema each time), so opening a second one is a restart, or a second process while the
    first is still open.
    """

    def __init__(self, backend: str, new_store: Callable[[], Store], *,
                 survives_restart: bool) -> None:
        self.backend = backend
        self.new_store = new_store
        self.survives_restart = survives_restart
        self._opened: list[Store] = []

    async def __call__(self, now: float = T0) -> Store:
        store, _ = await self.open(now)
        return store

    async def open(self, now: float = T0) -> tuple[Store, OpenReport]:
        store = self.new_store()
        report = await store.open(queue_map(), now)
        self._opened.append(store)
        return store, report

    async def reopen(self, store: Store, now: float) -> tuple[Store, OpenReport]:
        """Close `store` and open the same backing data again, as a process restart would."""
        if not self.survives_restart:
            pytest.skip(f"{self.backend} store keeps nothing across a restart")
        await store.close()
        return await self.open(now)

    def only(self, backend: str, reason: str) -> None:
        if self.backend != backend:
            pytest.skip(reason)

    async def close_all(self) -> None:
        for store in reversed(self._opened):
            await store.close()
        self._opened.clear()


class Jobs:
    """Builds job records with ids that sort in creation order."""

    def __init__(self) -> None:
        self._ids = IdGenerator()

    def new_id(self) -> str:
        return self._ids.new(T0)

    def __call__(self, *, id: str | None = None, queue: str = "money",
                 type: str = "payment-process", priority: int = 5, run_at: float = T0,
                 created_at: float = T0, max_attempts: int = 3, key: str | None = None,
                 tenant: str | None = None, expires_at: float | None = None,
                 data: Any = None, **extra: Any) -> Job:
        return Job(id=id or self.new_id(), queue=queue, type=type,
                   data_json=orjson.dumps({"n": 1} if data is None else data),
                   priority=priority, max_attempts=max_attempts, run_at=run_at,
                   created_at=created_at, idempotency_key=key, tenant_id=tenant,
                   expires_at=expires_at, **extra)


def fields(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in FIELDS}


async def insert(store: Store, *jobs: Job, now: float = T0) -> list[Job]:
    results = await store.job_insert_many(list(jobs), now)
    assert all(r.created for r in results)
    return [r.job for r in results]


async def claim(store: Store, queue: str = "money", *, limit: int = 100,
                now: float = T0) -> list[Job]:
    return (await store.job_fetch_available(queue, limit, now, LEASE_S)).claimed


async def claim_one(store: Store, job_id: str, now: float = T0) -> Job:
    claimed = await claim(store, now=now)
    assert [j.id for j in claimed] == [job_id]
    return claimed[0]


def settle(job: Job, kind: SettleKind, at: float, **kw: Any) -> Settle:
    return Settle(job_id=job.id, token=job.claim_token, kind=kind, at=at, **kw)


def boom(job: Job, at: float, message: str = "boom") -> ErrorEntry:
    return ErrorEntry(attempt=job.attempts, type="RetryableError", message=message, at=at,
                      code="E1")


async def dead_letter(store: Store, job: Job, at: float = T0 + 1) -> Job:
    """Insert `job`, claim it and fail it for good: a job in the dead-letter queue."""
    await insert(store, job)
    running = await claim_one(store, job.id)
    [failed] = await store.job_settle_many([settle(running, SettleKind.FAIL, at,
                                                   error=boom(running, at))])
    return failed


async def completed(store: Store, job: Job, *, key_until: float,
                    result_json: bytes = b"1") -> None:
    """Insert `job`, claim it and complete it at T0 + 1, its key held until `key_until`."""
    await insert(store, job)
    running = await claim_one(store, job.id)
    await store.job_settle_many([settle(running, SettleKind.COMPLETE, T0 + 1,
                                        result_json=result_json, key_until=key_until)])


async def get(store: Store, job_id: str) -> Job:
    job = await store.job_get(job_id)
    assert job is not None, f"job {job_id} is gone"
    return job


def ids(jobs: Iterable[Job]) -> list[str]:
    return [j.id for j in jobs]


def event(record_id: str, *, tenant: str | None = "t1", type: str = "page_view",
          at: float = T0, venue: str | None = None, **extra: Any) -> AnalyticsEvent:
    return AnalyticsEvent(id=record_id, tenant_id=tenant, event_type=type, venue_id=venue,
                          occurred_at=at, recorded_at=at + 0.5, **extra)


def report(report_id: str, *, tenant: str | None = "t1", created_at: float = T0,
           content: bytes = b"type,count\r\nx,1\r\n", **extra: Any) -> Report:
    rest: dict[str, Any] = {"report_type": "jobs", "format": "csv", "period_start": T0 - 86400,
                            "period_end": T0, "content_type": "text/csv; charset=utf-8",
                            "job_id": report_id, **extra}
    return Report(id=report_id, tenant_id=tenant, created_at=created_at, size=len(content),
                  content=content, **rest)


def new_alert(*, at: float = T0, severity: str = "critical", alert_type: str = "queue_depth",
              queue: str | None = "money", **extra: Any) -> NewAlert:
    return NewAlert(severity=severity, alert_type=alert_type, message=f"{alert_type} at {at}",
                    queue_name=queue, metric_value=75.0, threshold_value=50.0, created_at=at,
                    **extra)


def snapshot(queue: str = "money", *, at: float = T0, waiting: int = 3) -> QueueSnapshot:
    return QueueSnapshot(queue_name=queue, waiting_count=waiting, delayed_count=1,
                         active_count=2, completed_count=40, failed_count=5, oldest_age_s=12.5,
                         captured_at=at)


class StoreConformance:
    """Behaviour every `Store` implementation must show. Subclass it as a `Test*` class."""

    # --- insert and read ------------------------------------------------------------------

    async def test_insert_then_get_round_trips_every_field(self, store_factory: StoreFactory
                                                           ) -> None:
        store = await store_factory()
        job = Jobs()(
            queue="communication", type="send-email", priority=7, run_at=T0 + 0.123456789,
            created_at=T0 - 1.5, max_attempts=4, key="email-welcome-a@example.com",
            tenant="tenant-1", expires_at=T0 + 3600.25, user_id="user-9",
            data={"to": "a@example.com", "note": "snö ☃", "nested": {"a": [1, 2.5, None, True]}},
            callback_url="https://example.com/hook", ordering_key="order-17",
        )
        expected = fields(job)

        [result] = await store.job_insert_many([job], T0)
        assert result.created
        assert result.job.id == job.id

        got = await get(store, job.id)
        assert fields(got) == expected
        assert got.data == {"to": "a@example.com", "note": "snö ☃",
                            "nested": {"a": [1, 2.5, None, True]}}
        assert (got.state, got.attempts, got.stalls, got.progress) == (W, 0, 0, 0)
        assert got.errors == [] and got.result is None

    async def test_get_returns_an_independent_copy(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(priority=7)
        await insert(store, job)

        copy = await get(store, job.id)
        copy.priority = 1
        copy.state = C

        again = await get(store, job.id)
        assert (again.priority, again.state) == (7, W)

    async def test_get_of_an_unknown_id_returns_none(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        assert await store.job_get("01NOSUCHJOB000000000000000") is None

    # --- fetching -------------------------------------------------------------------------

    async def test_fetch_respects_priority_then_run_at_then_id(self, store_factory: StoreFactory
                                                                ) -> None:
        store = await store_factory()
        make = Jobs()
        c_id, d_id = make.new_id(), make.new_id()  # c sorts before d
        a = make(priority=5, run_at=T0 - 10)
        b = make(priority=10, run_at=T0 - 1)
        c = make(id=c_id, priority=10, run_at=T0 - 5)
        d = make(id=d_id, priority=10, run_at=T0 - 5)
        e = make(priority=1, run_at=T0 - 100)
        other_queue = make(queue="communication", type="send-email", priority=10,
                           run_at=T0 - 500)
        await insert(store, e, d, a, other_queue, b, c)

        first = await claim(store, limit=2)
        rest = await claim(store, limit=10)

        assert ids(first) == [c.id, d.id]
        assert ids(rest) == [b.id, a.id, e.id]
        assert all(j.state is A for j in first + rest)
        assert await claim(store) == []
        assert ids(await claim(store, "communication")) == [other_queue.id]

    async def test_fetch_returns_at_most_limit_jobs(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        await insert(store, *(make() for _ in range(5)))

        assert len(await claim(store, limit=3)) == 3
        assert len(await claim(store, limit=3)) == 2
        counts = await store.queue_counts("money", T0)
        assert (counts.waiting, counts.active) == (0, 5)

    async def test_delayed_job_is_not_fetched_before_run_at(self, store_factory: StoreFactory
                                                            ) -> None:
        store = await store_factory()
        job = Jobs()(run_at=T0 + 60)
        await insert(store, job)

        assert await claim(store, now=T0) == []
        assert await claim(store, now=T0 + 59.999) == []
        claimed = await claim(store, now=T0 + 60)

        assert ids(claimed) == [job.id]
        assert claimed[0].started_at == T0 + 60

    async def test_waiting_job_past_expires_at_fails_as_expired(self, store_factory: StoreFactory
                                                                ) -> None:
        store = await store_factory()
        make = Jobs()
        stale = make(expires_at=T0 + 5, key="k-stale", priority=10)
        fresh = make(expires_at=T0 + 500)
        await insert(store, stale, fresh)

        res = await store.job_fetch_available("money", 10, T0 + 10, LEASE_S)

        assert ids(res.claimed) == [fresh.id]
        assert ids(res.expired) == [stale.id]
        got = await get(store, stale.id)
        assert got.state is F
        assert got.attempts == 0
        assert got.finished_at == T0 + 10
        [entry] = got.errors
        assert (entry.type, entry.code, entry.at) == ("Expired", "expired", T0 + 10)
        counts = await store.queue_counts("money", T0 + 10)
        assert (counts.failed, counts.active, counts.waiting) == (1, 1, 0)
        # an expired job no longer holds its key
        again = make(key="k-stale")
        [res2] = await store.job_insert_many([again], T0 + 11)
        assert res2.created

    async def test_claim_spends_an_attempt_and_sets_lease_and_new_token(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)

        first = await claim_one(store, job.id, now=T0)
        assert (first.state, first.attempts) == (A, 1)
        assert first.lease_until == T0 + LEASE_S
        assert first.started_at == T0
        token1 = first.claim_token
        assert token1 != 0

        await store.job_settle_many([settle(first, SettleKind.RETRY, T0 + 1, run_at=T0 + 1,
                                            error=boom(first, T0 + 1))])
        second = await claim_one(store, job.id, now=T0 + 2)

        assert second.attempts == 2
        assert second.claim_token != token1
        assert second.lease_until == T0 + 2 + LEASE_S
        assert (await get(store, job.id)).claim_token == second.claim_token

    # --- settling -------------------------------------------------------------------------

    async def test_settle_complete_finishes_the_job_with_result_and_key_hold(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(key="pay-1")
        await insert(store, job)
        running = await claim_one(store, job.id)

        done = await store.job_settle_many([settle(
            running, SettleKind.COMPLETE, T0 + 3, result_json=orjson.dumps({"charge": "ch_1"}),
            key_until=T0 + 1000)])

        assert ids(done) == [job.id]
        got = await get(store, job.id)
        assert (got.state, got.attempts, got.progress) == (C, 1, 100)
        assert got.result == {"charge": "ch_1"}
        assert (got.finished_at, got.key_until, got.lease_until) == (T0 + 3, T0 + 1000, None)
        assert got.started_at == T0
        assert got.errors == []

    async def test_settle_retry_requeues_with_attempt_spent_and_error_recorded(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)
        running = await claim_one(store, job.id)

        done = await store.job_settle_many([settle(running, SettleKind.RETRY, T0 + 1,
                                                   run_at=T0 + 20, error=boom(running, T0 + 1))])

        assert ids(done) == [job.id]
        got = await get(store, job.id)
        assert (got.state, got.attempts, got.run_at, got.lease_until) == (W, 1, T0 + 20, None)
        assert [e.to_dict() for e in got.errors] == [
            {"attempt": 1, "type": "RetryableError", "message": "boom", "at": T0 + 1,
             "code": "E1"}]
        assert (await store.queue_counts("money", T0 + 1)).delayed == 1
        assert await claim(store, now=T0 + 19) == []
        assert ids(await claim(store, now=T0 + 20)) == [job.id]

    async def test_settle_fail_moves_the_job_to_the_dead_letter_state(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)
        running = await claim_one(store, job.id)

        await store.job_settle_many([settle(running, SettleKind.FAIL, T0 + 2,
                                            error=boom(running, T0 + 2, "card declined"))])

        got = await get(store, job.id)
        assert (got.state, got.attempts, got.finished_at, got.lease_until) == (F, 1, T0 + 2, None)
        assert [e.message for e in got.errors] == ["card declined"]
        assert await claim(store, now=T0 + 1000) == []

    async def test_settle_snooze_gives_the_attempt_back_without_an_error(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)
        running = await claim_one(store, job.id)

        await store.job_settle_many([settle(running, SettleKind.SNOOZE, T0 + 1, run_at=T0 + 9,
                                            reason="rate_limited")])

        got = await get(store, job.id)
        assert (got.state, got.attempts, got.run_at, got.lease_until) == (W, 0, T0 + 9, None)
        assert got.errors == []
        assert await claim(store, now=T0 + 8) == []
        again = await claim_one(store, job.id, now=T0 + 9)
        assert again.attempts == 1

    async def test_settle_cancel_finishes_a_running_job_as_cancelled(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(key="k-cancel")
        await insert(store, job)
        running = await claim_one(store, job.id)

        await store.job_settle_many([settle(running, SettleKind.CANCEL, T0 + 4,
                                            reason="cancelled")])

        got = await get(store, job.id)
        assert (got.state, got.attempts, got.finished_at, got.lease_until) == (X, 1, T0 + 4, None)
        assert (await store.queue_counts("money", T0 + 4)).cancelled == 1

    async def test_error_history_keeps_one_entry_per_failed_attempt_in_order(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(max_attempts=3)
        await insert(store, job)

        now = T0
        for n in (1, 2):
            running = await claim_one(store, job.id, now=now)
            await store.job_settle_many([settle(running, SettleKind.RETRY, now,
                                                run_at=now, error=boom(running, now, f"e{n}"))])
            now += 1
        running = await claim_one(store, job.id, now=now)
        await store.job_settle_many([settle(running, SettleKind.FAIL, now,
                                            error=boom(running, now, "e3"))])

        got = await get(store, job.id)
        assert got.state is F
        assert [(e.attempt, e.message) for e in got.errors] == [(1, "e1"), (2, "e2"), (3, "e3")]

    async def test_settle_with_a_stale_token_is_ignored(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(max_attempts=5)
        await insert(store, job)
        old = await claim_one(store, job.id, now=T0)
        old_token = old.claim_token
        # the lease runs out, the job is rescued and claimed again under a new token
        await store.job_rescue_stuck(T0 + LEASE_S + 1)
        current = await claim_one(store, job.id, now=T0 + LEASE_S + 2)
        assert current.claim_token != old_token
        before = fields(await get(store, job.id))

        stale = Settle(job_id=job.id, token=old_token, kind=SettleKind.COMPLETE,
                       at=T0 + 40, result_json=b"1", key_until=T0 + 100)
        assert await store.job_settle_many([stale]) == []

        assert fields(await get(store, job.id)) == before
        assert (await get(store, job.id)).state is A
        # and after the current run finishes, the old token still changes nothing
        await store.job_settle_many([settle(current, SettleKind.COMPLETE, T0 + 41,
                                            result_json=b"2", key_until=T0 + 100)])
        assert await store.job_settle_many([stale]) == []
        assert (await get(store, job.id)).result == 2

    async def test_settle_many_returns_only_the_jobs_whose_claim_matched(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        a, b = make(), make()
        await insert(store, a, b)
        ra, rb = await claim(store)

        done = await store.job_settle_many([
            settle(ra, SettleKind.COMPLETE, T0 + 1, result_json=b"null", key_until=T0 + 1),
            Settle(job_id=rb.id, token=rb.claim_token + 1000, kind=SettleKind.COMPLETE,
                   at=T0 + 1, result_json=b"null", key_until=T0 + 1),
            Settle(job_id="01NOSUCHJOB000000000000000", token=1, kind=SettleKind.FAIL,
                   at=T0 + 1),
        ])

        assert ids(done) == [ra.id]
        assert (await get(store, rb.id)).state is A

    # --- leases ---------------------------------------------------------------------------

    async def test_heartbeat_extends_leases_and_reports_lost_claims(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        a, b = make(), make()
        await insert(store, a, b)
        ra, rb = await claim(store, now=T0)

        lost = await store.job_heartbeat([(ra.id, ra.claim_token), (rb.id, rb.claim_token)],
                                         T0 + 100)
        assert lost == []
        assert (await get(store, ra.id)).lease_until == T0 + 100
        # the original leases (T0 + 30) have run out, the renewed ones have not
        assert await store.job_rescue_stuck(T0 + 50) == []

        await store.job_settle_many([settle(rb, SettleKind.COMPLETE, T0 + 60, result_json=b"1",
                                            key_until=T0 + 60)])
        lost = await store.job_heartbeat(
            [(ra.id, ra.claim_token + 1), (rb.id, rb.claim_token),
             ("01NOSUCHJOB000000000000000", 1)], T0 + 200)
        assert sorted(lost) == sorted([ra.id, rb.id, "01NOSUCHJOB000000000000000"])
        # a heartbeat with the wrong token does not extend the lease
        assert (await get(store, ra.id)).lease_until == T0 + 100

    async def test_rescue_returns_expired_lease_jobs_to_waiting_as_stalled(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        stuck = make(max_attempts=3, priority=10)
        healthy = make(max_attempts=3, priority=1)
        await insert(store, stuck, healthy)
        [running] = await claim(store, limit=1, now=T0)          # lease until T0 + 30
        assert running.id == stuck.id
        await store.job_fetch_available("money", 1, T0 + 20, 60)  # lease until T0 + 80

        assert await store.job_rescue_stuck(T0 + LEASE_S - 1) == []
        rescued = await store.job_rescue_stuck(T0 + LEASE_S + 1)

        assert ids(rescued) == [stuck.id]
        got = await get(store, stuck.id)
        assert (got.state, got.stalls, got.attempts, got.lease_until) == (W, 1, 1, None)
        assert [e.type for e in got.errors] == ["Stalled"]
        assert (await get(store, healthy.id)).state is A
        again = await claim_one(store, stuck.id, now=T0 + LEASE_S + 1)
        assert again.attempts == 2

    async def test_rescue_fails_a_stalled_job_with_no_attempts_left(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()(max_attempts=1, key="k-once")
        await insert(store, job)
        await claim_one(store, job.id)

        rescued = await store.job_rescue_stuck(T0 + LEASE_S + 1)

        assert ids(rescued) == [job.id]
        got = await get(store, job.id)
        assert (got.state, got.stalls, got.attempts) == (F, 1, 1)
        assert got.finished_at == T0 + LEASE_S + 1
        counts = await store.queue_counts("money", T0 + LEASE_S + 1)
        assert (counts.active, counts.failed) == (0, 1)

    # --- idempotency ----------------------------------------------------------------------

    async def test_insert_with_a_live_key_returns_the_existing_job(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        first = make(key="pay-1", tenant="t1")
        await insert(store, first)
        dup = make(key="pay-1", tenant="t1", priority=9)

        [res] = await store.job_insert_many([dup], T0 + 1)

        assert not res.created
        assert res.job.id == first.id
        assert await store.job_get(dup.id) is None
        assert ids(await store.job_list(JobQuery(idempotency_key="pay-1"))) == [first.id]
        # still held while the job runs
        await claim_one(store, first.id, now=T0 + 2)
        [res] = await store.job_insert_many([make(key="pay-1", tenant="t1")], T0 + 3)
        assert (res.created, res.job.id) == (False, first.id)

    async def test_duplicate_keys_within_one_batch_create_one_job(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        a, b, other = make(key="k"), make(key="k"), make(key="k2")

        results = await store.job_insert_many([a, b, other], T0)

        assert [r.created for r in results] == [True, False, True]
        assert [r.job.id for r in results] == [a.id, a.id, other.id]
        assert (await store.queue_counts("money", T0)).waiting == 2

    async def test_same_key_for_different_tenants_does_not_collide(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        jobs = [make(key="pay-1", tenant="t1"), make(key="pay-1", tenant="t2"),
                make(key="pay-1", tenant=None)]

        results = await store.job_insert_many(jobs, T0)

        assert all(r.created for r in results)
        assert len({r.job.id for r in results}) == 3

    async def test_completed_job_holds_its_key_until_key_until(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(key="pay-1")
        await completed(store, job, key_until=T0 + 100)

        [held] = await store.job_insert_many([make(key="pay-1")], T0 + 99)
        assert (held.created, held.job.id, held.job.state) == (False, job.id, C)

        fresh = make(key="pay-1")
        [freed] = await store.job_insert_many([fresh], T0 + 101)
        assert (freed.created, freed.job.id) == (True, fresh.id)

    @pytest.mark.parametrize("ending", ["fail", "cancel_running", "cancel_waiting"])
    async def test_failed_or_cancelled_job_frees_its_key(self, store_factory: StoreFactory,
                                                         ending: str) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(key="pay-1")
        await insert(store, job)
        if ending == "cancel_waiting":
            await store.job_cancel(job.id, T0 + 1)
        else:
            running = await claim_one(store, job.id)
            kind = SettleKind.FAIL if ending == "fail" else SettleKind.CANCEL
            await store.job_settle_many([settle(running, kind, T0 + 1)])

        fresh = make(key="pay-1")
        [res] = await store.job_insert_many([fresh], T0 + 2)

        assert (res.created, res.job.id) == (True, fresh.id)
        assert (await get(store, job.id)).state in (F, X)

    async def test_concurrent_inserts_with_one_key_create_exactly_one_job(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        candidates = [make(key="race", tenant="t1") for _ in range(25)]

        batches = await asyncio.gather(*(store.job_insert_many([j], T0) for j in candidates))

        results = [r for batch in batches for r in batch]
        assert sum(r.created for r in results) == 1
        assert len({r.job.id for r in results}) == 1
        listed = await store.job_list(JobQuery(idempotency_key="race"))
        assert len(listed) == 1
        assert (await store.queue_counts("money", T0)).waiting == 1

    # --- operator actions -----------------------------------------------------------------

    async def test_cancel_of_a_waiting_job_cancels_it(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)

        cancelled = await store.job_cancel(job.id, T0 + 5)

        assert (cancelled.state, cancelled.finished_at) == (X, T0 + 5)
        assert (await get(store, job.id)).state is X
        assert await claim(store, now=T0 + 6) == []
        counts = await store.queue_counts("money", T0 + 6)
        assert (counts.waiting, counts.cancelled) == (0, 1)

    async def test_cancel_of_a_running_job_leaves_it_to_the_engine(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)
        running = await claim_one(store, job.id)

        returned = await store.job_cancel(job.id, T0 + 1)

        assert returned.state is A
        assert (await get(store, job.id)).claim_token == running.claim_token

    @pytest.mark.parametrize("kind", [SettleKind.COMPLETE, SettleKind.FAIL, SettleKind.CANCEL])
    async def test_cancel_of_a_finished_job_is_an_illegal_transition(
            self, store_factory: StoreFactory, kind: SettleKind) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)
        running = await claim_one(store, job.id)
        await store.job_settle_many([settle(running, kind, T0 + 1, result_json=b"1",
                                            key_until=T0 + 1)])
        final = (await get(store, job.id)).state

        with pytest.raises(IllegalTransitionError) as info:
            await store.job_cancel(job.id, T0 + 2)

        assert info.value.job_id == job.id
        assert (await get(store, job.id)).state is final

    async def test_cancel_of_an_unknown_job_raises_not_found(self, store_factory: StoreFactory
                                                             ) -> None:
        store = await store_factory()
        with pytest.raises(JobNotFoundError) as info:
            await store.job_cancel("01NOSUCHJOB000000000000000", T0)
        assert info.value.job_id == "01NOSUCHJOB000000000000000"

    async def test_retry_failed_puts_a_dead_letter_job_back_with_history(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(max_attempts=1, key="pay-1")
        await dead_letter(store, job)

        revived = await store.job_retry_failed(job.id, T0 + 50, 2)

        assert (revived.state, revived.attempts, revived.max_attempts) == (W, 1, 3)
        assert (revived.run_at, revived.finished_at) == (T0 + 50, None)
        got = await get(store, job.id)
        assert got.state is W
        assert [e.message for e in got.errors] == ["boom"]
        counts = await store.queue_counts("money", T0 + 50)
        assert (counts.failed, counts.waiting) == (0, 1)
        # it holds its key again
        [dup] = await store.job_insert_many([make(key="pay-1")], T0 + 51)
        assert (dup.created, dup.job.id) == (False, job.id)
        again = await claim_one(store, job.id, now=T0 + 51)
        assert again.attempts == 2

    async def test_retry_failed_refuses_when_another_job_took_the_key(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(max_attempts=1, key="pay-1")
        await dead_letter(store, job)
        successor = make(key="pay-1")
        await insert(store, successor, now=T0 + 2)

        with pytest.raises(IdempotencyConflictError) as info:
            await store.job_retry_failed(job.id, T0 + 3, 2)

        assert info.value.job_id == job.id
        assert "pay-1" in info.value.message
        assert (await get(store, job.id)).state is F
        assert (await get(store, successor.id)).state is W
        [dup] = await store.job_insert_many([make(key="pay-1")], T0 + 4)
        assert dup.job.id == successor.id

    async def test_retry_of_a_job_that_is_not_failed_is_illegal(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        job = Jobs()()
        await insert(store, job)

        with pytest.raises(IllegalTransitionError):
            await store.job_retry_failed(job.id, T0, 2)
        with pytest.raises(JobNotFoundError):
            await store.job_retry_failed("01NOSUCHJOB000000000000000", T0, 2)
        assert (await get(store, job.id)).state is W

    async def test_progress_is_recorded_only_for_the_current_claim(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job, idle = make(), make(priority=1)
        await insert(store, job, idle)
        [running] = await claim(store, limit=1)

        assert await store.job_progress(job.id, running.claim_token, 40)
        assert (await get(store, job.id)).progress == 40
        assert not await store.job_progress(job.id, running.claim_token + 1, 90)
        assert not await store.job_progress(idle.id, 0, 90)
        assert not await store.job_progress("01NOSUCHJOB000000000000000", 1, 90)
        assert (await get(store, job.id)).progress == 40
        assert (await get(store, idle.id)).progress == 0

        assert await store.job_progress(job.id, running.claim_token, 150)
        assert (await get(store, job.id)).progress == 100
        assert await store.job_progress(job.id, running.claim_token, -5)
        assert (await get(store, job.id)).progress == 0

    # --- listing --------------------------------------------------------------------------

    async def _listing_fixture(self, store: Store) -> dict[str, Job]:
        """Jobs across queues, types, tenants, keys and states (some finished)."""
        make = Jobs()
        jobs = {
            "pay_t1": make(tenant="t1", key="pay-a", priority=10),
            "pay_t2": make(tenant="t2", key="pay-b", priority=9),
            "refund_t1": make(type="refund-process", tenant="t1", priority=8),
            "email_t1": make(queue="communication", type="send-email", tenant="t1"),
            "done": make(tenant="t2", priority=7),
            "dead": make(tenant="t1", priority=6, max_attempts=1),
            "gone": make(type="refund-process", tenant="t2", priority=5),
            "later": make(run_at=T0 + 500, priority=1),
        }
        await insert(store, *jobs.values())
        await store.job_cancel(jobs["gone"].id, T0 + 1)
        claimed = {j.id: j for j in await claim(store, limit=4, now=T0 + 2)}
        # claimed: pay_t1, pay_t2, refund_t1, done
        done = claimed[jobs["done"].id]
        await store.job_settle_many([settle(done, SettleKind.COMPLETE, T0 + 3, result_json=b"1",
                                            key_until=T0 + 3)])
        [dead] = await claim(store, limit=1, now=T0 + 4)
        assert dead.id == jobs["dead"].id
        await store.job_settle_many([settle(dead, SettleKind.FAIL, T0 + 5,
                                            error=boom(dead, T0 + 5))])
        return jobs

    async def test_list_filters_by_queue_state_type_tenant_and_key(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        jobs = await self._listing_fixture(store)
        j = {name: job.id for name, job in jobs.items()}

        async def listed(**kw: Any) -> set[str]:
            return set(ids(await store.job_list(JobQuery(**kw))))

        everything = set(j.values())
        assert await listed() == everything
        assert await listed(queue="communication") == {j["email_t1"]}
        assert await listed(queue="money") == everything - {j["email_t1"]}
        assert await listed(states=frozenset({A})) == {j["pay_t1"], j["pay_t2"], j["refund_t1"]}
        assert await listed(states=frozenset({W})) == {j["email_t1"], j["later"]}
        assert await listed(states=frozenset({C, F, X})) == {j["done"], j["dead"], j["gone"]}
        assert await listed(states=frozenset({F})) == {j["dead"]}
        assert await listed(type="refund-process") == {j["refund_t1"], j["gone"]}
        assert await listed(tenant_id="t2") == {j["pay_t2"], j["done"], j["gone"]}
        assert await listed(idempotency_key="pay-b") == {j["pay_t2"]}
        assert await listed(queue="money", tenant_id="t1",
                            states=frozenset({A, F})) == {j["pay_t1"], j["refund_t1"], j["dead"]}
        assert await listed(tenant_id="nobody") == set()

    async def test_list_orders_by_id_and_pages_with_a_cursor(self, store_factory: StoreFactory
                                                             ) -> None:
        store = await store_factory()
        jobs = await self._listing_fixture(store)
        all_ids = sorted(job.id for job in jobs.values())

        newest = ids(await store.job_list(JobQuery()))
        oldest = ids(await store.job_list(JobQuery(newest_first=False)))
        assert newest == all_ids[::-1]
        assert oldest == all_ids

        for newest_first in (True, False):
            pages: list[list[str]] = []
            after = None
            while True:
                page = ids(await store.job_list(JobQuery(after=after, limit=3,
                                                         newest_first=newest_first)))
                if not page:
                    break
                assert len(page) <= 3
                pages.append(page)
                after = page[-1]
            flat = [i for p in pages for i in p]
            assert flat == (all_ids[::-1] if newest_first else all_ids)
            assert [len(p) for p in pages] == [3, 3, 2]

    # --- queues ---------------------------------------------------------------------------

    async def test_queue_counts_show_every_state(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        to_complete, to_fail, to_run = (make(priority=10), make(priority=9, max_attempts=1),
                                        make(priority=8))
        ready, to_cancel = make(priority=2), make(priority=1)
        delayed = make(run_at=T0 + 60)
        elsewhere = make(queue="communication", type="send-email")
        await insert(store, to_complete, to_fail, to_run, ready, to_cancel, delayed, elsewhere)
        rc, rf, _ = await claim(store, limit=3)
        await store.job_settle_many([
            settle(rc, SettleKind.COMPLETE, T0 + 1, result_json=b"1", key_until=T0 + 1),
            settle(rf, SettleKind.FAIL, T0 + 1, error=boom(rf, T0 + 1)),
        ])
        await store.job_cancel(to_cancel.id, T0 + 1)

        assert await store.queue_counts("money", T0 + 2) == QueueCounts(
            waiting=2, delayed=1, active=1, completed=1, failed=1, cancelled=1, paused=False)
        assert await store.queue_counts("communication", T0 + 2) == QueueCounts(waiting=1)
        assert await store.queue_counts("background", T0 + 2) == QueueCounts()

    async def test_queue_counts_stop_counting_a_job_as_delayed_once_it_is_due(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await insert(store, Jobs()(run_at=T0 + 60))

        before = await store.queue_counts("money", T0 + 59)
        after = await store.queue_counts("money", T0 + 61)

        assert (before.waiting, before.delayed) == (1, 1)
        assert (after.waiting, after.delayed) == (1, 0)

    async def test_pause_and_resume_a_queue(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        assert await store.queue_paused() == set()

        await store.queue_set_paused("money", True)
        await store.queue_set_paused("money", True)
        await store.queue_set_paused("background", True)
        assert await store.queue_paused() == {"money", "background"}
        assert (await store.queue_counts("money", T0)).paused
        assert not (await store.queue_counts("communication", T0)).paused

        await store.queue_set_paused("money", False)
        assert await store.queue_paused() == {"background"}
        assert not (await store.queue_counts("money", T0)).paused

    async def test_prune_removes_only_finished_jobs_the_rules_match(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        old, new, refund = make(priority=10), make(priority=9), make(type="refund-process",
                                                                     priority=8)
        dead, live = make(priority=7, max_attempts=1), make(priority=1)
        await insert(store, old, new, refund, dead, live)
        r_old, r_new, r_refund, r_dead = await claim(store, limit=4)
        await store.job_settle_many([
            settle(r_old, SettleKind.COMPLETE, T0 + 10, result_json=b"1", key_until=T0 + 10),
            settle(r_new, SettleKind.COMPLETE, T0 + 20, result_json=b"1", key_until=T0 + 20),
            settle(r_refund, SettleKind.COMPLETE, T0 + 10, result_json=b"1", key_until=T0 + 10),
            settle(r_dead, SettleKind.FAIL, T0 + 10, error=boom(r_dead, T0 + 10)),
        ])

        n = await store.job_prune([PruneRule(queue="money", state=C, before=T0 + 15,
                                             type="payment-process")])

        assert n == 1
        assert await store.job_get(old.id) is None
        for kept in (new, refund, dead, live):
            assert await store.job_get(kept.id) is not None
        counts = await store.queue_counts("money", T0 + 30)
        assert (counts.completed, counts.failed, counts.waiting) == (2, 1, 1)

        n = await store.job_prune([PruneRule(queue="money", state=C, before=T0 + 1000),
                                   PruneRule(queue="money", state=F, before=T0 + 1000),
                                   PruneRule(queue="money", state=W, before=T0 + 1000)])

        assert n == 3
        assert ids(await store.job_list(JobQuery())) == [live.id]
        counts = await store.queue_counts("money", T0 + 30)
        assert (counts.completed, counts.failed, counts.waiting) == (0, 0, 1)

    async def test_pruning_keeps_a_job_holding_its_key_then_frees_the_key(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(key="pay-1", tenant="t1")
        await completed(store, job, key_until=T0 + 1000)

        # Past retention but still holding its key: kept, and the key still deduplicates.
        assert await store.job_prune([PruneRule(queue="money", state=C, before=T0 + 10)]) == 0
        [dup] = await store.job_insert_many([make(key="pay-1", tenant="t1")], T0 + 20)
        assert (dup.created, dup.job.id) == (False, job.id)

        # Once the key has expired, retention removes the job and the key is free.
        assert await store.job_prune([PruneRule(queue="money", state=C, before=T0 + 2000)]) == 1
        fresh = make(key="pay-1", tenant="t1")
        [res] = await store.job_insert_many([fresh], T0 + 2001)
        assert (res.created, res.job.id) == (True, fresh.id)
        assert await store.job_get(job.id) is None

    async def test_next_run_at_is_the_earliest_delayed_job(self, store_factory: StoreFactory
                                                           ) -> None:
        store = await store_factory()
        make = Jobs()
        assert await store.next_run_at("money") is None
        ready, soon, later = make(), make(run_at=T0 + 30), make(run_at=T0 + 90)
        await insert(store, ready, later, soon)

        assert await store.next_run_at("money") == T0 + 30
        assert await store.next_run_at("communication") is None

        await store.job_cancel(soon.id, T0 + 1)
        assert await store.next_run_at("money") == T0 + 90
        await store.job_cancel(later.id, T0 + 1)
        assert await store.next_run_at("money") is None

    async def test_discard_deletes_a_failed_job_and_frees_its_key(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job, waiting = make(key="k-9", tenant="t1"), make()
        await dead_letter(store, job)
        await insert(store, waiting)

        gone = await store.job_discard(job.id)

        assert (gone.id, gone.state) == (job.id, F)
        assert await store.job_get(job.id) is None
        assert (await store.queue_counts("money", T0 + 2)).failed == 0
        [fresh] = await store.job_insert_many([make(key="k-9", tenant="t1")], T0 + 2)
        assert fresh.created
        with pytest.raises(IllegalTransitionError):
            await store.job_discard(waiting.id)
        with pytest.raises(JobNotFoundError):
            await store.job_discard(job.id)

    async def test_update_result_replaces_only_a_finished_jobs_result_durably(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        done, dead, later = make(priority=10, key="pay-7"), make(priority=9), make(priority=1)
        await insert(store, done, dead, later)
        rd, rx = await claim(store, limit=2)
        await store.job_settle_many([
            settle(rd, SettleKind.COMPLETE, T0 + 1, result_json=b'{"status":"pending"}',
                   key_until=T0 + 500),
            settle(rx, SettleKind.FAIL, T0 + 1, error=boom(rx, T0 + 1)),
        ])

        updated = await store.job_update_result(done.id, b'{"status":"succeeded"}')
        await store.job_update_result(dead.id, b'{"note":1}')

        assert (updated.id, updated.state, updated.result) == (done.id, C, {"status": "succeeded"})
        got = await get(store, done.id)
        assert (got.state, got.result, got.finished_at, got.key_until) == (
            C, {"status": "succeeded"}, T0 + 1, T0 + 500)
        failed = await get(store, dead.id)
        assert (failed.state, failed.result, [e.message for e in failed.errors]) == (
            F, {"note": 1}, ["boom"])
        with pytest.raises(IllegalTransitionError):
            await store.job_update_result(later.id, b"{}")
        running = await claim_one(store, later.id)
        with pytest.raises(IllegalTransitionError):
            await store.job_update_result(running.id, b"{}")
        assert (await get(store, later.id)).result is None
        with pytest.raises(JobNotFoundError):
            await store.job_update_result("01NOSUCHJOB000000000000000", b"{}")
        counts = await store.queue_counts("money", T0 + 2)
        assert (counts.completed, counts.failed, counts.active) == (1, 1, 1)
        [held] = await store.job_insert_many([make(key="pay-7")], T0 + 2)
        assert (held.created, held.job.id) == (False, done.id)
        if store_factory.survives_restart:
            store, _ = await store_factory.reopen(store, T0 + 3)
            assert (await get(store, done.id)).result == {"status": "succeeded"}
            assert (await get(store, dead.id)).result == {"note": 1}

    # --- analytics events and reports -------------------------------------------------------

    async def test_events_query_filters_by_tenant_period_type_and_venue(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.events_append([
            event("e1", at=T0 + 10, venue="v1", user_id="u1", event_id="gig-1",
                  data_json=orjson.dumps({"seat": "A1", "price": 12.5})),
            event("e2", at=T0 + 5, type="checkout"),
            event("e3", at=T0 + 20, venue="v2"),
            event("e4", at=T0 + 100),  # at the end of the period: outside
            event("e5", at=T0 - 1),  # before it
            event("e6", tenant="t2", at=T0 + 10),
            event("e7", tenant=None, at=T0 + 10),
        ])

        period = await store.events_query("t1", T0, T0 + 100)
        assert [e.id for e in period] == ["e2", "e1", "e3"]  # oldest first
        got = period[1]
        assert (got.tenant_id, got.event_type, got.venue_id, got.user_id, got.event_id,
                got.occurred_at, got.recorded_at) == ("t1", "page_view", "v1", "u1", "gig-1",
                                                      T0 + 10, T0 + 10.5)
        assert got.data == {"seat": "A1", "price": 12.5}
        assert [e.id for e in await store.events_query("t1", T0, T0 + 100, "page_view")] == [
            "e1", "e3"]
        assert [e.id for e in await store.events_query("t1", T0, T0 + 101, venue_id="v2")] == [
            "e3"]
        assert [e.id for e in await store.events_query("t1", T0 - 1, T0 + 101, limit=2)] == [
            "e5", "e2"]
        assert [e.id for e in await store.events_query("t2", T0, T0 + 100)] == ["e6"]
        assert [e.id for e in await store.events_query(None, T0, T0 + 100)] == ["e7"]

    async def test_events_append_skips_an_event_already_recorded(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.events_append([event("e1", type="first")])
        await store.events_append([event("e1", type="again"), event("e2")])
        await store.events_append([])

        found = await store.events_query("t1", T0, T0 + 1)
        assert [(e.id, e.event_type) for e in found] == [("e1", "first"), ("e2", "page_view")]

    async def test_events_prune_removes_only_older_events(self, store_factory: StoreFactory
                                                          ) -> None:
        store = await store_factory()
        await store.events_append([event("old1", at=T0 - 50), event("old2", tenant="t2",
                                                                     at=T0 - 1),
                                   event("edge", at=T0), event("young", at=T0 + 50)])

        assert await store.events_prune(T0) == 2
        assert await store.events_prune(T0) == 0
        left = await store.events_query("t1", T0 - 100, T0 + 100)
        assert [e.id for e in left] == ["edge", "young"]
        assert await store.events_query("t2", T0 - 100, T0 + 100) == []

    async def test_report_put_then_get_round_trips_and_a_rerun_replaces_it(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        content = "type,count\r\nsnö ☃,3\r\n".encode()
        made = report("r1", content=content, user_id="u9", venue_id="v1", format="csv")
        await store.report_put(made)

        got = await store.report_get("r1")
        assert got == made
        assert got is not None and got.content == content and got.size == len(content)
        assert await store.report_get("nope") is None

        again = report("r1", content=b"{}", format="json", content_type="application/json")
        await store.report_put(again)
        assert await store.report_get("r1") == again

    async def test_report_list_is_per_tenant_newest_first_without_content(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        for i, tenant in enumerate(("t1", "t2", "t1", "t1", None)):
            await store.report_put(report(f"r{i}", tenant=tenant, created_at=T0 + i))

        listed = await store.report_list("t1")
        assert [r.id for r in listed] == ["r3", "r2", "r0"]
        assert all(type(r) is ReportInfo for r in listed)
        first = await store.report_get("r3")
        assert first is not None and listed[0] == first.info()
        assert [r.id for r in await store.report_list("t1", limit=2)] == ["r3", "r2"]
        assert [r.id for r in await store.report_list("t2")] == ["r1"]
        assert [r.id for r in await store.report_list(None)] == ["r4"]
        assert await store.report_list("t3") == []

    async def test_report_prune_removes_only_older_reports(self, store_factory: StoreFactory
                                                           ) -> None:
        store = await store_factory()
        for i, at in enumerate((T0 - 10, T0 - 1, T0, T0 + 10)):
            await store.report_put(report(f"r{i}", created_at=at))

        assert await store.report_prune(T0) == 2
        assert await store.report_prune(T0) == 0
        assert [r.id for r in await store.report_list("t1")] == ["r3", "r2"]
        assert await store.report_get("r0") is None

    async def test_events_and_reports_survive_a_restart(self, store_factory: StoreFactory
                                                        ) -> None:
        store = await store_factory()
        await store.events_append([event(f"e{i}", at=T0 + i) for i in range(50)])
        await store.report_put(report("r1", content=b"x" * 5000))

        store, _ = await store_factory.reopen(store, T0 + 60)

        assert len(await store.events_query("t1", T0, T0 + 100, limit=100)) == 50
        got = await store.report_get("r1")
        assert got is not None and got.content == b"x" * 5000

    # --- monitor: oldest due job, alerts, snapshots ------------------------------------------

    async def test_oldest_due_is_the_earliest_run_at_of_due_waiting_jobs(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        assert await store.queue_oldest_due("money", T0) is None
        newer = make(run_at=T0 - 10, priority=9, tenant="t1")
        older = make(run_at=T0 - 50, priority=1, tenant="t2")
        later = make(run_at=T0 + 100)
        await insert(store, newer, older, later)

        assert await store.queue_oldest_due("money", T0) == T0 - 50
        assert await store.queue_oldest_due("communication", T0) is None
        await store.job_cancel(older.id, T0)
        assert await store.queue_oldest_due("money", T0) == T0 - 10
        # A delayed job counts once it is due, even before anything claimed it.
        assert await store.queue_oldest_due("money", T0 + 200) == T0 - 10
        await claim_one(store, newer.id)
        assert await store.queue_oldest_due("money", T0) is None
        assert await store.queue_oldest_due("money", T0 + 100) == T0 + 100

    async def test_oldest_due_counts_jobs_parked_by_the_gate(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        parked, ready = make(run_at=T0 - 300, priority=1), make(run_at=T0 - 5, priority=9)
        await insert(store, parked, ready)

        def hold_back(job: Job, now: float) -> Deferral | None:
            return Deferral("stripe", "rate_limited") if job.id == parked.id else None

        got = await store.job_fetch_available("money", 10, T0, LEASE_S, hold_back)
        assert ids(got.claimed) == [ready.id]
        assert await store.queue_oldest_due("money", T0) == T0 - 300
        await store.job_cancel(parked.id, T0)
        assert await store.queue_oldest_due("money", T0) is None

    async def test_alert_insert_assigns_increasing_ids_and_round_trips(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        first = await store.alert_insert(new_alert(channels={"log": "logged"}))
        second = await store.alert_insert(new_alert(at=T0 + 1, severity="info", queue=None,
                                                    alert_type="test"))
        assert second.id > first.id >= 1
        got = await store.alert_get(first.id)
        assert got == first
        assert isinstance(got, AlertRecord)
        assert (got.severity, got.alert_type, got.queue_name, got.metric_value,
                got.threshold_value, got.created_at, dict(got.channels), got.acknowledged,
                got.acknowledged_by, got.acknowledged_at) == (
            "critical", "queue_depth", "money", 75.0, 50.0, T0, {"log": "logged"}, False, None,
            None)
        assert await store.alert_get(second.id + 100) is None

    async def test_alert_list_filters_newest_first(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        a = await store.alert_insert(new_alert(at=T0))
        b = await store.alert_insert(new_alert(at=T0 + 10, severity="warning",
                                               queue="communication"))
        c = await store.alert_insert(new_alert(at=T0 + 20, alert_type="job_age"))
        d = await store.alert_insert(new_alert(at=T0 + 20))  # same time: higher id first

        def listed(alerts: list[AlertRecord]) -> list[int]:
            return [x.id for x in alerts]

        assert listed(await store.alert_list()) == [d.id, c.id, b.id, a.id]
        assert listed(await store.alert_list("critical")) == [d.id, c.id, a.id]
        assert listed(await store.alert_list(limit=2)) == [d.id, c.id]
        assert listed(await store.alert_list(since=T0 + 10)) == [d.id, c.id, b.id]
        assert listed(await store.alert_list(queue="communication")) == [b.id]
        assert listed(await store.alert_list(alert_type="job_age")) == [c.id]
        await store.alert_acknowledge(a.id, "u1", T0 + 30)
        assert listed(await store.alert_list(acknowledged=True)) == [a.id]
        assert listed(await store.alert_list(acknowledged=False)) == [d.id, c.id, b.id]

    async def test_alert_acknowledge_records_who_and_when_once(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        alert = await store.alert_insert(new_alert())
        done = await store.alert_acknowledge(alert.id, "user-7", T0 + 5)
        assert done is not None
        assert (done.acknowledged, done.acknowledged_by, done.acknowledged_at) == (
            True, "user-7", T0 + 5)
        again = await store.alert_acknowledge(alert.id, "user-8", T0 + 9)
        assert again == done
        assert await store.alert_get(alert.id) == done
        assert await store.alert_acknowledge(alert.id + 1, "user-7", T0) is None

    async def test_alert_set_channels_merges(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        alert = await store.alert_insert(new_alert(channels={"log": "logged",
                                                             "email": "pending"}))
        await store.alert_set_channels(alert.id, {"email": "queued", "sms": "skipped"})
        await store.alert_set_channels(alert.id + 50, {"email": "sent"})  # no such alert
        got = await store.alert_get(alert.id)
        assert got is not None
        assert dict(got.channels) == {"log": "logged", "email": "queued", "sms": "skipped"}

    async def test_alert_prune_removes_exactly_the_older_alerts(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        made = [await store.alert_insert(new_alert(at=at))
                for at in (T0 - 10, T0 - 1, T0, T0 + 10)]
        assert await store.alert_prune(T0) == 2
        assert await store.alert_prune(T0) == 0
        assert [a.id for a in await store.alert_list()] == [made[3].id, made[2].id]
        assert await store.alert_get(made[0].id) is None

    async def test_snapshots_list_and_prune(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.snapshot_insert([snapshot("money", at=T0 - 5),
                                     snapshot("communication", at=T0 - 5)])
        await store.snapshot_insert([snapshot("money", at=T0, waiting=9)])
        await store.snapshot_insert([])

        money = await store.snapshot_list("money", T0 - 100, T0 + 1)
        assert money == [snapshot("money", at=T0 - 5), snapshot("money", at=T0, waiting=9)]
        assert len(await store.snapshot_list(None, T0 - 100, T0 + 1)) == 3
        # Equal times keep their insertion order.
        assert await store.snapshot_list(None, T0 - 100, T0) == [
            snapshot("money", at=T0 - 5), snapshot("communication", at=T0 - 5)]
        assert await store.snapshot_list("money", T0 + 1, T0 + 100) == []
        assert await store.snapshot_prune(T0) == 2
        assert await store.snapshot_list(None, 0, T0 + 100) == [
            snapshot("money", at=T0, waiting=9)]

    async def test_alerts_and_snapshots_survive_a_restart_and_ids_are_never_reused(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        alert = await store.alert_insert(new_alert(channels={"stored": "stored"}))
        await store.alert_acknowledge(alert.id, "u1", T0 + 1)
        await store.snapshot_insert([snapshot(at=T0 + i) for i in range(5)])

        store, _ = await store_factory.reopen(store, T0 + 60)

        got = await store.alert_get(alert.id)
        assert got is not None and got.acknowledged_by == "u1"
        assert dict(got.channels) == {"stored": "stored"}
        assert len(await store.snapshot_list("money", T0, T0 + 10)) == 5
        assert await store.alert_prune(T0 + 1000) == 1
        store, _ = await store_factory.reopen(store, T0 + 120)
        fresh = await store.alert_insert(new_alert(at=T0 + 120))
        assert fresh.id > alert.id

    # --- restarts (backends that keep state) ----------------------------------------------

    async def test_waiting_jobs_survive_a_restart_in_dispatch_order(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        jobs = [make(priority=5, key="k1", tenant="t1", user_id="u1", expires_at=T0 + 999,
                     callback_url="https://example.com/cb", ordering_key="o1"),
                make(priority=10, run_at=T0 - 1), make(priority=10, run_at=T0 - 2),
                make(priority=1, data={"deep": {"x": [1, "y"]}}),
                make(run_at=T0 + 100)]
        await insert(store, *jobs)
        before = {j.id: fields(await get(store, j.id)) for j in jobs}

        store, report = await store_factory.reopen(store, T0 + 10)

        assert report.loaded == 5
        assert report.stalled == []
        assert {j.id: fields(await get(store, j.id)) for j in jobs} == before
        claimed = await claim(store, now=T0 + 10)
        assert ids(claimed) == [jobs[2].id, jobs[1].id, jobs[0].id, jobs[3].id]
        assert await store.next_run_at("money") == T0 + 100
        [dup] = await store.job_insert_many([make(key="k1", tenant="t1")], T0 + 11)
        assert (dup.created, dup.job.id) == (False, jobs[0].id)

    async def test_jobs_read_back_after_a_restart_list_cancel_and_expire_whole(
            self, store_factory: StoreFactory) -> None:
        # A restart may read only what it needs to schedule a job and the rest on first touch:
        # listing, cancelling and expiring such a job must see, and keep, every field.
        store = await store_factory()
        make = Jobs()
        keep = make(type="refund-process", data={"transactionId": "t-1"}, user_id="u1",
                    callback_url="https://example.com/cb")
        gone = make(type="refund-process", data={"transactionId": "t-2"}, expires_at=T0 + 5)
        other = make(data={"n": 1})
        await insert(store, keep, gone, other)
        before = fields(await get(store, keep.id))

        store, _ = await store_factory.reopen(store, T0 + 1)

        listed = await store.job_list(JobQuery(type="refund-process", limit=10))
        assert sorted(ids(listed)) == sorted([keep.id, gone.id])
        assert [fields(j) for j in listed if j.id == keep.id] == [before]
        cancelled = await store.job_cancel(keep.id, T0 + 2)
        assert (cancelled.state, cancelled.data) == (X, {"transactionId": "t-1"})
        res = await store.job_fetch_available("money", 10, T0 + 10, 30.0)
        assert ids(res.expired) == [gone.id] and ids(res.claimed) == [other.id]

        store, _ = await store_factory.reopen(store, T0 + 11)

        again = await get(store, keep.id)
        assert (again.state, again.data, again.user_id, again.callback_url) == (
            X, {"transactionId": "t-1"}, "u1", "https://example.com/cb")
        expired = await get(store, gone.id)
        assert (expired.state, expired.data) == (F, {"transactionId": "t-2"})
        assert [e.code for e in expired.errors] == ["expired"]

    async def test_jobs_active_at_shutdown_come_back_waiting_as_stalled(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job, last_try = make(max_attempts=3, priority=10), make(max_attempts=1, priority=9)
        await insert(store, job, last_try)
        await claim(store, limit=2)

        store, report = await store_factory.reopen(store, T0 + 5)

        assert sorted(ids(report.stalled)) == sorted([job.id, last_try.id])
        got = await get(store, job.id)
        assert (got.state, got.stalls, got.attempts, got.lease_until) == (W, 1, 1, None)
        assert [e.type for e in got.errors] == ["Stalled"]
        exhausted = await get(store, last_try.id)
        assert (exhausted.state, exhausted.stalls) == (F, 1)
        counts = await store.queue_counts("money", T0 + 5)
        assert (counts.active, counts.waiting, counts.failed) == (0, 1, 1)
        again = await claim_one(store, job.id, now=T0 + 5)
        assert again.attempts == 2
        # the stall was written back: a second restart does not count it again
        store, report = await store_factory.reopen(store, T0 + 6)
        assert ids(report.stalled) == [job.id]
        assert (await get(store, job.id)).stalls == 2

    async def test_completed_job_holds_its_key_across_a_restart(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(key="pay-1", tenant="t1")
        await completed(store, job, key_until=T0 + 1000, result_json=b"{\"ok\":true}")

        store, _ = await store_factory.reopen(store, T0 + 10)

        [held] = await store.job_insert_many([make(key="pay-1", tenant="t1")], T0 + 10)
        assert (held.created, held.job.id, held.job.state) == (False, job.id, C)
        assert held.job.result == {"ok": True}

        store, _ = await store_factory.reopen(store, T0 + 2000)
        fresh = make(key="pay-1", tenant="t1")
        [freed] = await store.job_insert_many([fresh], T0 + 2000)
        assert (freed.created, freed.job.id) == (True, fresh.id)

    async def test_queue_counts_and_pauses_survive_a_restart(self, store_factory: StoreFactory
                                                             ) -> None:
        store = await store_factory()
        make = Jobs()
        a, b, c, d = make(priority=10), make(priority=9, max_attempts=1), make(), make()
        await insert(store, a, b, c, d)
        ra, rb = await claim(store, limit=2)
        await store.job_settle_many([
            settle(ra, SettleKind.COMPLETE, T0 + 1, result_json=b"1", key_until=T0 + 1),
            settle(rb, SettleKind.FAIL, T0 + 1, error=boom(rb, T0 + 1)),
        ])
        await store.job_cancel(c.id, T0 + 1)
        await store.queue_set_paused("money", True)
        await store.queue_set_paused("communication", True)
        await store.queue_set_paused("communication", False)
        before = await store.queue_counts("money", T0 + 2)

        store, _ = await store_factory.reopen(store, T0 + 2)

        assert await store.queue_paused() == {"money"}
        assert await store.queue_counts("money", T0 + 2) == before
        assert before == QueueCounts(waiting=1, completed=1, failed=1, cancelled=1, paused=True)

    async def test_background_jobs_are_not_kept_across_a_restart(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        bg = make(queue="background", type="analytics-track", key="a-1")
        bg_done = make(queue="background", type="generate-report")
        kept = make()
        await insert(store, bg, bg_done, kept)
        [running] = await claim(store, "background", limit=1)
        assert running.id == bg.id
        await store.job_settle_many([settle(running, SettleKind.FAIL, T0 + 1,
                                            error=boom(running, T0 + 1))])

        store, report = await store_factory.reopen(store, T0 + 2)

        assert report.loaded == 1
        assert await store.job_get(bg.id) is None
        assert await store.job_get(bg_done.id) is None
        assert await store.job_get(kept.id) is not None
        assert await store.queue_counts("background", T0 + 2) == QueueCounts()
        assert ids(await store.job_list(JobQuery(queue="background"))) == []
        if store_factory.backend == "sqlite":
            path = store.path  # type: ignore[attr-defined]
            with sqlite3.connect(path) as conn:
                rows = conn.execute("SELECT COUNT(*) FROM jobs WHERE queue='background'")
                assert rows.fetchone()[0] == 0
                rows = conn.execute("SELECT COUNT(*) FROM jobs")
                assert rows.fetchone()[0] == 1

    # --- backend specifics ----------------------------------------------------------------

    async def test_a_second_store_on_an_open_file_is_refused(self, store_factory: StoreFactory
                                                             ) -> None:
        store_factory.only("sqlite", "only the SQLite journal is owned by one process at a time")
        store = await store_factory()
        path = store.path  # type: ignore[attr-defined]
        second = store_factory.new_store()

        with pytest.raises(StoreLockedError) as info:
            await second.open(queue_map(), T0)

        assert path in str(info.value)
        assert info.value.code == "store_locked"
        assert await store.ping()
        await store.close()
        await second.open(queue_map(), T0)
        await second.close()

    async def test_finished_jobs_dropped_from_memory_are_still_readable(
            self, store_factory: StoreFactory) -> None:
        store_factory.only("sqlite", "only the SQLite store drops finished jobs from memory")
        store = await store_factory()
        make = Jobs()
        done, dead, gone = make(priority=10, key="pay-1"), make(priority=9, max_attempts=1), make()
        await insert(store, done, dead, gone)
        rd, rx = await claim(store, limit=2)
        await store.job_settle_many([
            settle(rd, SettleKind.COMPLETE, T0 + 1, result_json=b"[1,2]", key_until=T0 + 500),
            settle(rx, SettleKind.FAIL, T0 + 1, error=boom(rx, T0 + 1)),
        ])
        await store.job_cancel(gone.id, T0 + 2)
        memory = store.index.jobs  # type: ignore[attr-defined]
        assert not {done.id, dead.id, gone.id} & set(memory)

        got = await get(store, done.id)
        assert (got.state, got.result, got.key_until, got.finished_at) == (
            C, [1, 2], T0 + 500, T0 + 1)
        assert (await get(store, dead.id)).errors[0].message == "boom"
        assert (await get(store, gone.id)).state is X
        listed = await store.job_list(JobQuery(states=frozenset({C, F, X})))
        assert set(ids(listed)) == {done.id, dead.id, gone.id}
        assert ids(await store.job_list(JobQuery(idempotency_key="pay-1"))) == [done.id]
        [held] = await store.job_insert_many([make(key="pay-1")], T0 + 3)
        assert (held.created, held.job.id, held.job.result) == (False, done.id, [1, 2])
        # operator actions read evicted records back too
        with pytest.raises(IllegalTransitionError):
            await store.job_cancel(done.id, T0 + 4)
        revived = await store.job_retry_failed(dead.id, T0 + 4, 1)
        assert revived.state is W
        assert ids(await claim(store, now=T0 + 4)) == [dead.id]

    # --- idempotency key expiry -------------------------------------------------------------

    async def test_release_keys_frees_exactly_the_ended_holds_and_counts_them(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        short, long = make(key="pay-short", priority=9), make(key="pay-long", priority=8)
        bg = make(queue="background", type="generate-report", key="bg-1")
        await insert(store, short, long, bg)
        a, b = await claim(store, limit=2)
        [c] = await claim(store, "background")
        await store.job_settle_many([
            settle(a, SettleKind.COMPLETE, T0 + 1, result_json=b"1", key_until=T0 + 100),
            settle(b, SettleKind.COMPLETE, T0 + 1, result_json=b"2", key_until=T0 + 500),
            settle(c, SettleKind.COMPLETE, T0 + 1, result_json=b"3", key_until=T0 + 50)])

        assert await store.job_release_keys(T0 + 10) == 0
        assert await store.job_release_keys(T0 + 200) == 2  # pay-short and bg-1
        assert await store.job_release_keys(T0 + 200) == 0  # nothing is released twice

        assert (await get(store, short.id)).key_until is None
        assert (await get(store, long.id)).key_until == T0 + 500
        [dup] = await store.job_insert_many([make(key="pay-long")], T0 + 201)
        assert (dup.created, dup.job.id) == (False, long.id)
        fresh = make(key="pay-short")
        [res] = await store.job_insert_many([fresh], T0 + 201)
        assert (res.created, res.job.id) == (True, fresh.id)
        # A released job no longer waits on its key to leave by retention.
        assert await store.job_prune([PruneRule(queue="money", state=C, before=T0 + 300)]) == 1
        assert await store.job_get(short.id) is None and await store.job_get(long.id) is not None

    async def test_released_keys_stay_released_across_a_restart(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        make = Jobs()
        job = make(key="pay-1")
        await completed(store, job, key_until=T0 + 100)
        assert await store.job_release_keys(T0 + 150) == 1

        store, _ = await store_factory.reopen(store, T0 + 160)

        assert await store.job_release_keys(T0 + 170) == 0
        assert (await get(store, job.id)).key_until is None

    # --- cron schedules ---------------------------------------------------------------------

    async def test_schedules_put_get_list_and_delete(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        nightly, hourly = schedule("nightly", cron="0 2 * * *"), schedule("hourly")

        assert await store.schedule_put(nightly) and await store.schedule_put(hourly)
        assert not await store.schedule_put(schedule("hourly", cron="*/5 * * * *"))
        assert await store.schedule_get("hourly") == hourly
        assert [s.name for s in await store.schedule_list()] == ["hourly", "nightly"]
        replaced = schedule("hourly", cron="*/5 * * * *")
        assert await store.schedule_put(replaced, replace=True)
        assert await store.schedule_get("hourly") == replaced

        assert await store.schedule_delete("hourly")
        assert not await store.schedule_delete("hourly")
        assert await store.schedule_get("hourly") is None
        assert await store.schedule_list() == [nightly]

    async def test_schedule_claim_is_a_compare_and_set_on_the_version(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.schedule_put(schedule("hourly"))

        first = await store.schedule_claim("hourly", 0, last_slot=T0 + 3600,
                                           pending=(T0 + 3600,), at=T0 + 3601)
        second = await store.schedule_claim("hourly", 0, last_slot=T0 + 3600,
                                            pending=(T0 + 3600,), at=T0 + 3601)
        assert first is not None and second is None
        assert (first.version, first.last_slot, first.pending, first.pending_at) == (
            1, T0 + 3600, (T0 + 3600,), T0 + 3601)
        assert await store.schedule_claim("gone", 0, last_slot=T0, pending=(), at=T0) is None

        done = await store.schedule_settle("hourly", (T0 + 3600,), job_id="j1", error=None)
        assert done is not None
        assert (done.version, done.pending, done.pending_at, done.last_job_id) == (
            2, (), None, "j1")
        # A settle of slots that are no longer the pending ones records, but clears nothing.
        again = await store.schedule_claim("hourly", 2, last_slot=T0 + 7200,
                                           pending=(T0 + 7200,), at=T0 + 7201)
        assert again is not None
        stale = await store.schedule_settle("hourly", (T0 + 3600,), job_id=None,
                                            error="boom")
        assert stale is not None
        assert (stale.pending, stale.last_job_id, stale.last_error) == ((T0 + 7200,), "j1",
                                                                        "boom")
        assert await store.schedule_get("hourly") == stale

    async def test_schedules_survive_a_restart(self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.schedule_put(schedule("hourly"))
        await store.schedule_put(schedule("doomed"))
        await store.schedule_put(schedule("paused"))
        claimed = await store.schedule_claim("hourly", 0, last_slot=T0 + 3600,
                                             pending=(T0 + 3600, T0 + 7200), at=T0 + 7201)
        paused = await store.schedule_set_paused("paused", True, at=T0 + 10)
        await store.schedule_delete("doomed")

        store, _ = await store_factory.reopen(store, T0 + 8000)

        assert await store.schedule_list() == [claimed, paused]

    async def test_pausing_a_schedule_bumps_its_version_and_resuming_skips_ahead(
            self, store_factory: StoreFactory) -> None:
        store = await store_factory()
        await store.schedule_put(schedule("hourly"))

        paused = await store.schedule_set_paused("hourly", True, at=T0 + 100)
        assert paused is not None
        assert (paused.paused, paused.version, paused.last_slot) == (True, 1, T0)
        # A claim decided before the pause finds the version moved.
        assert await store.schedule_claim("hourly", 0, last_slot=T0 + 3600, pending=(),
                                          at=T0 + 3601) is None
        resumed = await store.schedule_set_paused("hourly", False, at=T0 + 9000)
        assert resumed is not None
        assert (resumed.paused, resumed.version, resumed.last_slot) == (False, 2, T0 + 9000)
        assert await store.schedule_get("hourly") == resumed
        # Resuming never moves the claimed slots back.
        again = await store.schedule_set_paused("hourly", False, at=T0)
        assert again is not None and again.last_slot == T0 + 9000
        assert await store.schedule_set_paused("gone", True, at=T0) is None


def schedule(name: str, *, cron: str = "0 * * * *", created_at: float = T0) -> Schedule:
    return Schedule(name=name, cron=cron, timezone="Europe/Paris",
                    template_json=b'{"queue":"money","type":"payment-process","data":{}}',
                    missed="skip", tenant_id="t1", user_id="u1", created_at=created_at,
                    last_slot=created_at)
