"""How jobs look in API responses: the spec's field names (camelCase), times as ISO-8601 UTC.

The idempotency key is not shown: the spec keeps keys internal (seed-003 "Idempotency
Protection"), and an automatic key only restates parts of the job's data.
"""

from __future__ import annotations

from typing import Any

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.engine.states import JobState


def status_of(job: Job, now: float) -> str:
    """The spec's status words: a waiting job is "queued" (or "delayed" until its run_at),
    every other state is named as it is."""
    if job.state is JobState.WAITING:
        return "delayed" if job.run_at > now else "queued"
    return job.state.value


def delay_ms(job: Job) -> int:
    return max(0, round((job.run_at - job.created_at) * 1000))


def enqueued_view(job: Job, now: float, *, created: bool) -> dict[str, Any]:
    """The answer to an enqueue (spec endpoint 1): the job's id and effective options."""
    return {
        "jobId": job.id, "queue": job.queue, "type": job.type, "status": status_of(job, now),
        "options": {"priority": job.priority, "delay": delay_ms(job),
                    "attempts": job.max_attempts},
        "createdAt": iso(job.created_at), "runAt": iso(job.run_at),
        # False when an idempotency key matched an existing job, which this then describes
        "created": created,
    }


def job_view(job: Job, now: float) -> dict[str, Any]:
    """A job in full (spec endpoint 3), plus what tickq knows beyond the spec's fields."""
    errors = job.errors
    failed_reason = errors[-1].message if errors and job.state is JobState.FAILED else None
    return {
        "id": job.id, "queue": job.queue, "type": job.type, "data": job.data,
        "state": job.state.value, "status": status_of(job, now),
        "progress": job.progress, "attempts": job.attempts, "maxAttempts": job.max_attempts,
        "priority": job.priority,
        "createdAt": iso(job.created_at), "runAt": iso(job.run_at),
        "processedAt": iso(job.started_at), "finishedAt": iso(job.finished_at),
        "expiresAt": iso(job.expires_at),
        "failedReason": failed_reason,
        "result": job.result,
        "errors": [{"attempt": e.attempt, "type": e.type, "code": e.code,
                    "message": e.message, "at": iso(e.at)} for e in errors],
        "tenantId": job.tenant_id, "userId": job.user_id,
        "orderingKey": job.ordering_key, "callbackUrl": job.callback_url,
        "stalls": job.stalls,
        "needsReconcile": job.needs_reconcile,
    }
