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


@dataclass(slots=True, frozen=True, kw_only=True)
class NewAlert:
    """An alert as the monitor raises it (spec seed-003 `alert_history`). Times are epoch
    seconds."""

    #: "critical", "warning" or "info"
    severity: str
    #: "queue_depth", "job_age", "high_failures" or "test"
    alert_type: str
    message: str
    #: the queue it is about, if any
    queue_name: str | None = None
    #: the value measured and the threshold it crossed, if any
    metric_value: float | None = None
    threshold_value: float | None = None
    created_at: float
    #: channel -> what became of the alert there ("logged", "stored", "queued", "sent",
    #: "failed", "skipped", "not_configured")
    channels: Mapping[str, str] = field(default_factory=dict)

    def stored(self, alert_id: int) -> AlertRecord:
        """This alert as stored under `alert_id` (with a copy of its channel map)."""
        values = {f.name: getattr(self, f.name) for f in fields(NewAlert)}
        values["channels"] = dict(self.channels)
        return AlertRecord(**values, id=alert_id)


@dataclass(slots=True, frozen=True, kw_only=True)
class AlertRecord(NewAlert):
    """A stored alert. `id` is assigned by the store, increasing, never reused."""

    id: int
    acknowledged: bool = False
    #: the user id of whoever acknowledged it, and when
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None


@dataclass(slots=True, frozen=True, kw_only=True)
class QueueSnapshot:
    """One queue's counts at one monitor check (spec seed-003 `queue_metrics`), for dashboards,
    throughput and troubleshooting after the fact."""

    queue_name: str
    #: waiting jobs, delayed ones included (as `QueueCounts.waiting`), and the delayed ones
    waiting_count: int
    delayed_count: int
    active_count: int
    completed_count: int
    failed_count: int
    #: seconds the oldest due waiting job had waited since its run_at (None: none waiting)
    oldest_age_s: float | None = None
    captured_at: float


