"""The `schedules` table of the SQLite journal (migrations 0004 and 0005): its rows, and reading
them back.

The SQLite store keeps every schedule in memory (`ScheduleTable`) and writes each change as one
upsert or delete through the journal; the table is what a restart reads them back from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from tickq.storage.base import Schedule
from tickq.storage.record_rows import SCHEDULE_COLUMNS

#: one schedule written whole, whatever changed (a schedule is a few hundred bytes)
UPSERT_SQL = (f"INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS}) "
              "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
DELETE_SQL = "DELETE FROM schedules WHERE name=?"


def schedule_row(s: Schedule) -> tuple[Any, ...]:
    return (s.name, s.cron, s.timezone, s.template_json, s.missed, s.tenant_id, s.user_id,
            s.created_at, s.last_slot, orjson.dumps(list(s.pending)), s.pending_at, s.version,
            s.last_job_id, s.last_error, int(s.paused))


def schedule_from_row(r: Sequence[Any]) -> Schedule:
    return Schedule(name=r[0], cron=r[1], timezone=r[2], template_json=bytes(r[3]),
                    missed=r[4], tenant_id=r[5], user_id=r[6], created_at=r[7], last_slot=r[8],
                    pending=tuple(float(t) for t in orjson.loads(r[9])), pending_at=r[10],
                    version=r[11], last_job_id=r[12], last_error=r[13], paused=bool(r[14]))


def load_schedules(conn: sqlite3.Connection) -> list[Schedule]:
    return [schedule_from_row(r)
            for r in conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name")]
