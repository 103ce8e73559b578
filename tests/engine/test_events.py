"""The event bus: subscribers by kind, order, isolation of a failing subscriber."""

from __future__ import annotations

import tickq
from tickq.engine.events import Event, EventBus, EventKind


def _job() -> tickq.Job:
    return tickq.Job(id="j1", queue="communication", type="send-email", data_json=b"{}",
                     priority=5, max_attempts=3, run_at=0.0, created_at=0.0)


def test_subscribers_get_only_the_kinds_they_asked_for_in_order() -> None:
    bus, seen = EventBus(), []
    bus.subscribe(lambda e: seen.append(("all", e.kind)))
    bus.subscribe(lambda e: seen.append(("done", e.kind)), {EventKind.COMPLETED})
    assert bus.wants(EventKind.ENQUEUED) and bus.wants(EventKind.COMPLETED)
    bus.emit(EventKind.ENQUEUED, _job(), 1.0)
    bus.emit(EventKind.COMPLETED, _job(), 2.0)
    assert seen == [("all", EventKind.ENQUEUED), ("all", EventKind.COMPLETED),
                    ("done", EventKind.COMPLETED)]


def test_an_event_nobody_wants_is_not_made_and_unsubscribing_works() -> None:
    bus, seen = EventBus(), []
    remove = bus.subscribe(seen.append, [EventKind.FAILED])
    assert not bus.wants(EventKind.ENQUEUED) and bus.wants(EventKind.FAILED)
    bus.emit(EventKind.ENQUEUED, _job(), 1.0)
    assert seen == []
    remove()
    remove()  # twice is harmless
    assert not bus.active and not bus.wants(EventKind.FAILED)
    bus.emit(EventKind.FAILED, _job(), 1.0)
    assert seen == []


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    bus, seen = EventBus(), []

    def broken(event: Event) -> None:
        raise RuntimeError("bug in a subscriber")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.emit(EventKind.CANCELLED, _job(), 3.0, "asked")
    [event] = seen
    assert (event.kind, event.at, event.reason) == (EventKind.CANCELLED, 3.0, "asked")
