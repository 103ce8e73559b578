"""tickq: durable job processing for a ticketing platform.

    async with tickq.open("sqlite:///jobs.db") as engine:
        @engine.processor("send-welcome", queue="communication")
        async def send_welcome(job: tickq.Job) -> dict: ...
        job = await engine.enqueue("send-welcome", {"to": "a@example.com"})
        print(await engine.result(job.id, timeout=5))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tickq.clock import Clock, FakeClock, SystemClock
from tickq.engine.backoff import BackoffKind, BackoffPolicy
from tickq.engine.engine import Engine, JobFailed
from tickq.engine.events import Event, EventKind
from tickq.engine.job import ErrorEntry, Job
from tickq.engine.producer import Enqueued, JobSpec
from tickq.engine.queues import Durability, QueueConfig, QueueCounts
from tickq.engine.registry import JobType, Registry
from tickq.engine.states import JobState
from tickq.errors import (
    CircuitOpen,
    IllegalTransitionError,
    JobNotFoundError,
    PermanentError,
    RateLimited,
    RetryableError,
    TickqError,
    ValidationError,
)
from tickq.storage import open_store
from tickq.storage.base import JobQuery

__version__ = "0.1.0"


@asynccontextmanager
async def open(url: str = "memory://", **engine_options: Any) -> AsyncIterator[Engine]:
    """An engine on the store at `url`, started on entry and shut down gracefully on exit."""
    engine = Engine(open_store(url), **engine_options)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


__all__ = [
    "BackoffKind", "BackoffPolicy", "CircuitOpen", "Clock", "Durability", "Engine", "Enqueued",
    "ErrorEntry", "Event", "EventKind", "FakeClock", "IllegalTransitionError", "Job", "JobFailed",
    "JobNotFoundError", "JobQuery", "JobSpec", "JobState", "JobType", "PermanentError",
    "QueueConfig", "QueueCounts", "RateLimited", "Registry", "RetryableError", "SystemClock",
    "TickqError", "ValidationError", "open", "open_store",
]
