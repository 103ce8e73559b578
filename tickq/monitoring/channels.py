"""Where an alert goes beyond the log and the store: the admin webhook, email and SMS.

Each of the three is delivered as a job of the engine (`webhook-deliver` to ADMIN_WEBHOOK_URL,
`send-email` with the `admin-alert` template to ADMIN_EMAIL, `send-sms` to ALERT_SMS_TO) rather
than sent from the monitor. That makes a delivery durable (the communication tier survives a
crash), retried with backoff when the receiver is down, held to the provider's rate limit and
breaker (Twilio's 1/s is shared with every other SMS), and visible in the dead-letter queue when
it finally fails; and it reuses the senders that already sign webhooks and render templates. The
idempotency key `alert-<id>-<channel>` makes each channel of an alert one job, however often it
is enqueued. Deliveries carry the highest priority, so an alert is not stuck behind the backlog
it may be reporting.

A channel that is not configured (its destination or the integration behind it is missing) is
recorded as `not_configured`, with the reason in the log, and nothing is enqueued: nothing ever
pretends an alert went out. SMS is for critical alerts only (`skipped` for the rest) unless the
alert is a test. Once a delivery job ends, `DeliveryTracker` records `sent` or `failed` on the
alert and counts the sent ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tickq.engine.events import Event, EventKind
from tickq.engine.jobtypes import CRITICAL
from tickq.engine.monitor import AlertType, Severity
from tickq.engine.producer import JobSpec
from tickq.engine.states import JobState
from tickq.errors import TickqError
from tickq.storage.base import AlertRecord, JobQuery

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What became of an alert on one channel."""

    LOGGED = "logged"
    STORED = "stored"
    #: about to be enqueued (a process that stopped right here leaves this behind)
    PENDING = "pending"
    #: a delivery job is waiting or running
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    #: not for this alert (SMS below critical, or a test aimed at another channel)
    SKIPPED = "skipped"
    NOT_CONFIGURED = "not_configured"


#: the channels every alert takes, in order
ALWAYS = ("log", "stored")
#: the channels delivered as jobs, and the job type each one enqueues
DELIVERED: dict[str, str] = {"webhook": "webhook-deliver", "email": "send-email",
                             "sms": "send-sms"}
CHANNELS = (*ALWAYS, *DELIVERED)
#: the webhook event alerts are delivered as
WEBHOOK_EVENT = "queue.alert"
EMAIL_TEMPLATE = "admin-alert"
_KEY = re.compile(r"^alert-([0-9]+)-(webhook|email|sms)$")
_SMS_HEAD: dict[str, str] = {Severity.CRITICAL: "\U0001f6a8 CRITICAL",
                             Severity.WARNING: "\u26a0\ufe0f WARNING", Severity.INFO: "INFO"}


