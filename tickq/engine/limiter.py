"""Token buckets per provider, with a concurrency cap, a cooldown after a 429, and a stop switch.

Pure: no asyncio, no I/O, no clock. Every call takes `now` (UTC epoch seconds), so the dispatcher,
the HTTP status endpoints and the property tests drive the same object, and a decision can be
replayed exactly. `limiter_wait.AsyncLimiter` adds waiting on top.

Refill is lazy and exact: a bucket stores (tokens, last) and computes
`min(burst, tokens + (now - last) * rate)` when asked, so nothing polls and an idle provider costs
nothing. Reads (`status`, `ready_at`) evaluate the same expression without storing it, so the time
`ready_at` promises is the time `try_acquire` agrees with, to the last bit.

Providers without a configuration are unlimited (infinite rate, burst and concurrency) rather
than an error: a new integration must not stall because nobody wrote its limits yet. They still
honour `cooldown` (a provider's Retry-After) and `emergency_stop`.

Several nodes on one database share a provider's limit through a `TokenSource`: when one is set,
a configured bucket grants only what the local bucket and the source both allow. The source
answers synchronously from tokens it leased beforehand, so the limiter stays free of I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypedDict

from tickq.engine.limits import DEFAULT_LIMITS, ENV_VARS, GROUPS, LimitConfig, limits_from_env

__all__ = [
    "DEFAULT_LIMITS",
    "DENIED_CONCURRENCY",
    "DENIED_STOPPED",
    "ENV_VARS",
    "GRANTED",
    "GROUPS",
    "Decision",
    "LimitConfig",
    "LimitStatus",
    "RateLimiter",
    "Reason",
    "TokenSource",
    "limits_from_env",
]

Reason = Literal["no_tokens", "cooldown", "concurrency", "stopped"]
REASONS: Final[tuple[Reason, ...]] = ("no_tokens", "cooldown", "concurrency", "stopped")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of `try_acquire`.

    `retry_at` is when tokens and cooldown would allow the call ("no_tokens", "cooldown"); it is
    None when only a `release` ("concurrency") or a `resume` ("stopped") can help.
    """

    granted: bool
    reason: Reason | None = None
    retry_at: float | None = None


# The common answers carry no time, so they are shared instead of built on every call: the grant
# path allocates nothing.
GRANTED: Final = Decision(True)
DENIED_STOPPED: Final = Decision(False, "stopped")
DENIED_CONCURRENCY: Final = Decision(False, "concurrency")


class TokenSource(Protocol):
    """Tokens shared with other nodes, spent from a local lease that is topped up elsewhere."""

    def take(self, bucket: str, n: int, now: float) -> float | None:
        """Spend n leased tokens of `bucket` (None), or say when asking again is worthwhile."""
        ...

    def available(self, bucket: str) -> float:
        """Tokens of `bucket` this node may spend now without asking anyone."""
        ...

    def want(self, bucket: str, now: float) -> float:
        """Someone waits for tokens of `bucket`: get more, and say when asking is worthwhile."""
        ...


class LimitStatus(TypedDict):
    """One bucket as the status endpoints show it. `inf` means "no limit" (or, for `wait_s`,
    "not until resumed")."""

    provider: str
    bucket: str
    unlimited: bool
    tokens: float
    burst: float
    rate_per_s: float
    in_flight: int
    max_concurrent: float
    cooldown_s: float
    cooldown_left_s: float
    stopped: bool
    #: a `try_acquire(n)` now would be refused
    limited: bool
    #: until n tokens and a slot could be granted; when every slot is busy this is a lower bound,
    #: since nobody can know when a call will finish
    wait_s: float
    #: decisions so far: "granted" and each refusal reason
    decisions: dict[str, int]


