"""Request bodies and query strings of the job routes (spec seed-003 "API ENDPOINTS" 1-5 and
"Request Validation").

Field names are the spec's (camelCase). Unknown fields are refused rather than ignored, so a
misspelt option ("priorty") is an error instead of a silently different job. Parsing is strict:
`"5"` is not a priority and `true` is not an attempt count.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tickq.engine.states import JobState

#: a name of a queue or job type as it may appear in a request
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
#: idempotency and ordering keys: printable ASCII without spaces, as providers accept them
Key = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]

#: where a job's outcome is POSTed (signed) when it completes or fails: an absolute http(s) URL
#: with a host and no user:password (it is shown in the job's view); whether its address may be
#: reached is checked when the callback is delivered
CallbackUrl = Annotated[str, StringConstraints(max_length=2048,
                                               pattern=r"^https?://[^\s/?#@]+([/?#]\S*)?$")]

#: the longest delay a job may be given: a year, in milliseconds
MAX_DELAY_MS = 366 * 24 * 3600 * 1000
MAX_BATCH = 100
#: listing page sizes
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
#: job ids are UUIDs; anything much longer is not an id and is not looked up
MAX_ID_CHARS = 64


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobOptions(_Body):
    """Per-job options. Omitted ones take the job type's (then the queue's) defaults."""

    #: 1-10, 10 runs first
    priority: int | None = Field(default=None, ge=1, le=10)
    #: milliseconds to wait before the job may start (the spec's unit)
    delay: int | float = Field(default=0, ge=0, le=MAX_DELAY_MS, allow_inf_nan=False)
    #: how many attempts before the job goes to the dead-letter queue
    attempts: int | None = Field(default=None, ge=1, le=10)
    #: jobs sharing an ordering key run one at a time, in enqueue order
    orderingKey: Key | None = None


class NewJob(_Body):
    """POST /api/v1/queue/jobs"""

    queue: Name
    type: Name
    data: dict[str, Any]
    options: JobOptions = JobOptions()
    #: a caller-chosen key: a second enqueue with the same key returns the first job
    idempotencyKey: Key | None = None
    #: told of the job's outcome (a signed POST) when it completes or lands in the DLQ
    callbackUrl: CallbackUrl | None = None


class BatchJob(_Body):
    """One job of a batch; its queue is the batch's."""

    type: Name
    data: dict[str, Any]
    options: JobOptions = JobOptions()
    idempotencyKey: Key | None = None
    callbackUrl: CallbackUrl | None = None


class BatchOptions(_Body):
    #: refuse the whole batch (nothing enqueued) when any job is invalid
    stopOnError: bool = False
    #: check every job and report all problems; False stops checking at the first problem
    validateAll: bool = True


class NewBatch(_Body):
    """POST /api/v1/queue/jobs/batch"""

    queue: Name
    jobs: list[BatchJob] = Field(min_length=1, max_length=MAX_BATCH)
    options: BatchOptions = BatchOptions()


class RetryRequest(_Body):
    """POST /api/v1/queue/jobs/{id}/retry (the body is optional)"""

    #: when given, the job must be in this queue (the spec's clients send it)
    queue: Name | None = None
    #: attempts granted on top of those already spent; default: the job type's (or queue's)
    attempts: int | None = Field(default=None, ge=1, le=10)


class ListQuery(_Body):
    """GET /api/v1/queue/jobs query string."""

    queue: Name | None = None
    #: one or more states, comma-separated in the query string
    state: list[JobState] | None = None
    type: Name | None = None
    #: admins only: another tenant's jobs (everyone else always lists their own tenant)
    tenant: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    #: the `nextCursor` of the previous page
    after: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS,
                                            pattern=r"^[0-9A-Za-z-]+$")] | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


def query_values(query: Any) -> dict[str, Any]:
    """A query string as `ListQuery` input (parsed in lax mode: every value arrives as text).
    `state` may repeat or be comma-separated; any other repeated parameter keeps its last value."""
    values: dict[str, Any] = {}
    for name in set(query):
        items: list[str] = query.getall(name)
        if name == "state":
            values[name] = [s.strip() for item in items for s in item.split(",") if s.strip()]
        else:
            values[name] = items[-1]
    return values


# --- queues, dead-letter queue, rate limits (spec endpoints 6-16) ----------------------------

#: the deepest offset `GET /queues/{name}/jobs` pages to; beyond it, filter by state instead
MAX_OFFSET = 10_000
#: what `POST /queues/{name}/clear?type=` may cancel: jobs that have not started
CLEAR_TYPES = ("wait", "delayed", "all")
#: the statuses `GET /queues/{name}/jobs?status=` lists ("delayed" is a view of waiting)
QUEUE_STATUSES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")


class QueueJobsQuery(_Body):
    """GET /api/v1/queue/queues/{name}/jobs: offset paging as the spec has it."""

    status: Annotated[str, StringConstraints(pattern=rf"^({'|'.join(QUEUE_STATUSES)})$")]
    #: offset of the first job (0-based)
    start: int = Field(default=0, ge=0, le=MAX_OFFSET)
    #: offset after the last job: a page is jobs[start:end], at most MAX_LIMIT long
    end: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_OFFSET + MAX_LIMIT)


class ClearQuery(_Body):
    """POST /api/v1/queue/queues/{name}/clear: which not-yet-started jobs to cancel ("wait"
    is every waiting job, "delayed" only those whose run_at is still ahead)."""

    type: Annotated[str, StringConstraints(pattern=rf"^({'|'.join(CLEAR_TYPES)})$")] = "wait"


class DlqQuery(_Body):
    """GET /api/v1/queue/dlq: failed jobs, newest first, cursor-paginated like GET /jobs."""

    queue: Name | None = None
    type: Name | None = None
    after: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS,
                                            pattern=r"^[0-9A-Za-z-]+$")] | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class DlqRetry(_Body):
    """POST /api/v1/queue/dlq/retry"""

    jobIds: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]] = \
        Field(min_length=1, max_length=MAX_BATCH)
    #: attempts granted to each job; default: the job type's (or queue's)
    attempts: int | None = Field(default=None, ge=1, le=10)


class ServiceBody(_Body):
    """POST /api/v1/queue/rate-limits/emergency-stop and /resume (the body is optional):
    one provider, or every provider when absent."""

    service: Name | None = None
