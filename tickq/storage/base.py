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
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, Protocol

import orjson

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
    #: only jobs that finished at or after this time (unfinished jobs never match)
    finished_after: float | None = None
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


@dataclass(slots=True, frozen=True, kw_only=True)
class AnalyticsEvent:
    """One recorded analytics event (an `analytics-track` job's data, kept durably while the job
    itself, on the memory tier, is not). Times are epoch seconds."""

    #: unique; the id of the job that recorded it, so a rerun of that job records nothing twice
    id: str
    tenant_id: str | None
    #: what happened ("ticket_viewed", "checkout_started", ...)
    event_type: str
    venue_id: str | None = None
    #: the user the event is about (not necessarily the caller who sent it)
    user_id: str | None = None
    #: the ticketed event (concert, match) it concerns
    event_id: str | None = None
    #: the event's free-form properties, orjson-encoded
    data_json: bytes = b"{}"
    #: when it happened, as the sender said
    occurred_at: float
    #: when tickq recorded it
    recorded_at: float

    @property
    def data(self) -> Any:
        return orjson.loads(self.data_json)


@dataclass(slots=True, frozen=True, kw_only=True)
class ReportInfo:
    """A stored report without its content (what listings show)."""

    #: unique; the id of the `generate-report` job that made it (a rerun replaces it)
    id: str
    tenant_id: str | None
    #: the user whose job asked for it, and the venue it is limited to, if any: who may read it
    user_id: str | None = None
    venue_id: str | None = None
    #: "jobs", "payments", "analytics"
    report_type: str
    #: "csv" or "json"
    format: str
    #: the period it covers, [period_start, period_end) in epoch seconds
    period_start: float
    period_end: float
    created_at: float
    #: the media type it is downloaded as ("text/csv; charset=utf-8", "application/json")
    content_type: str
    #: length of the content in bytes
    size: int
    job_id: str | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class Report(ReportInfo):
    """A stored report with its content."""

    content: bytes

    def info(self) -> ReportInfo:
        return ReportInfo(**{f.name: getattr(self, f.name) for f in fields(ReportInfo)})


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

    async def job_update_result(self, job_id: str, result_json: bytes) -> Job:
        """Replace the result of a finished (completed, failed or cancelled) job, such as a
        provider's later word on a payment, durably as its queue asks; returns the job as it
        is now. Raises JobNotFoundError, or IllegalTransitionError for a job that has not
        finished (its run writes its result)."""
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

    # --- analytics events and reports ---------------------------------------------------------
    # Kept as durably as the communication tier (they survive a process crash); the SQLite
    # journal writes them in its group commit.

    async def events_append(self, events: Sequence[AnalyticsEvent]) -> None:
        """Record events in one write. An event whose id is already recorded is skipped, so
        appending the same event twice (a job rerun after its write) keeps one copy."""
        ...

    async def events_query(self, tenant_id: str | None, start: float, end: float,
                           event_type: str | None = None, *, venue_id: str | None = None,
                           limit: int = 1000) -> list[AnalyticsEvent]:
        """Events of `tenant_id` (None: events recorded without a tenant) that occurred in
        [start, end), optionally of one type and venue, oldest first (then by id), at most
        `limit`."""
        ...

    async def events_prune(self, before: float) -> int:
        """Delete events that occurred before `before`; returns how many."""
        ...

    async def report_put(self, report: Report) -> None:
        """Store a report, replacing one with the same id."""
        ...

    async def report_get(self, report_id: str) -> Report | None: ...

    async def report_list(self, tenant_id: str | None, limit: int = 100) -> list[ReportInfo]:
        """Reports of `tenant_id` (None: made without a tenant), newest first, at most `limit`,
        without their content."""
        ...

    async def report_prune(self, before: float) -> int:
        """Delete reports created before `before`; returns how many."""
        ...