class _Bucket:
    """Mutable state of one bucket. `last` is the time `tokens` was true at."""

    __slots__ = ("burst", "config", "cooldown_s", "cooldown_until", "denied", "granted",
                 "in_flight", "last", "max_concurrent", "name", "rate", "refusal", "stopped",
                 "tokens")

    def __init__(self, name: str, config: LimitConfig | None, stopped: bool) -> None:
        self.name = name
        self.config = config
        if config is None:
            self.rate = self.burst = self.max_concurrent = math.inf
            self.cooldown_s = 0.0
        else:
            self.rate = config.rate_per_s
            self.burst = float(config.burst)
            self.max_concurrent = float(config.max_concurrent)
            self.cooldown_s = config.cooldown_s
        self.tokens = self.burst
        self.last = -math.inf
        self.in_flight = 0
        self.cooldown_until = -math.inf
        self.stopped = stopped
        self.granted = 0
        self.denied: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.refusal = DENIED_STOPPED  # the last timed refusal, reused while it still applies

    def tokens_at(self, t: float) -> float:
        # Never refill backwards: a caller with a slightly older `now` must not drain the bucket.
        if t > self.last:
            tokens = self.tokens + (t - self.last) * self.rate
            return tokens if tokens < self.burst else self.burst
        return self.tokens

    def tokens_ready(self, start: float, n: int) -> float:
        """The earliest t >= start with tokens_at(t) >= n (n <= burst).

        Inlines `tokens_at` (without the cap, which cannot matter as n <= burst): it runs on
        every refusal, and a refused job is the common case when a provider is saturated.
        """
        tokens, last, rate = self.tokens, self.last, self.rate
        if (tokens + (start - last) * rate if start > last else tokens) >= n:
            return start
        t = last + (n - tokens) / rate
        if t < start:
            t = start
        # Rounding can leave tokens_at(t) a hair under n; step up until the bucket agrees, so
        # that a try_acquire at exactly this time succeeds.
        step = 0.0
        while (tokens + (t - last) * rate if t > last else tokens) < n:
            step = step * 2 if step else math.ulp(t)
            t += step
        return t


