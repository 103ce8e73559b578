"""`cleanup-old-data`: remove data older than `data.olderThan`, one kind per job.

`olderThan` is an ISO 8601 date or date-time, or an age: a whole number and a unit, `s`, `m`,
`h`, `d` or `w` (`30d`, `12h`). It must lie in the past. What each `dataType` removes:

* `jobs`: finished jobs past their retention (the rules the engine applies on its own, see
  `tickq.engine.retention`) that also finished before `olderThan`, so an operator can run
  retention now without ever cutting it shorter. Only completed, failed and cancelled jobs are
  candidates: a waiting or running job is never removed, whatever its age.
* `old_logs`: what tickq keeps that reads as a log: recorded analytics events that occurred
  before `olderThan`, and generated reports created before it.
* `idempotency_keys`: tickq keeps no separate key table. A completed job holds its key until
  `key_until`, and once that has passed the hold no longer matches an enqueue; it goes with the
  job when retention removes it. Nothing is left to remove, and the result says so (0).
* `temp_files`: leftover `*.tmp` files directly in the data directory (`TICKQ_DATA_DIR`) last
  changed before `olderThan`. tickq writes none itself, so this is normally 0.
* `sessions`: tickq keeps no sessions (API callers present stateless JWTs): 0, and why.

The result names the cutoff and, per kind of thing, how many were removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.engine.jobtypes import CleanupData
from tickq.errors import PermanentError
from tickq.processors.background import MAX_DATE_CHARS, parse_instant
from tickq.processors.base import job_data

if TYPE_CHECKING:
    from tickq.engine.engine import Engine

_AGE = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
#: what a leftover temporary file is named like
TEMP_SUFFIX = ".tmp"


def parse_cutoff(value: Any, now: float) -> float:
    """`olderThan` as the epoch time before which data is old."""
    if isinstance(value, str) and len(value) <= MAX_DATE_CHARS:
        match = _AGE.match(value)
        if match is not None:
            age = int(match.group(1)) * _UNIT_S[match.group(2)]
            if age <= 0:
                raise PermanentError("data.olderThan must be an age above zero",
                                     code="invalid_date")
            return now - age
    try:
        cutoff = parse_instant(value, "data.olderThan")
    except PermanentError:
        raise PermanentError(f"data.olderThan must be an ISO 8601 date or date-time or an age "
                             f"such as 30d or 12h, got {value!r}"[:300],
                             code="invalid_date") from None
    if cutoff > now:
        raise PermanentError(f"data.olderThan ({value!r}) is in the future; nothing "
                             "may be removed by a cutoff that has not passed",
                             code="invalid_date")
    return cutoff


def remove_temp_files(folder: Path, before: float) -> int:
    """Delete the regular files named `*.tmp` directly in `folder` last modified before
    `before` (never following links, never descending); returns how many."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.endswith(TEMP_SUFFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= before:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # someone else removed it meanwhile
        removed += 1
    return removed


class Cleaner:
    """The `cleanup-old-data` processor."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self.engine = engine
        self.data_dir = data_dir

    async def clean(self, job: Job) -> dict[str, Any]:
        data = job_data(CleanupData, job)
        data_type = data.dataType
        now = self.engine.clock.now()
        cutoff = parse_cutoff(data.olderThan, now)
        store = self.engine.store
        note: str | None = None
        if data_type == "jobs":
            rules = [dataclasses.replace(r, before=min(r.before, cutoff))
                     for r in self.engine.retention_rules(now)]
            removed = {"jobs": await store.job_prune(rules)}
        elif data_type == "old_logs":
            removed = {"analyticsEvents": await store.events_prune(cutoff),
                       "reports": await store.report_prune(cutoff)}
        elif data_type == "temp_files":
            removed = {"tempFiles": await asyncio.to_thread(remove_temp_files, self.data_dir,
                                                            cutoff)}
            note = f"*{TEMP_SUFFIX} files directly in {self.data_dir}"
        elif data_type == "idempotency_keys":
            removed = {"idempotencyKeys": 0}
            note = ("a completed job's key hold stops matching at its key_until and leaves with "
                    "the job at retention; there is no separate key table to clean")
        else:
            removed = {"sessions": 0}
            note = "tickq keeps no sessions: API callers authenticate with stateless JWTs"
        result: dict[str, Any] = {"dataType": data_type, "olderThan": iso(cutoff),
                                  "removed": removed, "total": sum(removed.values())}
        if note is not None:
            result["note"] = note
        return result
