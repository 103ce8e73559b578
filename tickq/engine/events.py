"""Engine events: what happened to a job, for metrics, callbacks, alerts and live views.

Subscribers are plain callables run synchronously on the event loop, in the order they subscribed;
one that raises is logged and does not stop the others. An event is emitted after the change it
reports is as durable as the job's queue asks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tickq.engine.job import Job

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    ENQUEUED = "enqueued"
    STARTED = "started"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"          # moved to the dead-letter queue
    RETRIED = "retried"        # an attempt failed; the job waits for its next one
    DEFERRED = "deferred"      # snoozed without spending an attempt (rate limit, breaker, shutdown)
    CANCELLED = "cancelled"
    STALLED = "stalled"        # its run was lost (lease expired or process died)
    EXPIRED = "expired"        # failed because it waited past expires_at
    REVIVED = "revived"        # a dead-letter job was put back to waiting


@dataclass(slots=True, frozen=True)
class Event:
    kind: EventKind
    job: Job
    at: float
    #: for deferred/retried/failed: why (rate_limited, circuit_open, shutdown, exhausted, ...)
    reason: str | None = None


Subscriber = Callable[[Event], None]


class EventBus:
    __slots__ = ("_subs",)

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subs.append(fn)

        def unsubscribe() -> None:
            if fn in self._subs:
                self._subs.remove(fn)

        return unsubscribe

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def emit(self, kind: EventKind, job: Job, at: float, reason: str | None = None) -> None:
        if not self._subs:
            return
        event = Event(kind, job, at, reason)
        for fn in tuple(self._subs):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber failed", extra={"event": kind.value,
                                                                "job_id": job.id})
