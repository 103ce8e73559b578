"""Embedding tickq in an asyncio application.

    python examples/embed.py [sqlite:///path/to/jobs.db]

Without an argument the journal goes to a temporary file. The engine runs inside this process:
no server, no broker. Jobs in the `communication` queue survive a crash of the process.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import tickq


async def main(url: str) -> None:
    engine = tickq.Engine(tickq.open_store(url))

    # Register before starting: jobs left in the journal by an earlier run are dispatched as
    # soon as the engine starts, and must find their processor.
    @engine.processor("send-welcome", queue="communication")
    async def send_welcome(job: tickq.Job) -> dict[str, str]:
        await asyncio.sleep(0.01)  # the email provider's round trip
        return {"sent_to": job.data["to"], "job_id": job.id}

    async with engine:  # starts on entry; on exit, lets running jobs finish and closes the store
        job = await engine.enqueue("send-welcome", {"to": "ada@example.com"})
        print("single:", await engine.result(job.id, timeout=5))

        batch = await engine.enqueue_many([
            tickq.JobSpec(type="send-welcome", data={"to": to}, priority=7)
            for to in ("grace@example.com", "alan@example.com", "edsger@example.com")
        ])
        results = await asyncio.gather(*(engine.result(e.job.id, timeout=5) for e in batch))
        for result in results:
            print("batch:", result)
        print("counts:", await engine.counts("communication"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(f"sqlite:///{Path(tmp) / 'jobs.db'}"))