@dataclass(slots=True, frozen=True, kw_only=True)
class Schedule:
    """A cron schedule: a job template enqueued at every slot (fire time) of a cron expression.

    Slots are claimed by moving `last_slot` forward with `schedule_claim`, a compare-and-set on
    `version`, so of two nodes (or a node and itself after a restart) that see one slot due,
    exactly one claims it. A claimed slot is `pending` until its job is enqueued; a pending slot
    whose claimer died is enqueued by whoever finds it later, under the same idempotency key.
    Times are epoch seconds."""

    #: unique; part of every tick's idempotency key (`schedule:<name>:<slot>`)
    name: str
    #: five-field crontab expression ("*/5 * * * *")
    cron: str
    #: IANA time zone the expression is read in ("Europe/Paris")
    timezone: str
    #: the job each slot enqueues, orjson-encoded: {"queue", "type", "data", "options"}
    template_json: bytes
    #: what a slot missed while nothing ran becomes: "skip" or "catch_up_once"
    missed: str
    #: whose jobs the ticks are (the creator's tenant and user)
    tenant_id: str | None
    user_id: str | None
    created_at: float
    #: every slot at or before this time has been claimed (enqueued, or skipped as missed)
    last_slot: float
    #: claimed slots whose jobs are not known to be enqueued yet, and when they were claimed
    pending: tuple[float, ...] = ()
    pending_at: float | None = None
    #: bumped by every claim and settle; what `schedule_claim` compares
    version: int = 0
    #: the job the latest enqueued slot became, and the error of the latest slot that failed
    last_job_id: str | None = None
    last_error: str | None = None
    #: an operator paused it: no slot is claimed until it is resumed, and the slots that fall
    #: meanwhile are dropped, not caught up
    paused: bool = False

    @property
    def template(self) -> Any:
        return orjson.loads(self.template_json)


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

    async def queue_oldest_due(self, queue: str, now: float) -> float | None:
        """The run_at of the longest-waiting job of `queue` that is due (waiting with
        run_at <= now, parked ones included), or None when there is none."""
        ...

    # --- monitor: alerts and queue snapshots ------------------------------------------------
    # Kept as durably as the communication tier (the SQLite journal writes them in its group
    # commit). A backend keeps the newest alert id it ever gave, so ids are never reused, even
    # after every alert was pruned and the store reopened.

    async def alert_insert(self, alert: NewAlert) -> AlertRecord:
        """Store a new alert; returns it with its id."""
        ...

    async def alert_get(self, alert_id: int) -> AlertRecord | None: ...

    async def alert_list(self, severity: str | None = None, limit: int = 50, *,
                         since: float | None = None, queue: str | None = None,
                         alert_type: str | None = None,
                         acknowledged: bool | None = None) -> list[AlertRecord]:
        """Alerts created at or after `since` (when given), of one severity, queue, type or
        acknowledgement state when given, newest first (then by id), at most `limit`."""
        ...

    async def alert_set_channels(self, alert_id: int, channels: Mapping[str, str]) -> None:
        """Merge `channels` into the alert's channel outcomes (named channels are replaced,
        others kept). An unknown id changes nothing."""
        ...

    async def alert_acknowledge(self, alert_id: int, by: str, at: float) -> AlertRecord | None:
        """Mark an alert acknowledged by `by` at `at`; returns it as it is now (None: no such
        alert). An alert acknowledged before keeps its first acknowledgement."""
        ...

    async def alert_prune(self, before: float) -> int:
        """Delete alerts created before `before`; returns how many."""
        ...

    async def snapshot_insert(self, snapshots: Sequence[QueueSnapshot]) -> None:
        """Record snapshots in one write."""
        ...

    async def snapshot_list(self, queue: str | None, start: float, end: float,
                            limit: int = 10_000) -> list[QueueSnapshot]:
        """Snapshots (of one queue when given) captured in [start, end), oldest first, at most
        `limit`."""
        ...

    async def snapshot_prune(self, before: float) -> int:
        """Delete snapshots captured before `before`; returns how many."""
        ...

    # --- idempotency keys and cron schedules ------------------------------------------------

    async def job_release_keys(self, now: float) -> int:
        """Release the idempotency keys of completed jobs whose hold has ended (key_until <=
        now). An ended hold already matches no enqueue; releasing it drops what keeping it
        costs (memory, an index entry) and lets retention remove the job without looking at
        the key again. Returns how many holds were released."""
        ...

    async def schedule_put(self, schedule: Schedule, *, replace: bool = False) -> bool:
        """Store a schedule; one with the same name is replaced only when `replace`. Returns
        whether it was stored (False: the name is taken)."""
        ...

    async def schedule_get(self, name: str) -> Schedule | None: ...

    async def schedule_list(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def schedule_delete(self, name: str) -> bool:
        """Remove a schedule; returns whether it existed. Jobs its ticks enqueued stay."""
        ...

    async def schedule_claim(self, name: str, version: int, *, last_slot: float,
                             pending: tuple[float, ...], at: float) -> Schedule | None:
        """Atomically, if the schedule is still at `version`: set its `last_slot`, record
        `pending` (the slots the caller will now enqueue) claimed `at`, and bump the version.
        Returns the schedule as it is then, or None when it is gone or someone else moved it
        first."""
        ...

    async def schedule_settle(self, name: str, pending: tuple[float, ...], *,
                              job_id: str | None, error: str | None) -> Schedule | None:
        """The `pending` slots were enqueued (the last one as `job_id`) or failed with `error`:
        clear them if they are still the pending ones, record the outcome and bump the
        version. Returns the schedule as it is then (None: it is gone)."""
        ...

    async def schedule_set_paused(self, name: str, paused: bool, *,
                                  at: float) -> Schedule | None:
        """Pause or resume a schedule and bump its version (so a claim decided before the
        change fails). Resuming moves `last_slot` up to `at`: the slots that fell while it was
        paused are dropped. Returns the schedule as it is then (None: it is gone)."""
        ...
