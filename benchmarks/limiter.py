"""The rate limiter and the circuit breaker: their decision rate, and the limits end to end.

Micro-benchmarks: the dispatcher asks the limiter and the breaker before every job it starts, so
their cost is paid per job; it should stay far below a store round trip (target: >= 1,000,000
limiter decisions per second). Times are passed in, as the dispatcher does, so no clock is read
inside the loops. One line per scenario: decisions per second and nanoseconds per decision. A
limiter decision is `try_acquire` followed, when granted, by `release`; a breaker decision is
`allow` + `record`.

End to end: one engine on memory://, three providers with realistic limits scaled for a short
run, each with enough no-op jobs to run `--e2e-seconds` at its limit, next to an unlimited queue
of no-op jobs kept busy by a producer. Per provider it prints the steady-state start rate (the
initial burst excluded: from the first start after the burst to the last) and its deviation
from the limit (target: within 2%), and the unlimited queue's throughput alone (before and
after), next to the providers, and next to the providers with one of them emergency-stopped for
the whole run. Throughput on a shared machine moves by several percent from run to run.

    python benchmarks/limiter.py                     # micro (0.5 s each) + end to end (~25 s)
    python benchmarks/limiter.py --seconds 2 --no-e2e
    python benchmarks/limiter.py --e2e-only --e2e-seconds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import tickq
from tickq.engine.breaker import BreakerBoard, BreakerConfig, CircuitBreaker
from tickq.engine.limiter import LimitConfig, RateLimiter
from tickq.engine.registry import JobType

T0 = 1_800_000_000.0
CHUNK = 20_000


def _timed(loop: Callable[[int, float], float], seconds: float) -> float:
    """Run `loop(count, now)` in chunks until `seconds` pass; return decisions per second."""
    done, now = 0, T0
    start = time.perf_counter()
    while True:
        now = loop(CHUNK, now)
        done += CHUNK
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def limiter_granted(seconds: float) -> float:
    """Every call granted: a group member ("stripe-charges") called exactly at the refill rate."""
    lim = RateLimiter()
    try_acquire, release = lim.try_acquire, lim.release
    step = 1 / 25

    def loop(count: int, now: float) -> float:
        for _ in range(count):
            now += step
            if try_acquire("stripe-charges", now).granted:
                release("stripe-charges", now)
        return now

    rate = _timed(loop, seconds)
    assert lim.stats["stripe"]["no_tokens"] == 0, lim.stats
    return rate


def limiter_refused(seconds: float) -> float:
    """Every call refused for lack of tokens (each refusal computes its retry time)."""
    lim = RateLimiter()
    try_acquire = lim.try_acquire
    for _ in range(50):
        try_acquire("stripe", T0)
        lim.release("stripe", T0)

    def loop(count: int, now: float) -> float:
        for _ in range(count):
            try_acquire("stripe", T0)
        return now

    rate = _timed(loop, seconds)
    assert lim.stats["stripe"]["granted"] == 50, lim.stats
    return rate


def limiter_mixed(seconds: float) -> float:
    """Twice the allowed rate: about half granted, half refused."""
    lim = RateLimiter()
    try_acquire, release = lim.try_acquire, lim.release
    step = 1 / 2  # twilio refills one token a second

    def loop(count: int, now: float) -> float:
        for _ in range(count):
            now += step
            if try_acquire("twilio-sms", now).granted:
                release("twilio-sms", now)
        return now

    return _timed(loop, seconds)


def breaker_closed(seconds: float) -> float:
    """A healthy provider: allow + record(ok) on a closed breaker."""
    b = CircuitBreaker(BreakerConfig())
    allow, record = b.allow, b.record

    def loop(count: int, now: float) -> float:
        for _ in range(count):
            now += 0.001
            if allow(now):
                record(True, now)
        return now

    return _timed(loop, seconds)


def breaker_open(seconds: float) -> float:
    """A provider that is down: allow() refused by an open breaker."""
    b = CircuitBreaker(BreakerConfig(open_s=1e12))
    for _ in range(5):
        b.record(False, T0)
    allow, record = b.allow, b.record

    def loop(count: int, now: float) -> float:
        for _ in range(count):
            now += 0.001
            if allow(now):
                record(True, now)
        return now

    return _timed(loop, seconds)


SCENARIOS: dict[str, Callable[[float], float]] = {
    "limiter try_acquire+release, granted": limiter_granted,
    "limiter try_acquire, refused (no_tokens)": limiter_refused,
    "limiter try_acquire+release, half refused": limiter_mixed,
    "breaker allow+record, closed": breaker_closed,
    "breaker allow, open (refused)": breaker_open,
}


# --- end to end ------------------------------------------------------------------------------

#: Stripe-, Solana- and Twilio-like limits, scaled down so that a run takes seconds
E2E_LIMITS: Mapping[str, LimitConfig] = {
    "stripe": LimitConfig(rate_per_s=25.0, burst=5, max_concurrent=1_000, cooldown_s=1.0),
    "solana": LimitConfig(rate_per_s=10.0, burst=3, max_concurrent=1_000, cooldown_s=1.0),
    "twilio": LimitConfig(rate_per_s=5.0, burst=2, max_concurrent=1_000, cooldown_s=1.0),
}
LIMITED_QUEUE = "communication"
FREE_QUEUE = "background"
#: the producer keeps at least this many unlimited jobs waiting, enqueued in batches
FREE_BACKLOG = 10_000
FREE_BATCH = 2_000
#: the unlimited queue runs this long before the measured window starts
WARMUP_S = 0.5
TARGET_PCT = 2.0


@dataclass
class E2ERun:
    window_s: float
    free_jobs: int
    jobs: dict[str, int] = field(default_factory=dict)
    starts: dict[str, list[float]] = field(default_factory=dict)
    #: provider jobs still waiting at the end, and how many were parked as stopped
    waiting: int = 0
    parked_stopped: int = 0

    @property
    def free_rate(self) -> float:
        return self.free_jobs / self.window_s


async def e2e_run(limits: Mapping[str, LimitConfig], *, seconds: float, deadline_s: float,
                  stopped: Collection[str] = ()) -> E2ERun:
    """One engine: `limits` providers with enough jobs for `seconds` at their limit, plus the
    unlimited queue. Ends when every provider that is not stopped has run all its jobs, or at
    `deadline_s` (with no providers: after `seconds`)."""
    engine = tickq.Engine(tickq.open_store("memory://"), limiter=RateLimiter(dict(limits)),
                          breakers=BreakerBoard(),
                          concurrency={LIMITED_QUEUE: 64, FREE_QUEUE: 64},
                          shutdown_grace_s=1.0)
    starts: dict[str, list[float]] = {p: [] for p in limits}
    jobs = {p: cfg.burst + round(cfg.rate_per_s * seconds) for p, cfg in limits.items()}
    running = [p for p in limits if p not in stopped]
    all_started = asyncio.Event()

    for provider in limits:
        async def call(job: tickq.Job, mine: list[float] = starts[provider]) -> None:
            mine.append(time.perf_counter())
            if all(len(starts[p]) >= jobs[p] for p in running):
                all_started.set()
        engine.register(JobType(name=f"call-{provider}", queue=LIMITED_QUEUE, provider=provider,
                                timeout_s=60), call)
    free = 0

    async def noop(job: tickq.Job) -> None:
        nonlocal free
        free += 1

    engine.register(JobType(name="noop", queue=FREE_QUEUE, timeout_s=60), noop)
    batch = [tickq.JobSpec(type="noop", data={}) for _ in range(FREE_BATCH)]

    async def produce() -> None:
        enqueued = 0
        while True:
            if enqueued - free < FREE_BACKLOG:
                await engine.enqueue_many(batch)
                enqueued += FREE_BATCH
            else:
                await asyncio.sleep(0.002)

    await engine.start()
    producer = asyncio.create_task(produce())
    try:
        for provider in stopped:
            engine.emergency_stop(provider)
        await asyncio.sleep(WARMUP_S)
        t0 = time.perf_counter()
        free0 = free
        for provider, n in jobs.items():
            await engine.enqueue_many(
                [tickq.JobSpec(type=f"call-{provider}", data={}) for _ in range(n)])
        if running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_started.wait(), deadline_s)
        else:
            await asyncio.sleep(seconds)
        window = time.perf_counter() - t0
        free_jobs = free - free0
        waiting = (await engine.counts(LIMITED_QUEUE)).waiting
        return E2ERun(window_s=window, free_jobs=free_jobs, jobs=jobs, starts=starts,
                      waiting=waiting,
                      parked_stopped=engine.providers.deferrals.get("stopped", 0))
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await engine.stop(grace_s=1.0)


def steady_rate(starts: list[float], burst: int) -> float:
    """Starts per second once the initial burst is spent: from the first start that had to wait
    for a token (the one after the burst) to the last."""
    if len(starts) <= burst + 1:
        return float("nan")
    return (len(starts) - burst - 1) / (starts[-1] - starts[burst])


def worst_excess(starts: list[float], cfg: LimitConfig) -> float:
    """The most starts, in any window [t, t + w], beyond what the bucket allows there
    (burst + rate * w); 0 or less means the limit held everywhere."""
    worst = -float(cfg.burst)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            worst = max(worst, (j - i + 1) - (cfg.burst + cfg.rate_per_s * (starts[j] - starts[i])))
    return worst


def print_providers(run: E2ERun, limits: Mapping[str, LimitConfig],
                    stopped: Collection[str] = ()) -> None:
    print(f"    {'provider':9s}{'limit':>14s}{'jobs':>7s}{'starts':>8s}{'steady rate':>14s}"
          f"{'deviation':>11s}  worst window over the bucket")
    for provider, cfg in limits.items():
        starts = sorted(run.starts[provider])
        limit = f"{cfg.rate_per_s:g}/s burst {cfg.burst}"
        head = f"    {provider:9s}{limit:>14s}{run.jobs[provider]:>7d}{len(starts):>8d}"
        if provider in stopped:
            print(f"{head}{'stopped':>14s}{'':>11s}  ({run.waiting} jobs waiting, "
                  f"{run.parked_stopped} parked as stopped)")
            continue
        rate = steady_rate(starts, cfg.burst)
        dev = (rate / cfg.rate_per_s - 1) * 100
        verdict = "ok" if abs(dev) <= TARGET_PCT else "OFF TARGET"
        print(f"{head}{rate:>12.2f}/s{dev:>+10.2f}%  {worst_excess(starts, cfg):+.2f} starts"
              f"  {verdict}")


async def end_to_end(seconds: float) -> None:
    deadline = seconds + 2.0
    print(f"\nend to end on memory://: providers' no-op jobs in {LIMITED_QUEUE!r}, "
          f"unlimited no-op jobs in {FREE_QUEUE!r} (target: steady rate within "
          f"{TARGET_PCT:g}% of the limit)")
    # Quiet: the emergency stop is logged as a warning.
    logging.getLogger("tickq").setLevel(logging.ERROR)
    alone = await e2e_run({}, seconds=min(seconds, 3.0), deadline_s=deadline)
    print(f"  {FREE_QUEUE} alone{'':28s}{alone.free_rate:>10,.0f} jobs/s over "
          f"{alone.window_s:.1f} s")

    both = await e2e_run(E2E_LIMITS, seconds=seconds, deadline_s=deadline)
    print(f"  three limited providers, {seconds:g} s of jobs at each limit, "
          f"{both.window_s:.1f} s:")
    print_providers(both, E2E_LIMITS)
    print(f"  {FREE_QUEUE} meanwhile{'':24s}{both.free_rate:>10,.0f} jobs/s")

    stop = next(iter(E2E_LIMITS))
    held = await e2e_run(E2E_LIMITS, seconds=seconds, deadline_s=deadline, stopped={stop})
    print(f"  the same with {stop!r} emergency-stopped for the whole run, "
          f"{held.window_s:.1f} s:")
    print_providers(held, E2E_LIMITS, stopped={stop})
    again = await e2e_run({}, seconds=min(seconds, 3.0), deadline_s=deadline)
    print(f"  {FREE_QUEUE} meanwhile{'':24s}{held.free_rate:>10,.0f} jobs/s")
    print(f"  {FREE_QUEUE} alone again{'':22s}{again.free_rate:>10,.0f} jobs/s over "
          f"{again.window_s:.1f} s")
    base = (alone.free_rate + again.free_rate) / 2
    print(f"  {FREE_QUEUE} next to the providers vs alone (mean of both runs): "
          f"{(both.free_rate / base - 1) * 100:+.1f}%, with one stopped: "
          f"{(held.free_rate / base - 1) * 100:+.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per micro-benchmark")
    parser.add_argument("--e2e-seconds", type=float, default=8.0,
                        help="how long each provider runs at its limit end to end")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-e2e", action="store_true", help="micro-benchmarks only")
    group.add_argument("--e2e-only", action="store_true", help="end to end only")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}")
    if not args.e2e_only:
        print(f"micro-benchmarks, {args.seconds:g} s per scenario")
        for name, scenario in SCENARIOS.items():
            rate = scenario(args.seconds)
            print(f"  {name:45s} {rate:>12,.0f} decisions/s  {1e9 / rate:7.0f} ns each")
    if not args.no_e2e:
        asyncio.run(end_to_end(args.e2e_seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
