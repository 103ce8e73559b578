"""What the dispatcher asks before a job starts: may it run now, and if not, where does it wait.

The engine builds the gate from its rate limiter and circuit breakers; the store calls it while
claiming, so a refused job is parked without being claimed (no attempt spent, nothing written)
and the jobs behind it, of other providers, are still claimed in the same pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from tickq.engine.job import Job


class Deferral(NamedTuple):
    """Park the job in lot `key` until the engine unparks that lot (a token is due, a slot
    freed, a breaker half-opened, a provider resumed). `reason` is for events and metrics."""

    key: str
    reason: str


#: None to let the job start, or where to park it
Gate = Callable[[Job, float], Deferral | None]