def delivery_key(alert_id: int, channel: str) -> str:
    return f"alert-{alert_id}-{channel}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's outcome for one alert; `job_id` for a delivery job, `reason` for anything
    that did not go out."""

    status: Outcome
    job_id: str | None = None
    reason: str | None = None


class AlertChannels:
    """The delivered channels of one service: which are configured, and the jobs that carry an
    alert to them."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.engine = engine
        self.webhook_url = settings.admin_webhook_url
        self.email_to = settings.admin_email
        self.sms_to = settings.alert_sms_to
        self._missing: dict[str, list[str]] = {
            "webhook": [v for v, ok in (("ADMIN_WEBHOOK_URL", settings.admin_webhook_url),
                                        ("WEBHOOK_SIGNING_SECRET",
                                         settings.webhook_signing_secret)) if not ok],
            "email": [v for v, ok in (("ADMIN_EMAIL", settings.admin_email),
                                      ("EMAIL_HOST", settings.email_host)) if not ok],
            "sms": [v for v, ok in (("ALERT_SMS_TO", settings.alert_sms_to),
                                    ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                                    ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
                                    ("TWILIO_FROM_NUMBER", settings.twilio_from_number))
                    if not ok],
        }

    def why_not_configured(self, channel: str) -> str | None:
        """None when the channel can deliver; otherwise which settings it lacks."""
        missing = self._missing.get(channel, [])
        if not missing:
            return None
        return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"

    def plan(self, severity: str, *, test: bool = False,
             only: str | None = None) -> dict[str, ChannelResult]:
        """Each delivered channel's outcome decided before anything is enqueued: not
        configured, skipped, or pending (to be enqueued)."""
        out: dict[str, ChannelResult] = {}
        for channel in DELIVERED:
            reason = self.why_not_configured(channel)
            if only is not None and channel != only:
                out[channel] = ChannelResult(Outcome.SKIPPED, reason=f"the test named {only}")
            elif reason is not None:
                out[channel] = ChannelResult(Outcome.NOT_CONFIGURED, reason=reason)
            elif channel == "sms" and not test and severity != Severity.CRITICAL:
                out[channel] = ChannelResult(Outcome.SKIPPED,
                                             reason="SMS is for critical alerts only")
            else:
                out[channel] = ChannelResult(Outcome.PENDING)
        return out

    async def deliver(self, alert: AlertRecord,
                      plan: dict[str, ChannelResult]) -> dict[str, ChannelResult]:
        """Enqueue a delivery job for every pending channel of `plan`; returns the plan with
        their outcomes (queued, or failed with the reason the engine refused it)."""
        out = dict(plan)
        for channel, planned in plan.items():
            if planned.status is not Outcome.PENDING:
                continue
            try:
                job = await self.engine.enqueue_many([self.spec(channel, alert)])
            except Exception as exc:
                reason = exc.message if isinstance(exc, TickqError) else repr(exc)
                log.error("alert delivery could not be enqueued: %s", reason,
                          extra={"event": "alert_delivery_refused", "alert_id": alert.id,
                                 "channel": channel})
                out[channel] = ChannelResult(Outcome.FAILED, reason=reason)
                continue
            out[channel] = ChannelResult(Outcome.QUEUED, job_id=job[0].job.id)
        return out

    def spec(self, channel: str, alert: AlertRecord) -> JobSpec:
        """The delivery job of `alert` on `channel` (no tenant: the service's own job)."""
        key = delivery_key(alert.id, channel)
        data: dict[str, Any]
        if channel == "webhook":
            data = {"url": self.webhook_url, "event": WEBHOOK_EVENT, "deliveryId": key,
                    "payload": payload(alert)}
        elif channel == "email":
            data = {"to": self.email_to, "template": EMAIL_TEMPLATE,
                    "data": email_data(alert)}
        else:
            data = {"to": self.sms_to, "message": sms_text(alert)}
        return JobSpec(type=DELIVERED[channel], data=data, idempotency_key=key,
                       priority=CRITICAL)


def payload(alert: AlertRecord) -> dict[str, Any]:
    """The alert as the admin webhook receives it."""
    return {"alertId": alert.id, "severity": alert.severity, "type": alert.alert_type,
            "message": alert.message, "queue": alert.queue_name,
            "metricValue": alert.metric_value, "thresholdValue": alert.threshold_value,
            "createdAt": iso(alert.created_at), "test": alert.alert_type == AlertType.TEST}


def email_data(alert: AlertRecord) -> dict[str, Any]:
    """The `admin-alert` template's variables."""
    details: dict[str, Any] = {"Alert id": alert.id, "Type": alert.alert_type}
    if alert.metric_value is not None:
        details["Measured"] = f"{alert.metric_value:g}"
    if alert.threshold_value is not None:
        details["Threshold"] = f"{alert.threshold_value:g}"
    data: dict[str, Any] = {"title": title(alert), "message": alert.message,
                            "severity": alert.severity, "occurredAt": iso(alert.created_at),
                            "details": details}
    if alert.queue_name is not None:
        data["queue"] = alert.queue_name
    return data


def title(alert: AlertRecord) -> str:
    if alert.alert_type == AlertType.TEST:
        return "Test alert"
    what = {"queue_depth": "queue depth", "job_age": "job waiting too long",
            "high_failures": "failed jobs"}.get(alert.alert_type, alert.alert_type)
    return f"{alert.queue_name or 'service'} queue: {what}"


def sms_text(alert: AlertRecord) -> str:
    """seed-003's example: "🚨 CRITICAL Queue Alert: Money queue has 75 jobs waiting! ..."."""
    head = _SMS_HEAD.get(alert.severity, alert.severity.upper())
    return f"{head} tickq alert #{alert.id}:\n{alert.message}"[:1600]


