"""Processors against their providers: payment jobs per second through Stripe (localstripe)
and ticket NFT mints per second on Solana (LiteSVM).

The provider runs in its own process, so its work does not share the engine's event loop (and
core) and the figure is the engine's and processor's, bounded by what the provider answers.
Jobs go through the whole engine on the embedded SQLite journal (money tier: fsync before every
acknowledgement and completion), enqueued up front, timed from the first processor start to the
last completion.

Sections, one function each, each a few seconds:

* `stripe_section`: the PaymentIntent requests alone, without the engine (the provider's
  ceiling); payment jobs with the stripe rate-limit bucket unlimited (what the engine, the
  processor and localstripe sustain, with each Stripe call's p50/p99); then with the spec's
  limit (25 requests/s, burst 50), where the rate once the bucket has run dry must equal the
  limit.

* `solana_section`: ticket NFT mints per second on LiteSVM (in process; see
  `processors_nft.py`, which also runs alone), with both token programs and no provider limit,
  then at the solana limit (10/s), where the start rate must equal the limit.

    python benchmarks/processors.py                       # 400 jobs unlimited, 6 s limited
    python benchmarks/processors.py --jobs 60 --limited-seconds 1     # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tickq
from tickq.engine.limiter import DEFAULT_LIMITS, Decision, RateLimiter
from tickq.processors.payments import StripeIntegration
from tickq.settings import Settings, load_settings

#: the spec's Stripe limit (seed-003 "RATE LIMIT CONFIGURATION")
SPEC_STRIPE = DEFAULT_LIMITS["stripe"]
#: a steady rate further than this from the limit is reported as off target
TARGET_PCT = 2.0


# --- shared: a provider in its own process, and timing jobs through an engine -------------------


@contextlib.contextmanager
def provider_process(role: str) -> Iterator[str]:
    """This script started again as `--serve <role>`; yields the base URL it listens on."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve", role],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError(f"{role} did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(10)


async def serve_localstripe() -> None:
    from aiohttp import web

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import localstripe.resources
        import localstripe.server

    # localstripe pickles its whole store to /tmp after every write otherwise: a cost that grows
    # with every payment, and none of the API's.
    localstripe.resources.store.dump_to_disk = lambda: None
    runner = web.AppRunner(localstripe.server.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"listening {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


async def reset_localstripe(base: str) -> None:
    """Empty localstripe's store. It slows down as the store grows (rendering a charge scans
    every stored object for its refunds, and each payment renders its charge several times), so
    every scenario starts from an empty one and the figures stay comparable."""
    from aiohttp import ClientSession

    async with ClientSession() as session, session.delete(f"{base}/_config/data") as resp:
        resp.raise_for_status()


@dataclass
class Timed:
    """Processor start times and call durations (perf_counter) of one run."""

    starts: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)

    def wrap(self, fn: Callable[[tickq.Job], Awaitable[Any]]
             ) -> Callable[[tickq.Job], Awaitable[Any]]:
        async def timed(job: tickq.Job) -> Any:
            started = time.perf_counter()
            self.starts.append(started)
            result = await fn(job)
            self.calls.append(time.perf_counter() - started)
            return result
        return timed


async def run_jobs(engine: tickq.Engine, specs: list[tickq.JobSpec], timed: Timed,
                   timeout_s: float) -> float:
    """Enqueue `specs`, wait until every job has completed; returns the seconds from the first
    processor start to the last completion. A job that fails stops the benchmark."""
    done = asyncio.Event()
    failed: list[str] = []
    remaining = len(specs)

    def on_event(event: tickq.Event) -> None:
        nonlocal remaining
        if event.kind is tickq.EventKind.COMPLETED:
            remaining -= 1
        elif event.kind is tickq.EventKind.FAILED:
            failed.append(f"{event.job.id}: {event.reason} {event.job.errors[-1:]}")
        if remaining == 0 or failed:
            done.set()

    engine.events.subscribe(on_event)
    for start in range(0, len(specs), 500):
        await engine.enqueue_many(specs[start:start + 500])
    await asyncio.wait_for(done.wait(), timeout_s)
    if failed:
        raise RuntimeError(f"{len(failed)} jobs failed, first: {failed[0]}")
    return time.perf_counter() - min(timed.starts)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def paced_rate(grants: list[float], tokens: list[float]) -> tuple[float, int]:
    """Grants per second once the bucket ran dry (from the first grant that left less than one
    token to the last), and how many grants that counts. While calls take time, the burst is
    spent over a while and refills meanwhile, so counting from the burst-th grant would
    overstate the rate."""
    dry = next((i for i, left in enumerate(tokens) if left < 1), None)
    if dry is None or len(grants) - dry < 2:
        return float("nan"), 0
    return (len(grants) - dry - 1) / (grants[-1] - grants[dry]), len(grants) - dry


# --- Stripe: payment jobs per second -------------------------------------------------------------


@contextlib.asynccontextmanager
async def stripe_engine(base: str, folder: Path, limiter: RateLimiter,
                        concurrency: int, timed: Timed) -> AsyncIterator[tickq.Engine]:
    """An engine on a fresh SQLite journal whose `payment-process` jobs pay at `base`."""
    settings = stripe_settings(base)
    engine = tickq.Engine(tickq.open_store(f"sqlite:///{folder / 'journal.db'}"),
                          limiter=limiter, concurrency={"money": concurrency},
                          shutdown_grace_s=2.0)
    stripe = StripeIntegration(settings, engine.clock)
    engine.register("payment-process", timed.wrap(stripe.process_payment))
    await stripe.start()
    try:
        async with engine:
            yield engine
    finally:
        await stripe.close()


def stripe_settings(base: str) -> Settings:
    return load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://",
                          "STRIPE_SECRET_KEY": "sk_test_tickq_bench", "STRIPE_API_BASE": base,
                          "STRIPE_TIMEOUT_S": "10"})