class RateLimiter:
    """Token buckets for every provider, with groups sharing one bucket.

    Calls are named by provider (`stripe-refunds`); `bucket_of` maps a group member to its
    shared bucket (`stripe`). Every method accepts either name.
    """

    __slots__ = ("_buckets", "_groups", "_route", "_stop_all", "_wakers", "on_decision",
                 "token_source")

    def __init__(self, limits: Mapping[str, LimitConfig] = DEFAULT_LIMITS,
                 groups: Mapping[str, str] = GROUPS, *,
                 on_decision: Callable[[str, Decision], None] | None = None) -> None:
        clash = sorted(set(limits) & set(groups))
        if clash:
            raise ValueError(f"{', '.join(clash)}: both a bucket and a group member")
        self._groups = dict(groups)
        self._buckets: dict[str, _Bucket] = {
            name: _Bucket(name, cfg, False) for name, cfg in limits.items()
        }
        # provider name -> bucket, precomputed so the hot path is one dict lookup
        self._route: dict[str, _Bucket] = dict(self._buckets)
        for member, bucket in self._groups.items():
            if bucket in self._buckets:
                self._route[member] = self._buckets[bucket]
        self._stop_all = False
        self._wakers: list[Callable[[str], None]] = []
        #: called with (bucket, decision) after every try_acquire, for metrics
        self.on_decision = on_decision
        #: where configured buckets also draw their tokens from, when the limit is shared
        self.token_source: TokenSource | None = None

    # --- lookup ------------------------------------------------------------------------------

    def bucket_of(self, provider: str) -> str:
        """The bucket a provider spends from: its group's, or its own."""
        return self._groups.get(provider, provider)

    def known(self, provider: str) -> bool:
        """Whether the provider (or its group) has configured limits."""
        b = self._route.get(provider)
        return b is not None and b.config is not None

    def config_of(self, provider: str) -> LimitConfig | None:
        """The provider's limits, None when it is unlimited."""
        b = self._route.get(provider)
        return None if b is None else b.config

    @property
    def buckets(self) -> list[str]:
        """Every bucket with state: the configured ones and any unlimited one used so far."""
        return list(self._buckets)

    def _bucket(self, provider: str) -> _Bucket:
        b = self._route.get(provider)
        if b is None:
            name = self.bucket_of(provider)
            b = self._buckets.get(name)
            if b is None:
                b = self._buckets[name] = _Bucket(name, None, self._stop_all)
            self._route[provider] = b
        return b

    def _peek(self, provider: str) -> _Bucket:
        """The bucket, without creating state for an unknown provider."""
        b = self._route.get(provider) or self._buckets.get(self.bucket_of(provider))
        return b if b is not None else _Bucket(self.bucket_of(provider), None, self._stop_all)

    def _targets(self, provider: str | None) -> Iterator[_Bucket]:
        if provider is None:
            yield from self._buckets.values()
        else:
            yield self._bucket(provider)

    # --- decisions ---------------------------------------------------------------------------

    def try_acquire(self, provider: str, now: float, n: int = 1) -> Decision:
        """Take n tokens and one in-flight slot if the bucket allows it now.

        Refusals are checked in the order an operator would want to read them: stopped, then
        cooldown, then concurrency, then tokens.
        """
        b = self._route.get(provider)
        if b is None:
            b = self._bucket(provider)
        if b.stopped:
            return self._deny(b, DENIED_STOPPED)
        if now < b.cooldown_until:
            _check_n(b, n)
            return self._deny_until(b, "cooldown", b.tokens_ready(b.cooldown_until, n))
        if b.in_flight >= b.max_concurrent:
            return self._deny(b, DENIED_CONCURRENCY)
        last = b.last
        if now > last:
            tokens = b.tokens + (now - last) * b.rate
            if tokens > b.burst:
                tokens = b.burst
        else:
            tokens = b.tokens
        if tokens < n or n < 1:
            _check_n(b, n)
            return self._deny_until(b, "no_tokens", b.tokens_ready(now, n))
        source = self.token_source
        if source is not None and b.config is not None:
            retry_at = source.take(b.name, n, now)
            if retry_at is not None:
                return self._deny_until(b, "no_tokens", max(now, retry_at))
        b.tokens = tokens - n
        if now > last:
            b.last = now
        b.in_flight += 1
        b.granted += 1
        if self.on_decision is not None:
            self.on_decision(b.name, GRANTED)
        return GRANTED

    def _deny(self, b: _Bucket, decision: Decision) -> Decision:
        b.denied[decision.reason or ""] += 1
        if self.on_decision is not None:
            self.on_decision(b.name, decision)
        return decision

    def _deny_until(self, b: _Bucket, reason: Reason, retry_at: float) -> Decision:
        # A saturated bucket refuses many calls with the same retry time (it depends on the
        # stored tokens, not on `now`), so the last refusal is reused while it matches: building
        # a frozen dataclass costs more than the rest of the refusal.
        decision = b.refusal
        if decision.retry_at != retry_at or decision.reason != reason:
            decision = b.refusal = Decision(False, reason, retry_at)
        return self._deny(b, decision)

    def release(self, provider: str, now: float) -> None:
        """Give back the in-flight slot of a call that finished (never below zero).

        `now` is unused by the bucket; it is taken so every mutation has the same shape and a
        recorded call sequence can be replayed.
        """
        b = self._route.get(provider)
        if b is None:
            b = self._bucket(provider)
        if b.in_flight > 0:
            b.in_flight -= 1
        if self._wakers:
            self._wake(b.name)

    def ready_at(self, provider: str, now: float, n: int = 1) -> float | None:
        """The earliest time >= now at which tokens and cooldown allow `try_acquire(n)`.

        None when the call needs a `release` (every slot busy) or a `resume` (stopped): no time
        can be promised then. The dispatcher snoozes a refused job to this moment.
        """
        b = self._peek(provider)
        if b.stopped or b.in_flight >= b.max_concurrent:
            return None
        _check_n(b, n)
        ready = b.tokens_ready(max(now, b.cooldown_until), n)
        source = self.token_source
        if source is not None and b.config is not None and source.available(b.name) < n:
            return max(ready, source.want(b.name, now))
        return ready

    # --- operator and provider signals -------------------------------------------------------

    def cooldown(self, provider: str, now: float, retry_after_s: float = 0.0) -> float:
        """The provider throttled us: refuse calls until now + max(retry_after_s, cooldown_s).

        The bucket is emptied and refills from the end of the cooldown, so traffic ramps back
        up at the configured rate instead of bursting into a provider that just said stop.
        Returns when the cooldown ends (an existing longer cooldown is kept).
        """
        b = self._bucket(provider)
        if not retry_after_s >= 0:  # also catches NaN
            retry_after_s = 0.0
        until = now + max(retry_after_s, b.cooldown_s)
        if until > b.cooldown_until:
            b.cooldown_until = until
        b.tokens = 0.0
        if b.cooldown_until > b.last:
            b.last = b.cooldown_until
        return b.cooldown_until

    def emergency_stop(self, provider: str | None = None) -> None:
        """Refuse every new call (None: for all providers, including ones not seen yet).

        Calls in flight finish normally and still `release`. Stopping a group member stops
        its whole group: they share one bucket.
        """
        if provider is None:
            self._stop_all = True
        for b in self._targets(provider):
            b.stopped = True

    def resume(self, provider: str | None = None) -> None:
        """Undo `emergency_stop` (None: for all)."""
        if provider is None:
            self._stop_all = False
        for b in self._targets(provider):
            b.stopped = False
            if self._wakers:
                self._wake(b.name)

    def reset(self, provider: str | None, now: float) -> None:
        """Full tokens and no cooldown (None: every bucket).

        In-flight calls are kept: they are still running and will `release`, so clearing the
        count would let the cap be overrun. A stop stays in force; `resume` lifts it.
        """
        for b in self._targets(provider):
            b.tokens = b.burst
            b.last = now
            b.cooldown_until = -math.inf
            if self._wakers:
                self._wake(b.name)

    # --- observation -------------------------------------------------------------------------

    def add_waker(self, waker: Callable[[str], None]) -> None:
        """Call `waker(bucket)` whenever a release, resume or reset may let a waiter through."""
        self._wakers.append(waker)

    def refilled(self, bucket: str) -> None:
        """The token source has new tokens for `bucket`: let its waiters try again."""
        if self._wakers:
            self._wake(bucket)

    def _wake(self, bucket: str) -> None:
        for waker in self._wakers:
            waker(bucket)

    def status(self, provider: str, now: float, n: int = 1) -> LimitStatus:
        """The bucket behind `provider`, as of `now`, without changing it."""
        b = self._peek(provider)
        ready = b.tokens_ready(max(now, b.cooldown_until), n) if n <= b.burst else math.inf
        full = b.in_flight >= b.max_concurrent
        wait = math.inf if b.stopped else max(0.0, ready - now)
        tokens = b.tokens_at(now)
        source = self.token_source
        if source is not None and b.config is not None:
            tokens = min(tokens, source.available(b.name))
        return LimitStatus(
            provider=provider, bucket=b.name, unlimited=b.config is None,
            tokens=tokens, burst=b.burst, rate_per_s=b.rate, in_flight=b.in_flight,
            max_concurrent=b.max_concurrent, cooldown_s=b.cooldown_s,
            cooldown_left_s=max(0.0, b.cooldown_until - now), stopped=b.stopped,
            limited=b.stopped or full or wait > 0, wait_s=wait,
            decisions={"granted": b.granted, **b.denied},
        )

    def status_all(self, now: float) -> dict[str, LimitStatus]:
        """Every bucket with state, by bucket name (the shape of the status endpoint)."""
        return {name: self.status(name, now) for name in self._buckets}

    @property
    def stats(self) -> dict[str, Counter[str]]:
        """Decisions per bucket: "granted" and each refusal reason."""
        return {name: Counter({"granted": b.granted, **b.denied})
                for name, b in self._buckets.items()}


def _check_n(b: _Bucket, n: int) -> None:
    # Only on refusal paths: a grant already proves 1 <= n <= tokens <= burst.
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n > b.burst:
        raise ValueError(f"{b.name}: n={n} exceeds the burst of {b.burst:g}, it can never pass")
