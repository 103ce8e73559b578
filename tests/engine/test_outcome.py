"""`decide`: how the end of a run becomes one store write."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickq.engine.backoff import BackoffKind, BackoffPolicy, ceiling
from tickq.engine.job import Job
from tickq.engine.outcome import (
    Cancelled,
    Deferred,
    Failure,
    Outcome,
    Settle,
    SettleKind,
    Success,
    classify,
    decide,
)
from tickq.engine.queues import DEFAULT_QUEUES, MONEY
from tickq.engine.states import FINAL_STATES, JobState
from tickq.errors import CircuitOpen, PermanentError, RateLimited, RetryableError
from tickq.storage.index import JobIndex

NOW = 1_800_000_000.0
POLICY = BackoffPolicy(kind=BackoffKind.EXPONENTIAL, base_s=2.0, factor=2.0, cap_s=3600.0)
KEY_TTL_S = 86_400.0


class Draw:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def running_job(attempts: int = 1, max_attempts: int = 5, token: int = 42) -> Job:
    return Job(id="job-1", queue="money", type="payment-process", data_json=b"{}", priority=5,
               max_attempts=max_attempts, run_at=NOW - 10, created_at=NOW - 10,
               state=JobState.ACTIVE, attempts=attempts, claim_token=token,
               lease_until=NOW + 30)


def run_decide(outcome: Outcome, job: Job, r: float = 0.5) -> Settle:
    return decide(outcome, job, NOW, max_attempts=job.max_attempts, policy=POLICY,
                  key_ttl_s=KEY_TTL_S, rng=Draw(r))


def test_success_completes_with_result_and_key_hold() -> None:
    job = running_job()

    s = decide(Success({"charge": "ch_1", "amount": 1250}), job, NOW,
               max_attempts=5, policy=POLICY, key_ttl_s=KEY_TTL_S)

    assert s.kind is SettleKind.COMPLETE
    assert (s.job_id, s.token, s.at) == ("job-1", 42, NOW)
    assert orjson.loads(s.result_json or b"") == {"charge": "ch_1", "amount": 1250}
    assert s.key_until == NOW + KEY_TTL_S
    assert s.error is None and s.run_at is None


@pytest.mark.parametrize(("outcome", "after", "reason"), [
    (Failure(RateLimited(retry_after=7.5)), 7.5, "rate_limited"),
    (Failure(CircuitOpen(retry_after=30.0)), 30.0, "circuit_open"),
    (Deferred(12.0, "shutdown"), 12.0, "shutdown"),
    (Deferred(-3.0, "rate_limited"), 0.0, "rate_limited"),
    (Failure(RateLimited(retry_after=-1.0)), 0.0, "rate_limited"),
], ids=["rate-limited", "circuit-open", "deferred", "deferred-negative", "retry-after-negative"])
@pytest.mark.parametrize("attempts", [1, 5], ids=["first-attempt", "last-attempt"])
def test_deferrals_snooze_without_spending_an_attempt(outcome: Outcome, after: float,
                                                      reason: str, attempts: int) -> None:
    job = running_job(attempts=attempts, max_attempts=5)

    s = run_decide(outcome, job)

    assert s.kind is SettleKind.SNOOZE  # never FAIL, even on the last attempt
    assert s.run_at == NOW + after
    assert s.reason == reason
    assert s.error is None


@pytest.mark.parametrize("attempts", [1, 3, 5])
def test_permanent_error_fails_at_once(attempts: int) -> None:
    job = running_job(attempts=attempts, max_attempts=5)

    s = run_decide(Failure(PermanentError("card declined", code="card_declined")), job)

    assert s.kind is SettleKind.FAIL
    assert s.reason == "permanent"
    assert s.error is not None
    assert (s.error.type, s.error.message, s.error.code) == (
        "PermanentError", "card declined", "card_declined")
    assert (s.error.attempt, s.error.at) == (attempts, NOW)
    assert s.run_at is None


@pytest.mark.parametrize("exc", [RetryableError("gateway timeout", code="504"),
                                 ValueError("bad thing"), ConnectionError()],
                         ids=["retryable", "unknown", "no-message"])
@pytest.mark.parametrize("r", [0.0, 0.5, 0.999999])
def test_retryable_failure_with_attempts_left_retries_within_backoff(exc: Exception,
                                                                    r: float) -> None:
    job = running_job(attempts=3, max_attempts=5)

    s = run_decide(Failure(exc), job, r)

    assert s.kind is SettleKind.RETRY
    assert s.reason == "error"
    assert s.run_at is not None
    assert NOW <= s.run_at <= NOW + ceiling(3, POLICY)
    assert s.run_at == NOW + ceiling(3, POLICY) * r
    assert s.error is not None
    assert s.error.type == type(exc).__name__
    assert s.error.message == (str(exc) or type(exc).__name__)
    assert s.error.attempt == 3


@pytest.mark.parametrize("exc", [RetryableError("still down"), KeyError("x")])
def test_last_attempt_failure_fails_as_exhausted(exc: Exception) -> None:
    job = running_job(attempts=5, max_attempts=5)

    s = run_decide(Failure(exc), job)

    assert s.kind is SettleKind.FAIL
    assert s.reason == "exhausted"
    assert s.error is not None and s.error.attempt == 5


def test_timeout_is_retried_and_labelled() -> None:
    job = running_job(attempts=1)

    s = run_decide(Failure(TimeoutError(), timed_out=True), job)

    assert (s.kind, s.reason) == (SettleKind.RETRY, "timeout")
    assert s.error is not None and s.error.message == "timed out"


def test_cancelled_run_settles_as_cancel() -> None:
    s = run_decide(Cancelled("cancelled"), running_job())

    assert (s.kind, s.reason, s.error) == (SettleKind.CANCEL, "cancelled", None)


def test_long_error_messages_are_truncated() -> None:
    s = run_decide(Failure(RetryableError("x" * 10_000)), running_job())

    assert s.error is not None and len(s.error.message) == 2000


def test_classify_turns_cancellation_into_cancelled_and_the_rest_into_failures() -> None:
    assert isinstance(classify(asyncio.CancelledError()), Cancelled)
    out = classify(ValueError("v"), timed_out=True)
    assert isinstance(out, Failure) and out.timed_out and isinstance(out.error, ValueError)


# --- attempts never exceed max, whatever happens ---------------------------------------------

STEPS = ("success", "retryable", "unknown", "permanent", "rate_limited", "circuit_open",
         "deferred", "cancelled", "stall")


def outcome_for(step: str) -> Outcome:
    return {
        "success": Success(None),
        "retryable": Failure(RetryableError("flaky")),
        "unknown": Failure(RuntimeError("surprise")),
        "permanent": Failure(PermanentError("no")),
        "rate_limited": Failure(RateLimited(retry_after=5.0)),
        "circuit_open": Failure(CircuitOpen(retry_after=60.0)),
        "deferred": Deferred(1.0, "shutdown"),
        "cancelled": Cancelled(),
    }[step]


@given(max_attempts=st.integers(min_value=1, max_value=6),
       steps=st.lists(st.sampled_from(STEPS), max_size=40),
       r=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_attempts_never_exceed_max_over_any_sequence_of_outcomes(max_attempts: int,
                                                                 steps: list[str],
                                                                 r: float) -> None:
    index = JobIndex({q.name: q for q in DEFAULT_QUEUES})
    now = NOW
    job = Job(id="job-1", queue="money", type="payment-process", data_json=b"{}", priority=5,
              max_attempts=max_attempts, run_at=now, created_at=now)
    [(_, created)] = index.insert_many([job], now)
    assert created
    index.schedule(job, now)
    failures = 0
    last = ""

    for step in steps:
        if job.state in FINAL_STATES:
            break
        assert job.state is JobState.WAITING
        # a waiting job always has an attempt left: the next claim cannot go past max
        assert job.attempts < job.max_attempts
        now = max(now, job.run_at)
        before = job.attempts
        claimed, expired, _ = index.fetch("money", 1, now, MONEY.lease_s)
        assert (claimed, expired) == ([job], [])
        assert job.attempts == before + 1 <= max_attempts
        last = step

        if step == "stall":
            now += MONEY.lease_s + 1
            assert index.rescue_stuck(now) == [job]
            failures += 1
        else:
            s = decide(outcome_for(step), job, now, max_attempts=job.max_attempts,
                       policy=MONEY.backoff, key_ttl_s=KEY_TTL_S, rng=Draw(r))
            assert index.settle(s) is job
            if s.kind is SettleKind.SNOOZE:
                assert job.attempts == before  # a deferral gives its attempt back
            elif s.kind in (SettleKind.RETRY, SettleKind.FAIL):
                failures += 1
        assert job.attempts <= max_attempts
        assert len(job.errors) == failures

    if job.state is JobState.FAILED:
        # the dead-letter queue is reached by a permanent error or with every attempt spent
        assert last == "permanent" or job.attempts == max_attempts
    assert job.max_attempts == max_attempts
