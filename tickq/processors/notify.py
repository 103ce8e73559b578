"""Webhooks the service sends about its own jobs: job callbacks and platform notifications.

* A job enqueued with a `callback_url` is reported there when it completes (`job.completed`) or
  lands in the dead-letter queue (`job.failed`), with `{jobId, type, state, result | error,
  attempts, finishedAt}`; idempotency key `callback-<job id>-<state>`.
* The platform is told of completed payments, refunds and mints (`payment.completed`,
  `refund.completed`, `nft.minted` to PAYMENT_/REFUND_/NFT_WEBHOOK_URL; key `notify-<job id>`)
  and of money jobs that land in the dead-letter queue (`operation.failed` to
  ADMIN_WEBHOOK_URL; key `notify-<job id>-failed`, so a job that fails, is retried from the
  dead-letter queue and then completes is reported both times).

Each report is a `webhook-deliver` job, so it is durable, signed and retried like any webhook.
`deliveries_for(job)` decides what a finished job is owed; two things feed it. The engine's
events, as jobs finish: subscribers run synchronously inside the engine, so they only queue the
jobs to enqueue and one task enqueues them in batches. And a sweep when the engine starts, over
the jobs that finished within the `webhook-deliver` key TTL: a process that died (or stopped)
between committing a job's end and enqueueing its report left that report unsent, and the sweep
sends it. Idempotency keys make both paths, and repeated sweeps, enqueue each report once; the
sweep also skips a report whose delivery job exists in any state, so one that went to the
dead-letter queue is not sent again on every restart.

Platform deliveries are enqueued without a tenant: a job with a tenant (every job enqueued over
the API has one) may not deliver to a platform notification URL, since the payload would be
signed with the service's secret and the platform trusts what arrives there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tickq.clock import iso
from tickq.engine.events import Event, EventKind
from tickq.engine.job import Job
from tickq.engine.producer import JobSpec
from tickq.engine.states import JobState
from tickq.errors import StoreClosedError, ValidationError
from tickq.storage.base import JobQuery

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)

DELIVER = "webhook-deliver"
#: completed payments, refunds and mints are announced: job type -> (event, settings field)
COMPLETION_EVENTS: dict[str, tuple[str, str]] = {
    "payment-process": ("payment.completed", "payment_webhook_url"),
    "refund-process": ("refund.completed", "refund_webhook_url"),
    "nft-mint": ("nft.minted", "nft_webhook_url"),
}
#: jobs of this queue that land in the dead-letter queue alert ADMIN_WEBHOOK_URL
ALERT_QUEUE = "money"
#: the events that can leave a job finished (a restart or a lease loss can exhaust a job too)
_FINISHING = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.EXPIRED,
                        EventKind.STALLED})
_REPORTED = frozenset({JobState.COMPLETED, JobState.FAILED})
#: a result or input larger than this is left out of a report (the delivery job's data has a
#: size limit, and a receiver can read the job over the API)
MAX_EMBEDDED_BYTES = 256 * 1024
#: jobs read per page by the sweep, and reports enqueued per batch
PAGE, BATCH = 500, 200
#: how often an enqueue that failed for an unexpected reason is tried
ENQUEUE_TRIES = 3


@dataclass(frozen=True, slots=True)
class Delivery:
    """One report a finished job is owed."""

    url: str
    event: str
    key: str
    payload: dict[str, Any]
    tenant_id: str | None = None
    user_id: str | None = None

    def spec(self) -> JobSpec:
        return JobSpec(type=DELIVER, idempotency_key=self.key, tenant_id=self.tenant_id,
                       user_id=self.user_id,
                       data={"url": self.url, "event": self.event, "payload": self.payload,
                             "deliveryId": self.key})


def _embedded(raw: bytes | None) -> tuple[Any, bool]:
    """A stored JSON value to put in a report, and whether it was left out for its size."""
    if raw is None:
        return None, False
    if len(raw) > MAX_EMBEDDED_BYTES:
        return None, True
    return orjson.loads(raw), False


def outcome(job: Job) -> dict[str, Any]:
    """How a finished job ended, as every report states it."""
    body: dict[str, Any] = {
        "jobId": job.id, "type": job.type, "state": job.state.value, "attempts": job.attempts,
        "finishedAt": iso(job.finished_at) if job.finished_at is not None else None}
    if job.state is JobState.COMPLETED:
        result, omitted = _embedded(job.result_json)
        body["result"] = result
        if omitted:
            body["resultOmitted"] = True
    else:
        errors = job.errors
        last = errors[-1] if errors else None
        body["error"] = ({"type": last.type, "code": last.code, "message": last.message,
                          "attempt": last.attempt} if last is not None
                         else {"type": None, "code": None, "message": job.state.value,
                               "attempt": job.attempts})
    return body


def platform_urls(settings: Settings) -> frozenset[str]:
    """The operator's notification URLs that are set."""
    names = [field for _, field in COMPLETION_EVENTS.values()] + ["admin_webhook_url"]
    return frozenset(u for u in (getattr(settings, n) for n in names) if u)


def deliveries_for(job: Job, settings: Settings) -> list[Delivery]:
    """The reports `job` is owed in its current state (none unless completed or failed)."""
    state = job.state
    if state not in _REPORTED:
        return []
    out: list[Delivery] = []
    if job.callback_url:
        out.append(Delivery(url=job.callback_url, event=f"job.{state.value}",
                            key=f"callback-{job.id}-{state.value}", payload=outcome(job),
                            tenant_id=job.tenant_id, user_id=job.user_id))
    if state is JobState.COMPLETED and job.type in COMPLETION_EVENTS:
        event, field = COMPLETION_EVENTS[job.type]
        url: str | None = getattr(settings, field)
        if url:
            out.append(Delivery(url=url, event=event, key=f"notify-{job.id}",
                                payload=_platform_payload(job)))
    elif state is JobState.FAILED and job.queue == ALERT_QUEUE and settings.admin_webhook_url:
        out.append(Delivery(url=settings.admin_webhook_url, event="operation.failed",
                            key=f"notify-{job.id}-failed", payload=_platform_payload(job)))
    return out


