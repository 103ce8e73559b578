"""The job lifecycle as a hypothesis state machine over a fake clock.

Each rule does one step the engine does (enqueue, claim, settle a run, cancel, DLQ retry, pause,
lease maintenance, restart) by calling the same pure decision (`outcome.decide`) and the same store
methods the engine calls, in the same order, but deterministically: no dispatcher, settler or
maintenance task runs. A model of every job (state, attempts, errors, idempotency holds) is kept
beside the store, and after every step the store must agree with it:

* no job is lost: every job the model knows is listed and found by `job_get`, in exactly one state
  (background-tier completions are removed by design, and background jobs do not survive a restart);
* per-state queue counts sum to the queue's known jobs and match the model;
* attempts never exceed max_attempts (a waiting job always has an attempt left);
* a deferral never spends an attempt; a completed job is never claimed again;
* an idempotency key never has two live jobs;
* claims come in dispatch order (priority, then run_at, then id) and only when due;
* a settle or heartbeat carrying a stale claim token changes nothing.

The same machine runs over `memory://` and over the SQLite journal; the SQLite one can also restart
(close the store, open a new one on the same file), after which jobs that were active come back as
waiting (or failed, when out of attempts) and count as stalled.
"""

from __future__ import annotations

import asyncio
import math
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tickq.clock import FakeClock
from tickq.engine import backoff
from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.engine.outcome import (
    Cancelled,
    Deferred,
    Failure,
    Outcome,
    Settle,
    SettleKind,
    Success,
    decide,
)
from tickq.engine.producer import JobSpec
from tickq.engine.queues import Durability, QueueConfig
from tickq.engine.registry import JobType, Registry
from tickq.engine.states import FINAL_STATES, JobState
from tickq.errors import (
    CircuitOpen,
    IdempotencyConflictError,
    IllegalTransitionError,
    JobNotFoundError,
    JobTimeoutError,
    PermanentError,
    RateLimited,
    RetryableError,
)
from tickq.storage import open_store
from tickq.storage.base import JobQuery, Store
from tickq.storage.sqlite import SqliteStore

T = TypeVar("T")

W, A, C, F, X = (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED,
                 JobState.CANCELLED)
LIVE = frozenset({W, A})
FINAL = frozenset({C, F, X})

#: one job type per tier; small attempt budgets and key TTLs so that exhaustion, the dead-letter
#: queue and key expiry all happen within a few dozen steps
TYPES = (
    JobType(name="charge", queue="money", priority=9, max_attempts=3, key_ttl_s=120.0),
    JobType(name="notify", queue="communication", priority=5, max_attempts=2, key_ttl_s=60.0),
    JobType(name="track", queue="background", priority=3, key_ttl_s=60.0),
)
TYPE_NAMES = tuple(t.name for t in TYPES)
QUEUES = ("money", "communication", "background")
KEYS = ("k0", "k1", "k2")
TENANTS = (None, "t1")
INF = math.inf

HoldKey = tuple[str, str]


@dataclass(slots=True)
class Expected:
    """What the model says about one job."""

    id: str
    queue: str
    type: str
    state: JobState
    attempts: int
    max_attempts: int
    priority: int
    run_at: float
    expires_at: float | None
    hold: HoldKey | None
    created_at: float = 0.0
    tenant: str = ""
    token: int = 0
    lease_until: float | None = None
    stalls: int = 0
    errors: int = 0
    #: a run of this job completed (it must never be claimed again)
    completed: bool = False

    def order(self) -> tuple[int, float, str]:
        """Dispatch order: highest priority first, then oldest run_at, then id."""
        return (-self.priority, self.run_at, self.id)


spec_strategy = st.fixed_dictionaries({
    "type": st.sampled_from(TYPE_NAMES),
    "priority": st.integers(1, 10),
    "delay_s": st.sampled_from([0.0, 0.0, 0.0, 5.0, 45.0, 3600.0]),
    "idempotency_key": st.none() | st.sampled_from(KEYS),
    "tenant_id": st.sampled_from(TENANTS),
    "max_attempts": st.sampled_from([None, None, 1, 1, 2, 3]),
    "expires_in_s": st.sampled_from([None, None, 20.0, 600.0]),
})

