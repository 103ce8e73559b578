"""Queues and their tiers: how durable a queue's jobs are, how they retry, expire and are kept."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tickq.engine.backoff import BackoffKind, BackoffPolicy

DAY = 86_400.0
HOUR = 3_600.0


class Durability(StrEnum):
    #: acknowledged only after the journal commit reached fsync (money)
    FSYNC = "fsync"
    #: survives a process crash, not necessarily a power loss (communication)
    CRASH_SAFE = "crash_safe"
    #: memory only, lost on restart by design (background)
    MEMORY = "memory"


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    name: str
    tier: int
    durability: Durability
    max_attempts: int
    backoff: BackoffPolicy
    #: a job still waiting this long after it became due (its run_at) fails as expired; counted
    #: from run_at so that a job scheduled days ahead is not expired before its time
    expiry_s: float
    #: completed jobs are kept this long; 0 removes them on completion
    completed_retention_s: float
    #: failed (dead-letter) and cancelled jobs are kept this long; 0 removes them at once
    failed_retention_s: float
    #: jobs of this queue running at once in one process
    concurrency: int = 10
    #: a running job's claim must be renewed within this time or it counts as stalled
    lease_s: float = 30.0
    #: default per-job timeout when the job type names none
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"queue name {self.name!r} must be letters, digits, - or _")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.lease_s <= 0 or self.timeout_s <= 0:
            raise ValueError("lease_s and timeout_s must be > 0")


MONEY = QueueConfig(
    name="money", tier=1, durability=Durability.FSYNC, max_attempts=10,
    backoff=BackoffPolicy(kind=BackoffKind.EXPONENTIAL, base_s=2.0, factor=2.0, cap_s=HOUR),
    expiry_s=24 * HOUR, completed_retention_s=90 * DAY, failed_retention_s=90 * DAY,
    concurrency=10, timeout_s=120.0,
)
COMMUNICATION = QueueConfig(
    name="communication", tier=2, durability=Durability.CRASH_SAFE, max_attempts=5,
    backoff=BackoffPolicy(kind=BackoffKind.FIXED, base_s=5.0, cap_s=5.0, jitter=False),
    expiry_s=12 * HOUR, completed_retention_s=7 * DAY, failed_retention_s=30 * DAY,
    concurrency=20, timeout_s=60.0,
)
BACKGROUND = QueueConfig(
    name="background", tier=3, durability=Durability.MEMORY, max_attempts=2,
    backoff=BackoffPolicy(kind=BackoffKind.FIXED, base_s=10.0, cap_s=10.0, jitter=False),
    expiry_s=6 * HOUR, completed_retention_s=0.0, failed_retention_s=DAY,
    concurrency=5, timeout_s=600.0,
)

DEFAULT_QUEUES: tuple[QueueConfig, ...] = (MONEY, COMMUNICATION, BACKGROUND)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Per-state counts as the API shows them. `delayed` is part of `waiting`."""

    waiting: int = 0
    delayed: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    paused: bool = False
