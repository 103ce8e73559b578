"""Who runs the periodic work when several nodes share one database.

Maintenance, the monitor and cron schedules must run on one node only (seed-003 issue #9: every
replica ran them). The scheduler asks a `LeaderCheck` before each run and skips the run when the
answer is no. A SQLite journal or a memory store belongs to one process, so that process is
always the leader; with PostgreSQL the check is the store's advisory lock (`try_lead`), held by
the node's own session, so it passes to another node the moment the leader's session ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

#: answers whether this node leads now; plain or async
LeaderCheck = Callable[[], bool | Awaitable[bool]]


def always_leader() -> bool:
    """The check of a store one process owns (SQLite, memory)."""
    return True


async def _always() -> bool:
    return True


def store_leader_check(store: Any) -> Callable[[], Awaitable[bool]]:
    """The check for a node on `store`: its `try_lead` when it has one (several processes may
    share a PostgreSQL database), else always yes (the store belongs to this process)."""
    try_lead = getattr(store, "try_lead", None)
    if callable(try_lead):
        check: Callable[[], Awaitable[bool]] = try_lead
        return check
    return _always


async def ask(check: LeaderCheck) -> bool:
    answer = check()
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


__all__ = ["LeaderCheck", "always_leader", "ask", "store_leader_check"]
