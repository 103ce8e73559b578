"""The settler: the ends of runs, batched into store writes.

Workers must not wait for a commit before taking their next job, so each run's end is queued
here and written many at a time (River's batch completer does the same); `on_settled` then hears
which writes applied, after they are durable, and emits their events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tickq.engine.job import Job
from tickq.engine.outcome import Settle
from tickq.storage.base import Store

log = logging.getLogger(__name__)

#: after a failed write, wait this long before trying the batch again
RETRY_AFTER_S = 0.5


class Settler:
    def __init__(self, store: Store, on_settled: Callable[[list[Settle], list[Job]], None],
                 batch_size: int = 4096) -> None:
        self._store = store
        self._on_settled = on_settled
        self._batch_size = batch_size
        self._pending: list[Settle] = []
        self._wake = asyncio.Event()
        # One flush at a time: a shutdown must wait for the flush in flight, whose jobs the
        # store has already settled; cancelling it would lose their events.
        self._lock = asyncio.Lock()

    def add(self, settle: Settle) -> None:
        self._pending.append(settle)
        if len(self._pending) == 1:
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing job outcomes failed; will retry",
                              extra={"event": "settle_failed"})
                await asyncio.sleep(RETRY_AFTER_S)
                self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far."""
        async with self._lock:
            while self._pending:
                size = self._batch_size
                batch, self._pending = self._pending[:size], self._pending[size:]
                try:
                    done = await self._store.job_settle_many(batch)
                except BaseException:
                    self._pending[:0] = batch  # nothing is lost; the caller decides what next
                    raise
                self._on_settled(batch, done)
