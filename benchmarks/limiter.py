"""In-process decision rate of the rate limiter and the circuit breaker.

The dispatcher asks the limiter and the breaker before every job it starts, so their cost is
paid per job; it should stay far below a store round trip (target: >= 1,000,000 limiter
decisions per second). Times are passed in, as the dispatcher does, so no clock is read inside
the loops.

    python benchmarks/limiter.py              # about half a second per scenario
    python benchmarks/limiter.py --seconds 2

One line per scenario: decisions per second and nanoseconds per decision. A limiter decision is
`try_acquire` followed, when granted, by `release`; a breaker decision is `allow` + `record`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from tickq.engine.breaker import BreakerConfig, CircuitBreaker
from tickq.engine.limiter import RateLimiter

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=0.5, help="time per scenario")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {args.seconds:g} s per scenario")
    for name, scenario in SCENARIOS.items():
        rate = scenario(args.seconds)
        print(f"{name:45s} {rate:>12,.0f} decisions/s  {1e9 / rate:7.0f} ns each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
