"""Retry delays as pure functions of (attempt, policy, random draw).

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the delay is drawn
uniformly from [0, ceiling], which spreads a burst of failures instead of synchronising it.
`jitter=False` gives the ceiling itself, which is what tests and fixed schedules want.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class BackoffKind(StrEnum):
    EXPONENTIAL = "exponential"
    FIXED = "fixed"
    LINEAR = "linear"


class Random(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """How long to wait before retry number `attempt` (1 = the first retry)."""

    kind: BackoffKind = BackoffKind.EXPONENTIAL
    base_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff base and cap must be >= 0")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")


def ceiling(attempt: int, policy: BackoffPolicy) -> float:
    """The largest delay for retry `attempt` (>= 1): the un-jittered schedule, capped."""
    n = max(1, attempt)
    if policy.kind is BackoffKind.FIXED:
        raw = policy.base_s
    elif policy.kind is BackoffKind.LINEAR:
        raw = policy.base_s * n
    else:
        if policy.base_s == 0 or policy.factor == 1:
            return min(policy.base_s, policy.cap_s)
        if policy.base_s >= policy.cap_s:
            return policy.cap_s
        # Past this many doublings the cap wins; checking first keeps huge attempts from
        # overflowing.
        if n - 1 >= math.log(policy.cap_s / policy.base_s, policy.factor) + 1:
            return policy.cap_s
        try:
            raw = policy.base_s * policy.factor ** (n - 1)
        except OverflowError:  # only reachable with a vanishingly small base
            return policy.cap_s
    return min(raw, policy.cap_s)


def delay(attempt: int, policy: BackoffPolicy, rng: Random | None = None) -> float:
    """The delay before retry `attempt`, within [0, cap]."""
    top = ceiling(attempt, policy)
    if not policy.jitter:
        return top
    draw = (rng or random).random()
    return top * draw


def next_retry_at(now: float, attempt: int, policy: BackoffPolicy,
                  rng: Random | None = None) -> float:
    return now + delay(attempt, policy, rng)