retryable_errors = st.sampled_from([
    (RetryableError("upstream 503"), False),
    (ValueError("unexpected"), False),  # unknown exceptions count as retryable
    (JobTimeoutError("exceeded 30s"), True),
])

deferrals = st.sampled_from([
    Failure(RateLimited(retry_after=2.0)),
    Failure(RateLimited(retry_after=0.0)),
    Failure(CircuitOpen(retry_after=30.0)),
    Deferred(0.0, "shutdown"),
])


class JobLifecycle(RuleBasedStateMachine):
    """The machine; subclasses pick the store."""

    def make_store(self) -> Store:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.rng = random.Random(0)
        self.registry = Registry(types=TYPES)
        self.queues: dict[str, QueueConfig] = {q.name: q for q in self.registry.queues}
        self.tmp: Path | None = None
        self.store = self.make_store()
        # Only `_build` is used: validation and defaults exactly as `Engine.enqueue_many` does them.
        self.engine = Engine(self.store, registry=self.registry, clock=self.clock, rng=self.rng)
        self.run(self.store.open(self.queues, self.clock.now()))
        self.jobs: dict[str, Expected] = {}
        #: ids the store must no longer know (background completions, background jobs at restart)
        self.removed: set[str] = set()
        #: idempotency key -> (holder id, held until); infinity while the holder is live
        self.holds: dict[HoldKey, tuple[str, float]] = {}
        self.paused: set[str] = set()
        #: every (job id, claim token) handed out since the store was opened
        self.claims: list[tuple[str, int]] = []
        self.last_token = 0

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    # --- model helpers ---------------------------------------------------------------------

    def _ids(self, states: frozenset[JobState]) -> list[str]:
        return sorted(i for i, m in self.jobs.items() if m.state in states)

    def _pick(self, states: frozenset[JobState], pick: int) -> Expected:
        ids = self._ids(states)
        return self.jobs[ids[pick % len(ids)]]

    def _has(self, *states: JobState) -> bool:
        return any(m.state in states for m in self.jobs.values())

    def _stale_claims(self) -> list[tuple[str, int]]:
        out = []
        for job_id, token in self.claims:
            m = self.jobs.get(job_id)
            if m is None or m.state is not A or m.token != token:
                out.append((job_id, token))
        return out

    @staticmethod
    def _check_dispatch_order(claimed: list[Expected], expired: list[Expected],
                              remaining: list[Expected], limit: int) -> None:
        """Highest priority first; within a priority, tenants in turn (each claim or expiry is
        one turn); within a tenant, oldest run_at then id; nothing due skipped."""
        prios = [m.priority for m in claimed]
        assert prios == sorted(prios, reverse=True), "claims out of priority order"
        if len(claimed) < limit:
            assert not remaining, f"{len(claimed)} < {limit} claimed but due jobs are left"
        elif remaining and claimed:
            assert max(m.priority for m in remaining) <= claimed[-1].priority, \
                "a due job of a higher priority than the last claim was skipped"
        turns: dict[tuple[int, str], list[tuple[float, str]]] = {}
        for m in claimed + expired:
            turns.setdefault((m.priority, m.tenant), []).append((m.run_at, m.id))
        for m_prio, m_tenant in {(m.priority, m.tenant) for m in claimed}:
            got = [(m.run_at, m.id) for m in claimed
                   if m.priority == m_prio and m.tenant == m_tenant]
            assert got == sorted(got), f"tenant {m_tenant!r}: claims out of run_at/id order"
        for (prio, tenant), taken in turns.items():
            left = [(m.run_at, m.id) for m in remaining
                    if m.priority == prio and m.tenant == tenant]
            assert not left or min(left) > max(taken), \
                f"tenant {tenant!r} at priority {prio}: a job ahead of its last turn was skipped"
        for prio in {m.priority for m in claimed}:
            counts = {t: len(v) for (p, t), v in turns.items() if p == prio}
            for m in remaining:
                if m.priority == prio:
                    counts.setdefault(m.tenant, 0)
            for tenant, n in counts.items():
                still_due = any(m.priority == prio and m.tenant == tenant for m in remaining)
                if still_due:
                    assert n >= max(counts.values()) - 1, \
                        f"tenant {tenant!r} got {n} turns at priority {prio}: {counts}"

    def _release(self, m: Expected) -> None:
        if m.hold is not None and self.holds.get(m.hold, ("", 0.0))[0] == m.id:
            del self.holds[m.hold]

    def _forget(self, m: Expected) -> None:
        self._release(m)
        del self.jobs[m.id]
        self.removed.add(m.id)

    def _stall(self, m: Expected, now: float) -> None:
        """`JobIndex.stall`: the attempt stays spent; out of attempts means failed."""
        m.stalls += 1
        m.errors += 1
        m.lease_until = None
        if m.attempts >= m.max_attempts:
            m.state = F
            self._release(m)
        else:
            m.state = W
            m.run_at = now

    def _apply(self, m: Expected, s: Settle) -> None:
        m.lease_until = None
        if s.kind is SettleKind.COMPLETE:
            m.state = C
            m.completed = True
            if m.hold is not None and self.holds.get(m.hold, ("", 0.0))[0] == m.id:
                assert s.key_until is not None
                self.holds[m.hold] = (m.id, s.key_until)
            if self.queues[m.queue].durability is Durability.MEMORY and m.hold is None:
                # Background tier: removed on completion (retention 0), unless the job holds
                # an idempotency key, which it keeps for the key's TTL.
                self._forget(m)
        elif s.kind is SettleKind.RETRY:
            m.state = W
            m.errors += 1
            assert s.run_at is not None
            m.run_at = s.run_at
        elif s.kind is SettleKind.SNOOZE:
            m.state = W
            m.attempts -= 1
            assert s.run_at is not None
            m.run_at = s.run_at
        elif s.kind is SettleKind.FAIL:
            m.state = F
            m.errors += 1
            self._release(m)
        else:
            m.state = X
            self._release(m)

    async def _settle(self, m: Expected, outcome: Outcome) -> Settle:
        """`Engine._finish` + the settler's `job_settle_many` for one run."""
        rec = await self.store.job_get(m.id)
        assert rec is not None and rec.state is A, (m, rec)
        assert rec.claim_token == m.token, (m, rec.claim_token)
        jt = self.registry.job_type(rec.type)
        cfg = self.registry.queue(rec.queue)
        settle = decide(outcome, rec, self.clock.now(), max_attempts=rec.max_attempts,
                        policy=jt.backoff or cfg.backoff, key_ttl_s=jt.key_ttl_s, rng=self.rng)
        done = await self.store.job_settle_many([settle])
        assert [j.id for j in done] == [m.id], (settle, done)
        return settle

    # --- enqueue ---------------------------------------------------------------------------

    @initialize(specs=st.lists(spec_strategy, min_size=1, max_size=6))
    def start_with_jobs(self, specs: list[dict[str, Any]]) -> None:
        self.enqueue(specs)

    @rule(specs=st.lists(spec_strategy, min_size=1, max_size=3))
    def enqueue(self, specs: list[dict[str, Any]]) -> None:
        now = self.clock.now()
        jobs = [self.engine._build(JobSpec(data={"n": i}, **spec), now)
                for i, spec in enumerate(specs)]
        results = self.run(self.store.job_insert_many(jobs, now))
        assert len(results) == len(jobs)
        for spec, job, res in zip(specs, jobs, results, strict=True):
            key = spec["idempotency_key"]
            hk: HoldKey | None = None if key is None else (spec["tenant_id"] or "", key)
            hold = self.holds.get(hk) if hk is not None else None
            if hold is not None and hold[1] > now:
                assert not res.created, f"key {hk} is held by {hold[0]} but a job was created"
                assert res.job.id == hold[0], (hk, hold, res.job)
                event(f"enqueue: key held by a {self.jobs[hold[0]].state.value} job")
                continue
            assert res.created, f"key {hk} is free but {res.job.id} was returned"
            assert res.job.id == job.id
            assert job.run_at == now + spec["delay_s"]
            self.jobs[job.id] = Expected(
                id=job.id, queue=job.queue, type=job.type, state=W, attempts=0,
                max_attempts=job.max_attempts, priority=spec["priority"], run_at=job.run_at,
                expires_at=job.expires_at, hold=hk, created_at=job.created_at,
                tenant=job.tenant_id or "")
            if hk is not None:
                self.holds[hk] = (job.id, INF)

    # --- claim -----------------------------------------------------------------------------

    @rule()
    def claim_all(self) -> None:
        """One round of every queue's feeder."""
        for queue in QUEUES:
            self.claim(queue, 2)

    @rule(queue=st.sampled_from(QUEUES), limit=st.integers(1, 4))
    def claim(self, queue: str, limit: int) -> None:
        if queue in self.paused:
            # Pause is enforced by the engine, not the store: `Engine.pause` records it with
            # `queue_set_paused` and sets `QueueRunner.paused`, whose feeder then stops calling
            # `job_fetch_available` (which itself ignores the flag). The step that mirrors the
            # feeder therefore never fetches from a paused queue.
            return
        now = self.clock.now()
        lease_s = self.queues[queue].lease_s
        due = {m.id: m for m in self.jobs.values()
               if m.queue == queue and m.state is W and m.run_at <= now}
        res = self.run(self.store.job_fetch_available(queue, limit, now, lease_s))
        claimed = [(j.id, j.attempts, j.claim_token, j.lease_until, j.state) for j in res.claimed]
        expired = [(j.id, j.state) for j in res.expired]
        assert len(claimed) <= limit
        ids = [c[0] for c in claimed] + [e[0] for e in expired]
        assert len(ids) == len(set(ids)), ids
        for job_id in ids:
            assert job_id in due, f"{job_id} was not a due waiting job of {queue}"
        self._check_dispatch_order([due[c[0]] for c in claimed], [due[e[0]] for e in expired],
                                   [m for i, m in due.items() if i not in ids], limit)
        for job_id, state in expired:
            m = due[job_id]
            assert state is F
            assert m.expires_at is not None and m.expires_at <= now, m
            m.state = F
            m.errors += 1
            self._release(m)
            event("claim: a waiting job expired")
        for job_id, attempts, token, lease_until, state in claimed:
            m = due[job_id]
            assert not m.completed, f"{job_id} completed earlier and was claimed again"
            assert m.expires_at is None or m.expires_at > now, f"expired {job_id} was claimed"
            assert state is A
            assert attempts == m.attempts + 1
            assert lease_until == now + lease_s
            assert token > self.last_token, "a claim token was reused"
            self.last_token = token
            m.state, m.attempts, m.token, m.lease_until = A, attempts, token, lease_until
            self.claims.append((job_id, token))

    # --- the end of a run ------------------------------------------------------------------

    @precondition(lambda self: self._has(A))
    @rule(pick=st.integers(0, 1 << 16))
    def complete(self, pick: int) -> None:
        m = self._pick(frozenset({A}), pick)
        settle = self.run(self._settle(m, Success({"ok": m.id})))
        assert settle.kind is SettleKind.COMPLETE
        self._apply(m, settle)

    @precondition(lambda self: self._has(A))
    @rule(pick=st.integers(0, 1 << 16), error=retryable_errors)
    def fail_retryable(self, pick: int, error: tuple[Exception, bool]) -> None:
        m = self._pick(frozenset({A}), pick)
        exc, timed_out = error
        now = self.clock.now()
        settle = self.run(self._settle(m, Failure(exc, timed_out)))
        if m.attempts >= m.max_attempts:
            assert settle.kind is SettleKind.FAIL and settle.reason == "exhausted", settle
            event("fail: attempts exhausted")
        else:
            assert settle.kind is SettleKind.RETRY, settle
            jt = self.registry.job_type(m.type)
            policy = jt.backoff or self.queues[m.queue].backoff
            assert settle.run_at is not None
            assert now <= settle.run_at <= now + backoff.ceiling(m.attempts, policy)
        self._apply(m, settle)

    @precondition(lambda self: self._has(A))
    @rule(pick=st.integers(0, 1 << 16))
    def fail_permanent(self, pick: int) -> None:
        m = self._pick(frozenset({A}), pick)
        settle = self.run(self._settle(m, Failure(PermanentError("card declined"))))
        assert settle.kind is SettleKind.FAIL and settle.reason == "permanent", settle
        self._apply(m, settle)

    @precondition(lambda self: self._has(A))
    @rule(pick=st.integers(0, 1 << 16), outcome=deferrals)
    def defer(self, pick: int, outcome: Outcome) -> None:
        m = self._pick(frozenset({A}), pick)
        before_claim = m.attempts - 1
        settle = self.run(self._settle(m, outcome))
        assert settle.kind is SettleKind.SNOOZE, settle
        job = self.run(self.store.job_get(m.id))
        assert job is not None and job.state is W
        assert job.attempts == before_claim, "a deferral spent an attempt"
        assert len(job.errors) == m.errors, "a deferral recorded an error"
        self._apply(m, settle)

    @precondition(lambda self: self._has(A))
    @rule(pick=st.integers(0, 1 << 16), data=st.data())
    def work(self, pick: int, data: st.DataObject) -> None:
        """A worker runs a claimed job to whichever end the processor reaches."""
        end = data.draw(st.sampled_from(["complete", "retryable", "permanent", "defer"]))
        if end == "complete":
            self.complete(pick)
        elif end == "retryable":
            self.fail_retryable(pick, data.draw(retryable_errors))
        elif end == "permanent":
            self.fail_permanent(pick)
        else:
            self.defer(pick, data.draw(deferrals))

    @precondition(lambda self: bool(self._stale_claims()))
    @rule(pick=st.integers(0, 1 << 16), kind=st.sampled_from(list(SettleKind)))
    def stale_settle(self, pick: int, kind: SettleKind) -> None:
        """A run whose claim was lost (rescued, cancelled, settled) reports late: ignored."""
        stale = self._stale_claims()
        job_id, token = stale[pick % len(stale)]
        now = self.clock.now()
        settle = Settle(job_id=job_id, token=token, kind=kind, at=now, run_at=now,
                        result_json=b"null", key_until=now + 1.0)
        done = self.run(self.store.job_settle_many([settle]))
        assert done == [], f"a settle with stale token {token} was applied to {job_id}"

    # --- operator actions ------------------------------------------------------------------

    @precondition(lambda self: bool(self.jobs or self.removed))
    @rule(pick=st.integers(0, 1 << 16))
    def cancel(self, pick: int) -> None:
        targets = sorted(self.jobs) + sorted(self.removed)
        job_id = targets[pick % len(targets)]
        m = self.jobs.get(job_id)
        now = self.clock.now()
        if m is None:
            try:
                self.run(self.store.job_cancel(job_id, now))
            except JobNotFoundError:
                return
            raise AssertionError(f"cancelling removed job {job_id} did not raise")
        if m.state in FINAL:
            try:
                self.run(self.store.job_cancel(job_id, now))
            except IllegalTransitionError:
                return
            raise AssertionError(f"cancelling {m.state.value} job {job_id} did not raise")
        job = self.run(self.store.job_cancel(job_id, now))
        if m.state is W:
            assert job.state is X, job
            m.state = X
            self._release(m)
            return
        # Active: the store leaves it to the engine, which interrupts the run; the interrupted
        # worker records a cancel settle under its claim token.
        assert job.state is A and job.claim_token == m.token, job
        settle = self.run(self._settle(m, Cancelled()))
        assert settle.kind is SettleKind.CANCEL
        self._apply(m, settle)

    @precondition(lambda self: bool(self.jobs or self.removed))
    @rule(pick=st.integers(0, 1 << 16), extra=st.sampled_from([None, 1, 2]))
    def dlq_retry(self, pick: int, extra: int | None) -> None:
        """`Engine.retry`; any job may be asked, only a failed one may move."""
        failed = self._ids(frozenset({F}))
        # Mostly failed jobs (the real use), sometimes any other one (must be refused).
        if failed and pick % 4:
            job_id = failed[pick % len(failed)]
        else:
            targets = sorted(self.jobs) + sorted(self.removed)
            job_id = targets[pick % len(targets)]
        m = self.jobs.get(job_id)
        now = self.clock.now()
        if m is None:
            try:
                self.run(self.store.job_retry_failed(job_id, now, 1))
            except JobNotFoundError:
                return
            raise AssertionError(f"retrying removed job {job_id} did not raise")
        jt = self.registry.job_type(m.type)
        more = extra or jt.max_attempts or self.queues[m.queue].max_attempts
        if m.state is not F:
            try:
                self.run(self.store.job_retry_failed(job_id, now, more))
            except IllegalTransitionError:
                return
            raise AssertionError(f"DLQ retry of {m.state.value} job {job_id} did not raise")
        hold = self.holds.get(m.hold) if m.hold is not None else None
        if hold is not None and hold[0] != m.id and hold[1] > now:
            try:
                self.run(self.store.job_retry_failed(job_id, now, more))
            except IdempotencyConflictError:
                event("dlq retry: key taken by another job")
                return
            raise AssertionError(f"DLQ retry of {job_id} took key {m.hold} held by {hold[0]}")
        job = self.run(self.store.job_retry_failed(job_id, now, more))
        assert job.state is W and job.attempts == m.attempts, job
        assert job.max_attempts == m.attempts + more
        assert len(job.errors) == m.errors, "DLQ retry lost the error history"
        m.state, m.max_attempts, m.run_at = W, m.attempts + more, now
        if m.expires_at is not None:
            # a fresh expiry window, as long as the first
            m.expires_at = now + (m.expires_at - m.created_at)
        event("dlq retry: revived")
        if m.hold is not None:
            self.holds[m.hold] = (m.id, INF)

    @rule(queue=st.sampled_from(QUEUES), paused=st.booleans())
    def pause_or_resume(self, queue: str, paused: bool) -> None:
        self.run(self.store.queue_set_paused(queue, paused))
        (self.paused.add if paused else self.paused.discard)(queue)
        assert self.run(self.store.queue_paused()) == self.paused

    # --- time, leases and rescue -----------------------------------------------------------

    @rule(seconds=st.sampled_from([0.001, 1.0, 4.0, 15.0, 61.0, 3600.0, 7 * 3600.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _rescue(self, now: float) -> None:
        """The rescue half of `Engine.tick_maintenance`."""
        expected = sorted(m.id for m in self.jobs.values()
                          if m.state is A and m.lease_until is not None and m.lease_until < now)
        rescued = self.run(self.store.job_rescue_stuck(now))
        assert sorted(j.id for j in rescued) == expected
        for job_id in expected:
            self._stall(self.jobs[job_id], now)
            event(f"rescue: stalled to {self.jobs[job_id].state.value}")

    @precondition(lambda self: self._has(A))
    @rule(past=st.sampled_from([-1.0, 0.0, 0.001, 1.0, 31.0]))
    def lease_expiry(self, past: float) -> None:
        """Move the clock to around the earliest lease (just before, at, or past it), rescue."""
        earliest = min(m.lease_until for m in self.jobs.values()
                       if m.state is A and m.lease_until is not None)
        self.clock.set(max(self.clock.now(), earliest + past))
        self._rescue(self.clock.now())

    @rule(heartbeat=st.booleans())
    def maintenance(self, heartbeat: bool) -> None:
        """`Engine.tick_maintenance`: renew every current claim, report lost ones, rescue."""
        now = self.clock.now()
        if heartbeat:
            current = [(m.id, m.token) for m in self.jobs.values() if m.state is A]
            stale = self._stale_claims()
            lease_until = now + min(q.lease_s for q in self.queues.values())
            lost = self.run(self.store.job_heartbeat(current + stale, lease_until))
            assert sorted(lost) == sorted(job_id for job_id, _ in stale), lost
            for job_id, _ in current:
                self.jobs[job_id].lease_until = lease_until
        self._rescue(now)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_model(self) -> None:
        self.run(self._check())

    async def _check(self) -> None:
        store, now = self.store, self.clock.now()
        live_holders: Counter[HoldKey] = Counter()
        for queue in QUEUES:
            expected = [m for m in self.jobs.values() if m.queue == queue]
            by_state = Counter(m.state for m in expected)
            counts = await store.queue_counts(queue, now)
            got = {W: counts.waiting, A: counts.active, C: counts.completed, F: counts.failed,
                   X: counts.cancelled}
            assert got == {s: by_state[s] for s in got}, (queue, counts, by_state)
            assert sum(got.values()) == len(expected), (queue, counts, len(expected))
            delayed = sum(1 for m in expected if m.state is W and m.run_at > now)
            assert counts.delayed == delayed, (queue, counts, delayed)
            assert counts.paused == (queue in self.paused)
            listed = await store.job_list(JobQuery(queue=queue, limit=100_000))
            ids = [j.id for j in listed]
            assert len(ids) == len(set(ids)), f"{queue}: a job is listed twice"
            assert set(ids) == {m.id for m in expected}, (queue, sorted(ids))
            for job in listed:
                self._compare(job, self.jobs[job.id])
                if job.state in LIVE and job.idempotency_key is not None:
                    live_holders[(job.tenant_id or "", job.idempotency_key)] += 1
        two = [k for k, n in live_holders.items() if n > 1]
        assert not two, f"idempotency keys with two live jobs: {two}"
        for m in self.jobs.values():
            if m.state in LIVE and m.hold is not None:
                assert self.holds[m.hold] == (m.id, INF), (m, self.holds.get(m.hold))
            job = await store.job_get(m.id)
            assert job is not None, f"job {m.id} ({m.state.value}) was lost"
            self._compare(job, m)
        for job_id in self.removed:
            assert await store.job_get(job_id) is None, f"removed job {job_id} is still there"
        index = getattr(store, "index", None)
        if index is not None:  # the lease sweep looks only at the index's active set
            assert set(index.active) == {m.id for m in self.jobs.values() if m.state is A}
            # listings of finished jobs look only at the index's finished maps
            finished = {j.id for j in index.candidates(JobQuery(states=FINAL_STATES))}
            assert finished == {j.id for j in index.jobs.values() if j.state in FINAL_STATES}

    @staticmethod
    def _compare(job: Job, m: Expected) -> None:
        assert job.state is m.state, (job, m)
        assert job.attempts == m.attempts, (job, m)
        assert job.max_attempts == m.max_attempts, (job, m)
        assert 0 <= job.attempts <= job.max_attempts, job
        if job.state is W:
            assert job.attempts < job.max_attempts, f"{job} waits with no attempt left"
        assert job.stalls == m.stalls, (job, m)
        assert len(job.errors) == m.errors, (job, m, job.errors)
        assert job.run_at == m.run_at, (job, m)
        assert job.priority == m.priority and job.queue == m.queue, (job, m)
        if job.state is A:
            assert job.lease_until == m.lease_until, (job, m)
        else:
            assert job.lease_until is None, job


class MemoryLifecycle(JobLifecycle):
    def make_store(self) -> Store:
        return open_store("memory://")


class SqliteLifecycle(JobLifecycle):
    def make_store(self) -> Store:
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="tickq-stateful-"))
        return SqliteStore(str(self.tmp / "tickq.db"))

    @rule(downtime=st.sampled_from([0.0, 5.0, 45.0]))
    def restart(self, downtime: float) -> None:
        """The process dies and a new one opens the same file `downtime` seconds later."""
        self.run(self.store.close())
        self.clock.advance(downtime)
        now = self.clock.now()
        self.store = self.make_store()
        self.engine.store = self.store
        report = self.run(self.store.open(self.queues, now))
        # Background jobs are memory-only: gone, by design, whatever their state.
        for m in list(self.jobs.values()):
            if self.queues[m.queue].durability is Durability.MEMORY:
                self._forget(m)
        was_active = sorted(i for i, m in self.jobs.items() if m.state is A)
        assert sorted(j.id for j in report.stalled) == was_active, report.stalled
        assert report.loaded == sum(1 for m in self.jobs.values() if m.state in LIVE)
        for job_id in was_active:
            self._stall(self.jobs[job_id], now)
            event(f"restart: stalled to {self.jobs[job_id].state.value}")
        for m in self.jobs.values():
            m.token = 0
        # Key holds rebuilt from the journal: live jobs, and completed ones within their TTL.
        self.holds = {k: v for k, v in self.holds.items() if v[1] > now}
        assert self.run(self.store.queue_paused()) == self.paused
        self.claims.clear()
        self.last_token = 0


SETTINGS = settings(max_examples=75, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TestMemoryLifecycle = MemoryLifecycle.TestCase
TestMemoryLifecycle.settings = SETTINGS
TestSqliteLifecycle = SqliteLifecycle.TestCase
TestSqliteLifecycle.settings = SETTINGS
