"""Cron schedules held in memory: the whole of them in the memory store, the authoritative copy
in the SQLite store (which writes every change through its journal, one process owning the
file). Schedules are few (an operator's list, not a job backlog), so all of them are kept.

Every change happens synchronously, between two awaits, which is what makes `claim` a real
compare-and-set within the one process that owns the data.
"""

from __future__ import annotations

import dataclasses

from tickq.storage.base import Schedule


class ScheduleTable:
    def __init__(self) -> None:
        self._rows: dict[str, Schedule] = {}

    def load(self, schedules: list[Schedule]) -> None:
        self._rows = {s.name: s for s in schedules}

    def clear(self) -> None:
        self._rows.clear()

    def put(self, schedule: Schedule, *, replace: bool) -> bool:
        if schedule.name in self._rows and not replace:
            return False
        self._rows[schedule.name] = schedule
        return True

    def get(self, name: str) -> Schedule | None:
        return self._rows.get(name)

    def list(self) -> list[Schedule]:
        return [self._rows[name] for name in sorted(self._rows)]

    def delete(self, name: str) -> bool:
        return self._rows.pop(name, None) is not None

    def claim(self, name: str, version: int, *, last_slot: float, pending: tuple[float, ...],
              at: float) -> Schedule | None:
        current = self._rows.get(name)
        if current is None or current.version != version:
            return None
        claimed = dataclasses.replace(current, last_slot=last_slot, pending=tuple(pending),
                                      pending_at=at if pending else None,
                                      version=version + 1)
        self._rows[name] = claimed
        return claimed

    def set_paused(self, name: str, paused: bool, *, at: float) -> Schedule | None:
        current = self._rows.get(name)
        if current is None:
            return None
        last_slot = current.last_slot if paused else max(current.last_slot, at)
        changed = dataclasses.replace(current, paused=paused, last_slot=last_slot,
                                      version=current.version + 1)
        self._rows[name] = changed
        return changed

    def settle(self, name: str, pending: tuple[float, ...], *, job_id: str | None,
               error: str | None) -> Schedule | None:
        current = self._rows.get(name)
        if current is None:
            return None
        done = current.pending == tuple(pending)
        settled = dataclasses.replace(
            current, version=current.version + 1, last_error=error,
            last_job_id=current.last_job_id if job_id is None else job_id,
            pending=() if done else current.pending,
            pending_at=None if done else current.pending_at)
        self._rows[name] = settled
        return settled
