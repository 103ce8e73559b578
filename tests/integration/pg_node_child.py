"""One engine process of the multi-node test (`test_postgres_processes.py`).

    pg_node_child.py URL OUT

runs a tickq engine on the PostgreSQL schema of URL whose `record` processor appends one line
per execution to OUT (`<job id> <stalls>`), then holds the job for `HOLD_S`. Lines are written
with `os.write`, so a SIGKILL loses nothing already recorded. It prints `started <pid>` once it
processes, and on SIGTERM stops gracefully and exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import tickq
from tickq.storage.postgres import PostgresStore

QUEUE = "communication"
RECORD = tickq.JobType(name="record", queue=QUEUE)
#: how long a run lasts after recording itself: long enough that a node always holds jobs
#: mid-run while it works, so a kill leaves some behind
HOLD_S = 0.02


async def main(url: str, out: str) -> int:
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    engine = tickq.Engine(PostgresStore(url), concurrency={QUEUE: 64}, shutdown_grace_s=2.0)

    async def record(job: tickq.Job) -> None:
        os.write(fd, f"{job.id} {job.stalls}\n".encode())
        await asyncio.sleep(HOLD_S)

    engine.register(RECORD, record)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with engine:
            sys.stdout.write(f"started {os.getpid()}\n")
            sys.stdout.flush()
            await stop.wait()
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
