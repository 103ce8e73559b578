"""The processes of the money crash test (`test_money_crash.py`).

    money_crash_child.py stripe                                   serve localstripe
    money_crash_child.py engine JOURNAL STRIPE_URL --enqueue N --prefix P
    money_crash_child.py engine JOURNAL STRIPE_URL --drain

`stripe` runs localstripe on 127.0.0.1 on a free port, printing `listening <port>`, until it is
terminated. Its store stays in memory (localstripe would otherwise pickle itself to the shared
/tmp/localstripe.pickle after every write).

`engine` runs a tickq engine on the SQLite journal with the Stripe integration pointed at
localstripe. With --enqueue it enqueues N payment jobs in small batches while they run and then
keeps running until it is killed; with --drain it runs what earlier, killed engines left and
exits. It prints the protocol the test reads:

    started <pid> stalled=<jobs found mid-run at start-up>
    ack <job id> <idempotency key>        written only after enqueue_many returned
    drained completed=<n>
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import warnings

# The crash test's worker, next to this script (and so on sys.path when it runs): its protocol
# lines and its wait for the money queue to empty are the ones used here.
from crash_worker import drain, emit

import tickq
from tickq.processors import build_integrations
from tickq.settings import load_settings


async def serve_stripe() -> None:
    from aiohttp import web

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import localstripe.resources
        import localstripe.server

    localstripe.resources.store.dump_to_disk = lambda: None
    runner = web.AppRunner(localstripe.server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    emit(f"listening {runner.addresses[0][1]}")
    await asyncio.Event().wait()


async def run_engine(args: argparse.Namespace) -> int:
    settings = load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://",
                              "STRIPE_SECRET_KEY": "sk_test_tickq_crash",
                              "STRIPE_API_BASE": args.stripe_url, "STRIPE_TIMEOUT_S": "5"})
    engine = tickq.Engine(tickq.open_store(f"sqlite:///{args.journal}"),
                          concurrency={"money": 8}, shutdown_grace_s=1.0)
    integrations = build_integrations(settings, engine,
                                      factories=["tickq.processors.payments:integration"])
    integrations.install()
    await integrations.start()
    try:
        async with engine:
            emit(f"started {os.getpid()} stalled={engine.stats['stalled']}")
            if args.enqueue:
                await enqueue(engine, args.enqueue, args.prefix)
                await asyncio.Event().wait()  # run until killed, as the test always does
            drained = await drain(engine, args.drain_timeout)
            emit(f"drained completed={engine.stats['completed']}" if drained else "not drained")
    finally:
        await integrations.close()
    return 0 if drained else 1


async def enqueue(engine: tickq.Engine, n: int, prefix: str) -> None:
    batch = 4
    for start in range(0, n, batch):
        specs = [tickq.JobSpec(type="payment-process", tenant_id="t1", data={
            "userId": f"{prefix}-u{i}", "venueId": "v1", "eventId": "e1", "amount": 1000 + i,
            "currency": "USD", "paymentMethod": "pm_card_visa"})
            for i in range(start, min(n, start + batch))]
        done = await engine.enqueue_many(specs)
        # Only now, with enqueue_many returned, are these jobs acknowledged.
        sys.stdout.write("".join(f"ack {e.job.id} {e.job.idempotency_key}\n" for e in done))
        sys.stdout.flush()
        await asyncio.sleep(0.08)  # enqueues keep coming while earlier payments run


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    sub.add_parser("stripe")
    eng = sub.add_parser("engine")
    eng.add_argument("journal")
    eng.add_argument("stripe_url")
    mode = eng.add_mutually_exclusive_group(required=True)
    mode.add_argument("--enqueue", type=int, metavar="N")
    mode.add_argument("--drain", action="store_true")
    eng.add_argument("--prefix", default="order")
    eng.add_argument("--drain-timeout", type=float, default=20.0)
    args = parser.parse_args()
    if args.role == "stripe":
        asyncio.run(serve_stripe())
        return 0
    return asyncio.run(run_engine(args))


if __name__ == "__main__":
    raise SystemExit(main())
