"""CPU time per job of the batch-enqueue path, in one process, without HTTP.

What `POST /api/v1/queue/jobs/batch` does with a body once aiohttp has read it: decode the JSON,
check its structure, validate the request model, check and build every job (`prepare`, the
route's own function), enqueue them on the SQLite journal (the writer is its own process, as in
the service) and encode an answer of the same shape. The figure is this process's CPU time per
job, which moves less with the machine's other load than a throughput over loopback does, so
two versions of the code can be compared on a busy machine: run each a few times, take the low.

    .venv/bin/python benchmarks/enqueue_path.py                  # 600 batches of 100
    .venv/bin/python benchmarks/enqueue_path.py --stage prepare  # stop after building the jobs
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from typing import Any

import orjson

from tickq.cli import GC_THRESHOLDS
from tickq.engine.engine import Engine
from tickq.engine.job import Job
from tickq.http.auth import Principal
from tickq.http.body import check_structure, parse
from tickq.http.jobs import prepare
from tickq.http.schemas import NewBatch
from tickq.http.views import status_of
from tickq.storage import open_store

STAGES = ("parse", "prepare", "all")


def _push(n: int) -> dict[str, Any]:
    return {"type": "send-push", "data": {"userId": f"u{n % 1000}", "title": f"Doors open {n}",
                                          "body": "Your event starts in one hour."}}


async def run(batches: int, size: int, stage: str) -> float:
    """CPU microseconds per job for `batches` bodies of `size` jobs, up to `stage`."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(open_store(f"sqlite:///{tmp}/journal.db"))
        await engine.start()
        try:
            await engine.pause("communication")  # enqueue only: nothing is dispatched
            caller = Principal(user_id="bench", tenant_id="bench", role="admin")
            bodies = [orjson.dumps({"queue": "communication",
                                    "jobs": [_push(b * size + i) for i in range(size)]})
                      for b in range(batches)]
            gc.collect()
            gc.freeze()
            started = time.process_time()
            for raw in bodies:
                value = orjson.loads(raw)
                check_structure(value, raw)
                body = parse(NewBatch, value)
                if stage == "parse":
                    continue
                prepared = prepare(engine, caller, body.queue, body.jobs, batch=True)
                if stage == "prepare":
                    continue
                built = [p for p in prepared if isinstance(p, Job)]
                if len(built) != len(prepared):  # a refused job would make the figure lie
                    raise SystemExit("the benchmark's jobs were refused: "
                                     f"{next(p for p in prepared if not isinstance(p, Job))}")
                results = await engine.enqueue_jobs(built, copy=False)
                now = engine.clock.now()
                orjson.dumps({"queue": body.queue, "jobs": [
                    {"index": i, "jobId": job.id, "type": job.type,
                     "status": status_of(job, now), "created": created}
                    for i, (job, created) in enumerate(results)]})
            return (time.process_time() - started) / (batches * size) * 1e6
        finally:
            await engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--size", type=int, default=100, help="jobs per batch")
    parser.add_argument("--stage", choices=STAGES, default="all")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the lowest is the figure")
    args = parser.parse_args()
    gc.set_threshold(*GC_THRESHOLDS)  # as `tickq serve` sets them
    figures = [asyncio.run(run(args.batches, args.size, args.stage))
               for _ in range(args.repeat)]
    print(f"batch path up to {args.stage!r}: {min(figures):.2f} us CPU/job "
          f"(runs: {', '.join(f'{f:.2f}' for f in figures)}; "
          f"{args.batches} batches of {args.size})")


if __name__ == "__main__":
    main()
