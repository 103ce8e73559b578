"""What each run of a periodic task did, kept for `GET /api/v1/queue/maintenance`.

Runs are kept in memory, a bounded tail per process: they answer "did retention run, and what did
it remove?" on the node that ran it. Each run is also one log line, which is what outlives the
process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tickq.clock import iso

#: runs kept per process
MAX_RUNS = 200

RunOutcome = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What a task reports: counts of what it removed or made, by kind ("money": 12,
    "idempotencyKeys": 3), and anything else worth showing."""

    counts: Mapping[str, int] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRun:
    task: str
    started_at: float
    finished_at: float
    #: measured on a monotonic clock (the engine's clock may be a fake one)
    duration_s: float = 0.0
    #: ok; failed (with `error`); skipped (with `reason`: this node is not the leader, ...)
    outcome: RunOutcome
    counts: Mapping[str, int] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    reason: str | None = None

    def view(self) -> dict[str, Any]:
        return {"task": self.task, "startedAt": iso(self.started_at),
                "finishedAt": iso(self.finished_at),
                "durationMs": round(self.duration_s * 1000, 3),
                "outcome": self.outcome, "counts": dict(self.counts),
                "details": dict(self.details), "error": self.error, "reason": self.reason}


class RunLog:
    """The latest runs, newest last."""

    def __init__(self, keep: int = MAX_RUNS) -> None:
        self._runs: deque[TaskRun] = deque(maxlen=keep)

    def add(self, run: TaskRun) -> None:
        self._runs.append(run)

    def latest(self, limit: int, task: str | None = None) -> list[TaskRun]:
        """Newest first, at most `limit`, of one task when given."""
        runs = [r for r in reversed(self._runs) if task is None or r.task == task]
        return runs[:limit]

    def last(self, task: str) -> TaskRun | None:
        for run in reversed(self._runs):
            if run.task == task:
                return run
        return None