def payments(n: int, run: str) -> list[tickq.JobSpec]:
    return [tickq.JobSpec(type="payment-process", tenant_id="bench", data={
        "userId": f"{run}-u{i}", "venueId": "v1", "eventId": "e1", "amount": 1000 + i,
        "currency": "USD", "paymentMethod": "pm_card_visa"}) for i in range(n)]


async def stripe_alone(base: str, calls: int, concurrency: int) -> None:
    """The same PaymentIntent requests without the engine: the ceiling the provider (and the
    SDK) set, to read the engine's figure against."""
    await reset_localstripe(base)
    settings = stripe_settings(base)
    stripe = StripeIntegration(settings, tickq.SystemClock())
    await stripe.start()
    gate = asyncio.Semaphore(concurrency)

    async def pay(i: int) -> None:
        async with gate:
            await stripe.client.v1.payment_intents.create_async({
                "amount": 1000 + i, "currency": "usd", "payment_method": "pm_card_visa",
                "confirm": True})

    try:
        started = time.perf_counter()
        await asyncio.gather(*(pay(i) for i in range(calls)))
        elapsed = time.perf_counter() - started
    finally:
        await stripe.close()
    print(f"  PaymentIntent requests alone    {calls / elapsed:>8.1f} req/s   ({calls} requests, "
          f"{concurrency} at a time, no engine)")


async def stripe_unlimited(base: str, jobs: int, concurrency: int) -> None:
    await reset_localstripe(base)
    unlimited = {k: v for k, v in DEFAULT_LIMITS.items() if k != "stripe"}
    timed = Timed()
    with tempfile.TemporaryDirectory() as tmp:
        async with stripe_engine(base, Path(tmp), RateLimiter(unlimited), concurrency,
                                 timed) as engine:
            elapsed = await run_jobs(engine, payments(jobs, "free"), timed, 120)
    ms = [c * 1000 for c in timed.calls]
    print(f"  stripe payments, limits off     {jobs / elapsed:>8.1f} jobs/s  ({jobs} jobs in "
          f"{elapsed:.2f} s, money concurrency {concurrency}; Stripe call p50 "
          f"{percentile(ms, 50):.1f} ms, p99 {percentile(ms, 99):.1f} ms)")


async def stripe_limited(base: str, seconds: float, concurrency: int) -> None:
    await reset_localstripe(base)
    cfg = SPEC_STRIPE
    jobs = cfg.burst + round(cfg.rate_per_s * seconds)
    timed = Timed()
    grants: list[float] = []
    left: list[float] = []

    def granted(bucket: str, decision: Decision) -> None:
        if bucket == "stripe" and decision.granted:
            grants.append(time.perf_counter())
            left.append(limiter.status(bucket, time.time())["tokens"])

    limiter = RateLimiter(dict(DEFAULT_LIMITS), on_decision=granted)
    with tempfile.TemporaryDirectory() as tmp:
        async with stripe_engine(base, Path(tmp), limiter, concurrency, timed) as engine:
            elapsed = await run_jobs(engine, payments(jobs, "limited"), timed,
                                     seconds * 3 + 30)
    rate, paced = paced_rate(grants, left)
    dev = (rate / cfg.rate_per_s - 1) * 100
    verdict = "ok" if abs(dev) <= TARGET_PCT else "OFF TARGET"
    print(f"  stripe payments, limited        {jobs / elapsed:>8.1f} jobs/s overall, paced "
          f"{rate:.2f}/s against the limit {cfg.rate_per_s:g}/s (burst {cfg.burst}): "
          f"{dev:+.2f}%  {verdict}  ({jobs} jobs in {elapsed:.2f} s, {paced} paced)")


def stripe_section(args: argparse.Namespace) -> None:
    print("Stripe (localstripe in its own process), payment-process on the SQLite journal:")
    with provider_process("localstripe") as base:
        asyncio.run(stripe_alone(base, args.jobs, args.concurrency))
        asyncio.run(stripe_unlimited(base, args.jobs, args.concurrency))
        asyncio.run(stripe_limited(base, args.limited_seconds, args.concurrency))


def solana_section(args: argparse.Namespace) -> None:
    import processors_nft  # beside this file: the script's folder is on sys.path

    print("Solana (LiteSVM in process), nft-mint on the memory store:")
    limited = max(2, round(args.limited_seconds * 10))
    asyncio.run(processors_nft.main_async(argparse.Namespace(
        mints=args.jobs, limited_mints=limited, rate=10.0, timeout=120.0)))


#: every section, in the order they run
SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {"stripe": stripe_section,
                                                             "solana": solana_section}
#: providers a section can start with `provider_process`
SERVERS: dict[str, Callable[[], Awaitable[None]]] = {"localstripe": serve_localstripe}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=400,
                        help="payment jobs in the unlimited run")
    parser.add_argument("--limited-seconds", type=float, default=6.0,
                        help="seconds of jobs at the limit, after the burst")
    parser.add_argument("--concurrency", type=int, default=16, help="money queue concurrency")
    parser.add_argument("--only", choices=sorted(SECTIONS), help="run one section")
    parser.add_argument("--serve", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(SERVERS[args.serve]())
        return 0
    logging.getLogger("tickq").setLevel(logging.ERROR)
    print(f"python {sys.version.split()[0]}")
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            section(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
