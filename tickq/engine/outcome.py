"""How a run ends, and the one store write each ending becomes.

A processor's return value or exception is turned into an `Outcome`; the pure `decide` maps an
outcome to a `Settle`, the single state write the store applies (Oban's ack_event idea). Keeping the
decision pure is what lets the property tests check "a deferral never spends an attempt" and
"attempts never exceed max" without running anything.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tickq.engine import backoff
from tickq.engine.backoff import BackoffPolicy
from tickq.engine.job import ErrorEntry, Job
from tickq.engine.jsonbytes import dumps_kept
from tickq.errors import CircuitOpen, PermanentError, ProcessorError, RateLimited, TickqError


class SettleKind(StrEnum):
    COMPLETE = "complete"      # active -> completed
    RETRY = "retry"            # active -> waiting, attempt spent, error recorded
    FAIL = "fail"              # active -> failed (dead-letter queue)
    SNOOZE = "snooze"          # active -> waiting, attempt given back (deferral, shutdown)
    CANCEL = "cancel"          # active -> cancelled


@dataclass(slots=True, kw_only=True)
class Settle:
    """One state write for a job that was claimed with `token`."""

    job_id: str
    token: int
    kind: SettleKind
    at: float
    run_at: float | None = None
    result_json: bytes | None = None
    error: ErrorEntry | None = None
    #: completed jobs hold their idempotency key until then
    key_until: float | None = None
    #: why a snooze happened (rate_limited, circuit_open, shutdown, ...), for events and metrics
    reason: str | None = None


# --- outcomes -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Success:
    result: Any


@dataclass(slots=True, frozen=True)
class Failure:
    error: BaseException
    #: the run was cut off by the type's timeout
    timed_out: bool = False


@dataclass(slots=True, frozen=True)
class Deferred:
    """Run again later without spending an attempt (rate limit, open breaker, shutdown)."""

    after_s: float
    reason: str


@dataclass(slots=True, frozen=True)
class Cancelled:
    reason: str = "cancelled"


Outcome = Success | Failure | Deferred | Cancelled


def error_entry(job: Job, exc: BaseException, now: float, timed_out: bool = False) -> ErrorEntry:
    message = str(exc) or exc.__class__.__name__
    if timed_out:
        message = f"timed out: {message}" if str(exc) else "timed out"
    code = "timeout" if timed_out else (
        exc.code if isinstance(exc, ProcessorError | TickqError) else None)
    return ErrorEntry(attempt=job.attempts, type=exc.__class__.__name__, message=message[:2000],
                      at=now, code=code)


def decide(outcome: Outcome, job: Job, now: float, *, max_attempts: int, policy: BackoffPolicy,
           key_ttl_s: float, rng: backoff.Random | None = None) -> Settle:
    """The store write for `outcome` of the attempt `job.attempts` that has just ended."""
    jid, token = job.id, job.claim_token
    if isinstance(outcome, Success):
        return Settle(job_id=jid, token=token, at=now, kind=SettleKind.COMPLETE,
                      result_json=dumps_kept(outcome.result), key_until=now + key_ttl_s)
    if isinstance(outcome, Deferred):
        return Settle(job_id=jid, token=token, at=now, kind=SettleKind.SNOOZE,
                      run_at=now + max(0.0, outcome.after_s), reason=outcome.reason)
    if isinstance(outcome, Cancelled):
        return Settle(job_id=jid, token=token, at=now, kind=SettleKind.CANCEL,
                      reason=outcome.reason)
    exc = outcome.error
    if isinstance(exc, RateLimited | CircuitOpen):
        reason = "rate_limited" if isinstance(exc, RateLimited) else "circuit_open"
        return Settle(job_id=jid, token=token, at=now, kind=SettleKind.SNOOZE,
                      run_at=now + exc.retry_after, reason=reason)
    entry = error_entry(job, exc, now, outcome.timed_out)
    permanent = isinstance(exc, PermanentError)
    if permanent or job.attempts >= max_attempts:
        return Settle(job_id=jid, token=token, at=now, kind=SettleKind.FAIL, error=entry,
                      reason="permanent" if permanent else "exhausted")
    return Settle(job_id=jid, token=token, at=now, kind=SettleKind.RETRY, error=entry,
                  run_at=backoff.next_retry_at(now, job.attempts, policy, rng),
                  reason="timeout" if outcome.timed_out else "error")


def classify(exc: BaseException, timed_out: bool = False) -> Outcome:
    """Exceptions become failures; cancellation is not an exception a processor should see here."""
    if isinstance(exc, asyncio.CancelledError):
        return Cancelled()
    return Failure(exc, timed_out)