def _platform_payload(job: Job) -> dict[str, Any]:
    body = outcome(job)
    data, omitted = _embedded(job.data_json)
    body.update({"queue": job.queue, "tenantId": job.tenant_id, "userId": job.user_id,
                 "input": data})
    if omitted:
        body["inputOmitted"] = True
    return body


class Notifier:
    """Turns finished jobs into report deliveries (see the module docstring)."""

    def __init__(self, engine: Engine, settings: Settings, *, window_s: float | None = None,
                 poll_s: float = 0.05) -> None:
        self.engine = engine
        self.settings = settings
        #: the sweep looks this far back; default: the webhook-deliver key TTL, the span within
        #: which an idempotency key still stops a second enqueue of the same report
        self.window_s = window_s
        self.poll_s = poll_s
        #: set once the start-up sweep has run (or failed); the count it enqueued
        self.swept = asyncio.Event()
        self.sweep_enqueued = 0
        self._pending: list[JobSpec] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """Subscribe to the engine's events and schedule the start-up sweep (which waits until
        the engine runs: integrations start before the engine does)."""
        if self._unsubscribe is not None:
            return
        self._unsubscribe = self.engine.events.subscribe(self._on_event, _FINISHING)
        self._tasks = [asyncio.create_task(self._pump(), name="tickq-notify"),
                       asyncio.create_task(self._sweep_when_running(), name="tickq-notify-sweep")]

    async def close(self) -> None:
        """Stop. Reports not enqueued yet are left to the next start's sweep."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pending:
            log.info("reports left for the next start-up sweep",
                     extra={"event": "notify_deferred", "count": len(self._pending)})
            self._pending.clear()

    # --- live path ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Only finishing events arrive (see `start`); `deliveries_for` skips states owed nothing.
        deliveries = deliveries_for(event.job, self.settings)
        if deliveries:
            self._pending.extend(d.spec() for d in deliveries)
            self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                await self._enqueue(batch)

    async def _enqueue(self, specs: Sequence[JobSpec]) -> int:
        """Enqueue reports; returns how many were new. A refused one is logged and skipped;
        when the engine is not running they are left for the next start-up sweep."""
        for attempt in range(1, ENQUEUE_TRIES + 1):
            try:
                done = await self.engine.enqueue_many(specs)
                return sum(1 for e in done if e.created)
            except StoreClosedError:
                log.info("engine not running; reports left for the next start-up sweep",
                         extra={"event": "notify_deferred", "count": len(specs)})
                return 0
            except ValidationError as exc:
                if len(specs) > 1:  # one bad report refuses its batch; send the others
                    return sum([await self._enqueue([s]) for s in specs])
                log.error("report refused: %s", exc.message,
                          extra={"event": "notify_refused",
                                 "key": specs[0].idempotency_key})
                return 0
            except Exception:
                log.exception("enqueueing reports failed",
                              extra={"event": "notify_enqueue_failed", "attempt": attempt,
                                     "count": len(specs)})
                await asyncio.sleep(0.5 * attempt)
        return 0

    # --- start-up sweep ---------------------------------------------------------------------

    async def _sweep_when_running(self) -> None:
        try:
            # The engine signals nothing when it starts, so its flag is polled.
            while not self.engine.running:  # noqa: ASYNC110
                await asyncio.sleep(self.poll_s)
            self.sweep_enqueued = await self.sweep()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the start-up report sweep failed", extra={"event": "notify_sweep"})
        finally:
            self.swept.set()

    async def sweep(self) -> int:
        """Enqueue the reports owed by jobs that finished within the window and have no
        delivery job yet; returns how many were enqueued."""
        engine = self.engine
        window = self.window_s
        if window is None:
            window = engine.registry.job_type(DELIVER).key_ttl_s
        since = engine.clock.now() - window
        known = await self._known_keys(since)
        owed: list[JobSpec] = []
        created = 0
        for queue in engine.registry.queues:
            after: str | None = None
            while True:
                page = await engine.list_jobs(JobQuery(
                    queue=queue.name, states=_REPORTED, finished_after=since, after=after,
                    limit=PAGE))
                for job in page:
                    for d in deliveries_for(job, self.settings):
                        if d.key not in known:
                            known.add(d.key)
                            owed.append(d.spec())
                if len(owed) >= BATCH:
                    created += await self._enqueue(owed)
                    owed = []
                if len(page) < PAGE:
                    break
                after = page[-1].id
        if owed:
            created += await self._enqueue(owed)
        log.info("start-up report sweep done", extra={"event": "notify_sweep",
                                                      "enqueued": created})
        return created

    async def _known_keys(self, since: float) -> set[str]:
        """Idempotency keys of delivery jobs created since `since`, in any state. Ids grow
        with creation time, so newest first the listing stops at the first older job."""
        keys: set[str] = set()
        after: str | None = None
        while True:
            page = await self.engine.list_jobs(JobQuery(type=DELIVER, after=after, limit=PAGE))
            for job in page:
                if job.created_at < since:
                    return keys
                if job.idempotency_key:
                    keys.add(job.idempotency_key)
            if len(page) < PAGE:
                return keys
            after = page[-1].id