# --- what became of the deliveries ---------------------------------------------------------------

#: the events that end a delivery job, and what they mean for the alert
_ENDINGS = {EventKind.COMPLETED: Outcome.SENT, EventKind.FAILED: Outcome.FAILED,
            EventKind.EXPIRED: Outcome.FAILED}
AlertCounter = Callable[[str, str, str], None]


def delivery_of(event: Event) -> tuple[int, str] | None:
    """(alert id, channel) when the event's job is an alert delivery this service enqueued:
    no tenant (a caller's job always has one, so an API user cannot pose as one) and the job
    type of the channel its key names."""
    job = event.job
    key = job.idempotency_key
    if job.tenant_id is not None or key is None:
        return None
    match = _KEY.match(key)
    if match is None or DELIVERED[match.group(2)] != job.type:
        return None
    return int(match.group(1)), match.group(2)


class DeliveryTracker:
    """Records on each alert how its delivery jobs ended, and counts the sent ones with
    `count(severity, type, channel)`. Engine subscribers run synchronously, so the event only
    queues the update and one task writes it."""

    def __init__(self, engine: Engine, count: AlertCounter | None = None) -> None:
        self.engine = engine
        self.count = count
        self._pending: list[tuple[int, str, Outcome]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._task is not None:
            return
        self._unsubscribe = self.engine.events.subscribe(self._on_event, _ENDINGS)
        self._task = asyncio.create_task(self._pump(), name="tickq-alert-deliveries")

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def settled(self) -> None:
        """Wait until every update queued so far is written."""
        await self._idle.wait()

    def _on_event(self, event: Event) -> None:
        found = delivery_of(event)
        outcome = _ENDINGS.get(event.kind)
        if found is None or outcome is None:
            return
        self._pending.append((*found, outcome))
        self._idle.clear()
        self._wake.set()

    async def _pump(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                for alert_id, channel, outcome in batch:
                    await self.record(alert_id, channel, outcome)
            self._idle.set()

    async def record(self, alert_id: int, channel: str, outcome: Outcome) -> None:
        store = self.engine.store
        try:
            await store.alert_set_channels(alert_id, {channel: outcome.value})
            if outcome is Outcome.SENT and self.count is not None:
                alert = await store.alert_get(alert_id)
                if alert is not None:
                    self.count(alert.severity, alert.alert_type, channel)
        except Exception:
            log.exception("alert delivery outcome not recorded",
                          extra={"event": "alert_delivery_unrecorded", "alert_id": alert_id,
                                 "channel": channel})
            return
        level = logging.INFO if outcome is Outcome.SENT else logging.ERROR
        log.log(level, f"alert {alert_id} {channel} delivery {outcome.value}",
                extra={"event": "alert_delivery", "alert_id": alert_id, "channel": channel,
                       "outcome": outcome.value})

    async def reconcile(self, alerts: list[AlertRecord], max_lookups: int = 100) -> int:
        """Bring alerts whose deliveries ended while nobody was listening (the process
        stopped first) up to date from their jobs; returns how many channels changed."""
        changed = lookups = 0
        for alert in alerts:
            for channel, status in alert.channels.items():
                if status != Outcome.QUEUED or channel not in DELIVERED:
                    continue
                if lookups >= max_lookups:
                    return changed
                lookups += 1
                jobs = await self.engine.list_jobs(JobQuery(
                    type=DELIVERED[channel], idempotency_key=delivery_key(alert.id, channel),
                    limit=5))
                ends = [j.state for j in jobs if j.tenant_id is None]
                if JobState.COMPLETED in ends:
                    outcome = Outcome.SENT
                elif ends and all(s in (JobState.FAILED, JobState.CANCELLED) for s in ends):
                    outcome = Outcome.FAILED
                else:
                    continue
                await self.record(alert.id, channel, outcome)
                changed += 1
        return changed


__all__ = ["ALWAYS", "CHANNELS", "DELIVERED", "AlertChannels", "AlertCounter",
           "ChannelResult", "DeliveryTracker", "Outcome", "delivery_key", "delivery_of"]
