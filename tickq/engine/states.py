"""The job state machine: the states and the only transitions allowed between them.

"delayed" (a waiting job whose run_at is in the future) and "retrying" (a waiting job with
attempts > 0) are views of `waiting`, not states. `failed` is the dead-letter queue.
"""

from __future__ import annotations

from enum import StrEnum

from tickq.errors import IllegalTransitionError


class JobState(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


W, A, C, F, X = (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED,
                 JobState.CANCELLED)

#: (from, to) -> when it happens. The single source of truth for what may change into what.
TRANSITIONS: dict[tuple[JobState, JobState], str] = {
    (W, A): "claimed by the dispatcher (lease set, attempt spent)",
    (A, C): "processor returned",
    (A, W): "retryable error with attempts left, lease expired (stall), deferral or shutdown",
    (A, F): "attempts exhausted, permanent error, or timeout on the last attempt",
    (W, X): "cancel request before it started",
    (A, X): "cancel request while running (cooperative)",
    (W, F): "expired before it started",
    (F, W): "dead-letter retry (history kept)",
}

FINAL_STATES = frozenset({C, F, X})
LIVE_STATES = frozenset({W, A})

_ALLOWED = frozenset(TRANSITIONS)


def can_transition(src: JobState, dst: JobState) -> bool:
    return (src, dst) in _ALLOWED


def check_transition(src: JobState, dst: JobState, job_id: str | None = None) -> None:
    """Raise `IllegalTransitionError` unless src -> dst is in the table."""
    if (src, dst) not in _ALLOWED:
        raise IllegalTransitionError(
            f"a job cannot go from {src.value} to {dst.value}", job_id=job_id
        )
