"""Who runs the periodic work when several nodes share one database.

Maintenance, the monitor and cron schedules must run on one node only (seed-003 issue #9: every
replica ran them). The scheduler asks a `LeaderCheck` before each run and skips the run when the
answer is no. A SQLite journal or a memory store belongs to one process, so that process is
always the leader; with PostgreSQL the check is an advisory lock or a lease row, supplied by the
PostgreSQL store when it exists.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

#: answers whether this node leads now; plain or async
LeaderCheck = Callable[[], bool | Awaitable[bool]]


def always_leader() -> bool:
    """The check of a store one process owns (SQLite, memory)."""
    return True


async def ask(check: LeaderCheck) -> bool:
    answer = check()
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


__all__ = ["LeaderCheck", "always_leader", "ask"]
