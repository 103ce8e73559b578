"""Engine events: what happened to a job, for metrics, callbacks, alerts and live views.

Subscribers are plain callables run synchronously on the event loop, in the order they subscribed;
one that raises is logged and does not stop the others. An event is emitted after the change it
reports is as durable as the job's queue asks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
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
    DISCARDED = "discarded"    # a dead-letter job was deleted for good


@dataclass(slots=True, frozen=True)
class Event:
    kind: EventKind
    job: Job
    at: float
    #: for deferred/retried/failed: why (rate_limited, circuit_open, shutdown, exhausted, ...)
    reason: str | None = None


Subscriber = Callable[[Event], None]


class EventBus:
    """Subscribers may name the kinds they want: an event nobody wants is not even made, which
    keeps the enqueue of a hundred thousand jobs from building a hundred thousand events that
    the metrics (say) would look at and drop."""

    __slots__ = ("_by_kind", "_subs")

    def __init__(self) -> None:
        self._subs: list[tuple[Subscriber, frozenset[EventKind] | None]] = []
        self._by_kind: dict[EventKind, tuple[Subscriber, ...]] = {}

    def subscribe(self, fn: Subscriber, kinds: Iterable[EventKind] | None = None
                  ) -> Callable[[], None]:
        """Add a subscriber, for `kinds` only when given; returns the function that removes
        it."""
        entry = (fn, None if kinds is None else frozenset(kinds))
        self._subs.append(entry)
        self._index()

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
                self._index()

        return unsubscribe

    def _index(self) -> None:
        self._by_kind = {kind: tuple(fn for fn, kinds in self._subs
                                     if kinds is None or kind in kinds)
                         for kind in EventKind}

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def wants(self, kind: EventKind) -> bool:
        """Does any subscriber take events of this kind?"""
        return bool(self._by_kind.get(kind))

    def emit(self, kind: EventKind, job: Job, at: float, reason: str | None = None) -> None:
        subs = self._by_kind.get(kind)
        if not subs:
            return
        event = Event(kind, job, at, reason)
        for fn in subs:
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber failed", extra={"event": kind.value,
                                                                "job_id": job.id})
