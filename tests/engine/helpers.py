"""Shared pieces for tests that run a live engine (background dispatcher, real asyncio)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import tickq

#: retries that come back almost at once, so retry scenarios finish in milliseconds
FAST = tickq.BackoffPolicy(kind=tickq.BackoffKind.FIXED, base_s=0.01, cap_s=0.01, jitter=False)

#: engine options every live test uses unless it says otherwise: a short shutdown grace so a
#: test that leaves a processor hanging cannot stall the run for the default 30 s
DEFAULTS: dict[str, Any] = {"shutdown_grace_s": 1.0}


def sqlite_url(folder: Any, name: str = "tickq.db") -> str:
    """A SQLite URL for a file in `folder` (an absolute path: four slashes)."""
    return f"sqlite:///{folder}/{name}"


@asynccontextmanager
async def running(url: str, **options: Any) -> AsyncIterator[tickq.Engine]:
    """`tickq.open` with the test defaults."""
    async with tickq.open(url, **{**DEFAULTS, **options}) as engine:
        yield engine


def engine_on(url: str, **options: Any) -> tickq.Engine:
    """An engine that is not started yet (subscribe or register before `start`)."""
    return tickq.Engine(tickq.open_store(url), **{**DEFAULTS, **options})


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0,
                     what: str = "condition") -> None:
    """Poll until `predicate()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.005)


class EventLog:
    """A subscriber that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tickq.Event] = []

    def __call__(self, event: tickq.Event) -> None:
        # The job in an event may be the store's live record; keep it as it was at the time.
        self.events.append(tickq.Event(event.kind, event.job.copy(), event.at, event.reason))

    def kinds(self, job_id: str) -> list[tickq.EventKind]:
        return [e.kind for e in self.events if e.job.id == job_id]

    def of(self, kind: tickq.EventKind, job_id: str | None = None) -> list[tickq.Event]:
        return [e for e in self.events
                if e.kind is kind and (job_id is None or e.job.id == job_id)]
