"""The journal's writer process: applies batches of SQL to the SQLite file, one transaction each.

Run as a script (`python -I journal_process.py PATH`): it needs nothing but the standard
library, so it starts in a few milliseconds (the engine imports only `housekeep` from it, which
the inline committer runs too). The parent sends frames on stdin and reads
one reply frame per batch on stdout, in order. A frame is a 4-byte big-endian length followed by a
pickle. A request is `(fsync, statements)` with statements `[(sql, rows, many), ...]`; a reply is
`None` (committed) or the error text (rolled back). A request `("housekeep", pages)` runs
`housekeep` between two batches instead (the one connection that writes the file does it, so it
never waits on a writer) and is answered with its report, a dict, or with `("housekeeping
failed", error text)`. End of input means the parent is gone or done: the process finishes the
batch it holds and exits.

Why a process: the sqlite3 module holds the GIL while it binds each row, so on the engine's
process every journal row costs the event loop several microseconds. Here that work runs on the
other core.
"""

import pickle
import sqlite3
import struct
import sys
from typing import BinaryIO

_LEN = struct.Struct(">I")


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def housekeep(conn: sqlite3.Connection, vacuum_pages: int) -> dict[str, int]:
    """Give free pages back to the file system (`incremental_vacuum`, up to `vacuum_pages`;
    only a file created with auto_vacuum=INCREMENTAL can) and then copy the WAL into the
    database and truncate it (`wal_checkpoint(TRUNCATE)`), so neither file keeps growing.
    Runs outside any transaction, which both need."""
    auto_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    free_before = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if auto_vacuum == 2 and vacuum_pages > 0 and free_before:
        # executescript steps the pragma to the end; execute() would free a single page
        conn.executescript(f"PRAGMA incremental_vacuum({int(vacuum_pages)});")
    free_after = conn.execute("PRAGMA freelist_count").fetchone()[0]
    # A TRUNCATE checkpoint reports 0 frames once it has emptied the log; a PASSIVE one first
    # says how many frames there were and copies them, then TRUNCATE resets the file.
    _, wal_frames, checkpointed = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    return {"auto_vacuum": auto_vacuum, "free_pages_before": free_before,
            "free_pages_after": free_after, "pages_freed": free_before - free_after,
            "checkpoint_busy": busy, "wal_frames": wal_frames,
            "checkpointed_frames": checkpointed}


def main(path: str) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA cache_size=-65536")
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sync_full = None
    while True:
        head = _read_exact(stdin, _LEN.size)
        if head is None:
            break
        body = _read_exact(stdin, _LEN.unpack(head)[0])
        if body is None:
            break
        fsync, statements = pickle.loads(body)
        if fsync == "housekeep":
            try:
                done: object = housekeep(conn, statements)
            except Exception as exc:
                done = ("housekeeping failed", f"{type(exc).__name__}: {exc}")
            out = pickle.dumps(done)
            stdout.write(_LEN.pack(len(out)) + out)
            stdout.flush()
            continue
        reply = None
        try:
            if sync_full is not fsync:
                conn.execute("PRAGMA synchronous=FULL" if fsync else "PRAGMA synchronous=NORMAL")
                sync_full = fsync
            conn.execute("BEGIN")
            for sql, rows, many in statements:
                if many:
                    conn.executemany(sql, rows)
                else:
                    conn.execute(sql, rows)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            reply = f"{type(exc).__name__}: {exc}"
        out = pickle.dumps(reply)
        stdout.write(_LEN.pack(len(out)) + out)
        stdout.flush()
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
