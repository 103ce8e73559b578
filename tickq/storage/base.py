"""The `Store` protocol: everything the engine asks of a backend.

Every backend (memory, SQLite journal, PostgreSQL) implements this one protocol and passes one
conformance suite (`tests/storage/conformance.py`). Rules every implementation keeps:

* A state write names the claim it belongs to (`token`); a write whose token is not the job's
  current claim is dropped, so a job whose lease was lost cannot report over a newer run.
* Idempotency is the store's job and is atomic: of two inserts with one key (per tenant) that a
  live job, or a completed one within its key TTL, holds, only one job exists afterwards.
* A method that changes state returns after the change is as durable as the job's queue asks
  (fsync for money, crash-safe for communication, memory for background).
* Jobs handed back by `job_fetch_available` and `job_settle_many` may be the store's own records:
  read them, never change them. `job_get` and `job_list` return independent copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from tickq.engine.gate import Deferral, Gate
from tickq.engine.job import Job
from tickq.engine.outcome import Settle
from tickq.engine.queues import QueueConfig, QueueCounts
from tickq.engine.states import JobState


class InsertResult(NamedTuple):
    """The job an insert ended with; `created` is False when an idempotency key matched."""

    job: Job
    created: bool


@dataclass(slots=True, frozen=True)
class FetchResult:
    #: claimed jobs, now active with a new token and lease, attempt spent
    claimed: list[Job]
    #: waiting jobs found past `expires_at`; now failed
    expired: list[Job]
    #: jobs the gate refused, parked (still waiting, no attempt spent) until unparked
    deferred: list[tuple[Job, Deferral]] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class OpenReport:
    """What a store found when it opened."""

    #: jobs that were active in an earlier run and went back to waiting (or failed, if exhausted)
    stalled: list[Job] = field(default_factory=list)
    #: live jobs loaded from the journal
    loaded: int = 0


@dataclass(slots=True, frozen=True, kw_only=True)
class JobQuery:
    """Filters for `job_list`. `after` is the id of the last job of the previous page."""

    queue: str | None = None
    states: frozenset[JobState] | None = None
    type: str | None = None
    tenant_id: str | None = None
    idempotency_key: str | None = None
    after: str | None = None
    limit: int = 100
    #: newest first when True (the default for listings), oldest first otherwise
    newest_first: bool = True


@dataclass(slots=True, frozen=True, kw_only=True)
class PruneRule:
    """Remove finished jobs of `queue` (and `type`, if given) in `state` that finished before
    `before`. A completed job still holding its idempotency key at `before` is kept."""

    queue: str
    state: JobState
    before: float
    type: str | None = None


class Store(Protocol):
    #: called with a queue name when jobs there may have become available from outside this
    #: process (another node); set by the engine
    on_available: Callable[[str], None] | None

    async def open(self, queues: Mapping[str, QueueConfig], now: float) -> OpenReport:
        """Create or migrate the schema, take ownership, load state, recover stalled jobs."""
        ...

    async def close(self) -> None:
        """Flush pending writes and release everything; safe to call twice."""
        ...

    async def job_insert_many(self, jobs: Sequence[Job], now: float) -> list[InsertResult]:
        """Insert new waiting jobs, honouring idempotency keys; one result per job, in order."""
        ...

    async def job_get(self, job_id: str) -> Job | None: ...

    async def job_fetch_available(self, queue: str, limit: int, now: float,
                                  lease_s: float, gate: Gate | None = None) -> FetchResult:
        """Claim up to `limit` waiting jobs of `queue` with run_at <= now, highest priority
        first; within a priority, tenants in turn; within a tenant, oldest run_at, then id.
        A job `gate` refuses is parked in the lot it names instead of claimed, so jobs of other
        providers behind it still run."""
        ...

    async def job_unpark(self, key: str, n: int, now: float) -> int:
        """Make up to `n` jobs parked in lot `key` claimable again; returns how many."""
        ...

    async def job_settle_many(self, settles: Sequence[Settle]) -> list[Job]:
        """Apply the end of a run to each job; returns the jobs whose claim still matched."""
        ...

    async def job_heartbeat(self, claims: Sequence[tuple[str, int]],
                            lease_until: float) -> list[str]:
        """Extend the leases of running jobs; returns the ids whose claim was lost."""
        ...

    async def job_rescue_stuck(self, now: float) -> list[Job]:
        """Active jobs whose lease has expired go back to waiting (or fail when out of
        attempts), counted as stalled."""
        ...

    async def job_cancel(self, job_id: str, now: float) -> Job:
        """Cancel a waiting job; an active job is returned unchanged for the engine to stop it.
        Raises JobNotFoundError, or IllegalTransitionError for a finished job."""
        ...

    async def job_retry_failed(self, job_id: str, now: float, max_attempts: int) -> Job:
        """Put a dead-letter job back to waiting, history kept, with `max_attempts` more tries."""
        ...

    async def job_progress(self, job_id: str, token: int, progress: int) -> bool: ...

    async def job_list(self, query: JobQuery) -> list[Job]: ...

    async def job_discard(self, job_id: str) -> Job:
        """Delete a failed (dead-letter) job for good; returns it as it was. Raises
        JobNotFoundError, or IllegalTransitionError for a job that is not failed."""
        ...

    async def job_prune(self, rules: Sequence[PruneRule]) -> int:
        """Delete finished jobs the rules match; returns how many."""
        ...

    async def queue_counts(self, queue: str, now: float) -> QueueCounts: ...

    async def queue_set_paused(self, queue: str, paused: bool) -> None: ...

    async def queue_paused(self) -> set[str]: ...

    async def next_run_at(self, queue: str) -> float | None:
        """When the earliest delayed job of `queue` becomes due, if any."""
        ...

    async def ping(self) -> bool:
        """True when the backend can take writes (readiness)."""
        ...
