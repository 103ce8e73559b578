"""Provider token buckets shared by every node on one PostgreSQL database.

Each node's `RateLimiter` grants tokens locally; on its own, N nodes would together reach N
times a provider's limit. `SharedBuckets` is the limiter's `TokenSource`: the real bucket is a
row of `provider_buckets`, and a node leases a few tokens at a time from it with one statement
that refills the row by the time elapsed on the database clock and takes what is there
(`LEASE_SQL`). The claim path spends leased tokens from memory and never waits for the
database; a refused take starts a lease in the background, and its tokens wake the provider's
parked jobs through `RateLimiter.refilled`.

A lease takes at most `burst // nodes_hint` tokens, so that a few nodes share a burst instead
of the first to ask taking all of it. A node spends nothing it has not leased: its first call
on a bucket waits for one lease (a round trip), and so does any call that finds its tokens
spent. Handing a starting node some tokens on credit would spare that one round trip, but then
many nodes starting at the same instant would together exceed the burst by their credits.

Bound: every token spent was taken from the shared bucket, so over any time the nodes together
spend at most what the bucket handed out. Leased tokens unused for `LEASE_TTL_S` expire (they
are dropped, never given back), so a token is spent at most that long after the database
granted it: in any window of W seconds the nodes, however many, start at most
`burst + rate * (W + LEASE_TTL_S)` calls. Expired tokens are lost to everyone, which errs on
the side of the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass

import asyncpg  # type: ignore[import-untyped]

from tickq.engine.limiter import RateLimiter
from tickq.engine.limits import LimitConfig

log = logging.getLogger(__name__)

#: leased tokens unused for longer than this expire (seconds)
LEASE_TTL_S = 0.5
#: how many nodes a bucket is assumed to be shared by when sizing a lease
NODES_HINT = 3
#: the pause before leasing again after the database could not be reached (seconds)
ERROR_RETRY_S = 1.0
#: the shortest pause before asking an empty bucket again (seconds)
MIN_RETRY_S = 0.005

#: Refill the bucket by the database time elapsed since the last lease, take up to $4 of the
#: whole tokens there, and return what was taken, what is left and the rate. The row is created
#: full on first use; the configured rate and burst of the asking node are written back, so a
#: changed limit takes effect with the next lease.
LEASE_SQL = """
INSERT INTO provider_buckets AS b (bucket, rate, burst, tokens, granted, refilled_at)
VALUES ($1, $2::float8, $3::float8,
        $3::float8 - least($4::integer, greatest(0, floor($3::float8))),
        least($4::integer, greatest(0, floor($3::float8))), clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    rate = EXCLUDED.rate,
    burst = EXCLUDED.burst,
    granted = least($4::integer, greatest(0, floor(provider_bucket_level(
        b.tokens, b.rate, EXCLUDED.burst, b.refilled_at, EXCLUDED.refilled_at)))),
    tokens = provider_bucket_level(
        b.tokens, b.rate, EXCLUDED.burst, b.refilled_at, EXCLUDED.refilled_at)
        - least($4::integer, greatest(0, floor(provider_bucket_level(
            b.tokens, b.rate, EXCLUDED.burst, b.refilled_at, EXCLUDED.refilled_at)))),
    refilled_at = greatest(b.refilled_at, EXCLUDED.refilled_at)
RETURNING granted, tokens, rate
"""


@dataclass(frozen=True, slots=True)
class Lease:
    """The answer of one lease: tokens taken, and the fraction left behind in the bucket."""

    granted: int
    left: float
    rate: float

    def wait_s(self) -> float:
        """How long until the bucket holds a whole token again."""
        if self.left >= 1 or not math.isfinite(self.rate) or self.rate <= 0:
            return MIN_RETRY_S
        return max(MIN_RETRY_S, (1.0 - self.left) / self.rate)


async def lease(pool: asyncpg.Pool | asyncpg.Connection, bucket: str, config: LimitConfig,
                n: int) -> Lease:
    """Take up to n tokens of `bucket` from the shared row (created full on first use)."""
    row = await pool.fetchrow(LEASE_SQL, bucket, float(config.rate_per_s), float(config.burst),
                              n)
    return Lease(int(row["granted"]), float(row["tokens"]), float(row["rate"]))


class _Held:
    """Tokens of one bucket leased by this node, and the lease in progress."""

    __slots__ = ("leased_at", "task", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.leased_at = -math.inf  # monotonic
        self.task: asyncio.Task[None] | None = None


class SharedBuckets:
    """The `TokenSource` of one node: leases from `provider_buckets`, spends from memory."""

    def __init__(self, pool: asyncpg.Pool, limiter: RateLimiter, *,
                 nodes_hint: int = NODES_HINT, lease_ttl_s: float = LEASE_TTL_S) -> None:
        self._pool = pool
        self._limiter = limiter
        self._nodes_hint = max(1, nodes_hint)
        self._ttl = lease_ttl_s
        self._held: dict[str, _Held] = {}
        self._closed = False
        #: tokens leased from the database, and expired unused, per bucket
        self.leased: dict[str, int] = {}
        self.expired: dict[str, int] = {}

    def _batch(self, config: LimitConfig) -> int:
        return max(1, config.burst // self._nodes_hint)

    def _fresh(self, bucket: str) -> _Held:
        held = self._held.get(bucket)
        if held is None:
            held = self._held[bucket] = _Held()
        elif held.tokens and time.monotonic() - held.leased_at > self._ttl:
            self.expired[bucket] = self.expired.get(bucket, 0) + held.tokens
            held.tokens = 0
        return held

    # --- TokenSource -----------------------------------------------------------------------

    def take(self, bucket: str, n: int, now: float) -> float | None:
        held = self._fresh(bucket)
        if held.tokens >= n:
            held.tokens -= n
            return None
        return self.want(bucket, now)

    def available(self, bucket: str) -> float:
        return float(self._fresh(bucket).tokens)

    def want(self, bucket: str, now: float) -> float:
        self._start_lease(bucket, self._fresh(bucket))
        # Tokens arrive through `RateLimiter.refilled`; this time is only a fallback timer.
        config = self._limiter.config_of(bucket)
        rate = config.rate_per_s if config is not None else math.inf
        return now + (max(MIN_RETRY_S, 1.0 / rate) if rate > 0 else ERROR_RETRY_S)

    # --- leasing -------------------------------------------------------------------------

    def _start_lease(self, bucket: str, held: _Held) -> None:
        if self._closed or (held.task is not None and not held.task.done()):
            return
        config = self._limiter.config_of(bucket)
        if config is None:
            return
        held.task = asyncio.get_running_loop().create_task(
            self._lease(bucket, held, config), name=f"tickq-lease-{bucket}")

    async def _lease(self, bucket: str, held: _Held, config: LimitConfig) -> None:
        while not self._closed:
            try:
                got = await lease(self._pool, bucket, config, self._batch(config))
            except (OSError, TimeoutError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:
                log.warning("token lease failed", extra={
                    "event": "bucket_lease_failed", "bucket": bucket, "error": str(exc)})
                await asyncio.sleep(ERROR_RETRY_S)
                continue
            if got.granted > 0:
                self._fresh(bucket).tokens += got.granted
                held.leased_at = time.monotonic()
                self.leased[bucket] = self.leased.get(bucket, 0) + got.granted
                held.task = None
                self._limiter.refilled(bucket)
                return
            # Empty: wait for the next whole token, with jitter so that the nodes waiting on
            # one bucket do not all ask at the same instant and the same one always wins.
            wait = got.wait_s() * (1.0 + random.random() * 0.5)
            await asyncio.sleep(wait)

    async def close(self) -> None:
        self._closed = True
        if self._limiter.token_source is self:
            self._limiter.token_source = None
        tasks = [h.task for h in self._held.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
