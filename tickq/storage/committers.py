"""Where the journal's batches are written: `ProcessCommitter` (the default) hands each batch to
a writer process (`journal_process.py`), `InlineCommitter` writes on the loop's thread and runs
only the COMMIT on a worker thread. Both apply batches in submission order, one transaction each,
and run housekeeping (WAL checkpoint, incremental vacuum) between two batches, on the connection
that writes, so it never contends with a commit.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import struct
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from tickq.errors import StoreClosedError, TickqError
from tickq.storage.journal_process import housekeep


class JournalBrokenError(TickqError):
    code = "journal_unavailable"


Statement = tuple[str, Sequence[Any], bool]  # (sql, rows or params, executemany?)

_FRAME = struct.Struct(">I")
_WRITER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "journal_process.py")


class Committer(Protocol):
    #: how many batches may be submitted before the first of them is committed
    max_inflight: int

    async def start(self) -> None: ...

    def submit(self, fsync: bool, statements: list[Statement]) -> asyncio.Future[None]:
        """Apply the statements in one transaction. Batches commit in submission order; the
        future fails if the batch was rolled back."""
        ...

    def housekeep(self, vacuum_pages: int) -> asyncio.Future[dict[str, int]]:
        """Run `journal_process.housekeep` after the batches submitted so far and before any
        submitted later; the future has its report."""
        ...

    async def close(self) -> None: ...


class InlineCommitter:
    """Rows written on the loop's thread; the COMMIT (and its fsync) on a worker thread."""

    max_inflight = 1

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._sync_full: bool | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tickq-commit")
        #: a commit and housekeeping never use the connection at the same time
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        # check_same_thread=False: the COMMIT runs on the commit thread, never concurrently
        # with any other use of the connection.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        self._conn = conn

    def submit(self, fsync: bool, statements: list[Statement]) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._commit(fsync, statements))

    def housekeep(self, vacuum_pages: int) -> asyncio.Future[dict[str, int]]:
        return asyncio.ensure_future(self._housekeep(vacuum_pages))

    async def _housekeep(self, vacuum_pages: int) -> dict[str, int]:
        async with self._busy:
            conn = self._conn
            if conn is None:
                raise StoreClosedError("the journal is closed")
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, housekeep, conn, vacuum_pages)

    async def _commit(self, fsync: bool, statements: list[Statement]) -> None:
        async with self._busy:
            await self._commit_now(fsync, statements)

    async def _commit_now(self, fsync: bool, statements: list[Statement]) -> None:
        conn = self._conn
        if conn is None:
            raise StoreClosedError("the journal is closed")
        if self._sync_full is not fsync:
            conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._sync_full = fsync
        conn.execute("BEGIN")
        try:
            for sql, rows, many in statements:
                if many:
                    conn.executemany(sql, rows)
                else:
                    conn.execute(sql, rows)
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.execute,
                                                             "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ProcessCommitter:
    """Batches applied by a writer process on another core; see `journal_process.py`.

    Two batches may be in flight: while the writer commits one, the next is already on its way,
    so neither process waits for the other."""

    max_inflight = 2

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._proc: asyncio.subprocess.Process | None = None
        #: futures of the batches and housekeeping requests sent, answered in order
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", _WRITER_SCRIPT, self.path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        self._reader = asyncio.create_task(self._read_replies(), name="tickq-journal-replies")

    def submit(self, fsync: bool, statements: list[Statement]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        proc = self._proc
        if proc is None or proc.stdin is None or self._reader is None or self._reader.done():
            fut.set_exception(JournalBrokenError("the journal writer process is not running"))
            return fut
        body = pickle.dumps((fsync, statements), protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(_FRAME.pack(len(body)) + body)
        self._waiting.append(fut)
        return fut

    def housekeep(self, vacuum_pages: int) -> asyncio.Future[dict[str, int]]:
        fut: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        proc = self._proc
        if proc is None or proc.stdin is None or self._reader is None or self._reader.done():
            fut.set_exception(JournalBrokenError("the journal writer process is not running"))
            return fut
        body = pickle.dumps(("housekeep", int(vacuum_pages)), protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(_FRAME.pack(len(body)) + body)
        self._waiting.append(fut)
        return fut

    async def _read_replies(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            while True:
                head = await proc.stdout.readexactly(_FRAME.size)
                reply = pickle.loads(await proc.stdout.readexactly(_FRAME.unpack(head)[0]))
                fut = self._waiting.popleft()
                if fut.done():
                    continue
                if reply is None or isinstance(reply, dict):
                    fut.set_result(reply)  # a commit, or a housekeeping report
                elif isinstance(reply, tuple):  # housekeeping failed; the journal is fine
                    fut.set_exception(TickqError(f"{reply[0]}: {reply[1]}"))
                else:
                    fut.set_exception(JournalBrokenError(f"the commit was rolled back: {reply}"))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            error = JournalBrokenError(f"the journal writer process exited ({exc})")
            while self._waiting:
                fut = self._waiting.popleft()
                if not fut.done():
                    fut.set_exception(error)

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None


