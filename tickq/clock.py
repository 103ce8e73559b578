"""Time for everything in tickq comes from a `Clock`, so tests and property checks can drive it.

Times are UTC epoch seconds as floats. They are heap keys, journal columns and hypothesis inputs
on the hot path, where a float costs a fraction of an aware `datetime`; the HTTP layer renders
ISO-8601.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol, overload


@overload
def iso(ts: float) -> str: ...


@overload
def iso(ts: float | None) -> str | None: ...


def iso(ts: float | None) -> str | None:
    """Epoch seconds as `2025-01-15T10:00:00.000Z`, the one form every time tickq shows takes
    (API answers, job results, audit entries, logs); None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class Clock(Protocol):
    """A source of wall-clock time in UTC epoch seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; for tests and property checks."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now += seconds

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("a clock never goes back")
        self._now = when
