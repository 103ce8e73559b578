"""The payer wallet's SOL balance for `solana_wallet_balance_sol`, read from the chain at scrape
time without letting the chain slow the scrape down.

A scrape waits at most `timeout_s` for the RPC node, and the node is asked at most once per
`fresh_s` (scrapers poll every few seconds; the balance moves with mints, not with scrapes). A
read that outlives its scrape is not cancelled: its answer serves the next one. While the node
does not answer, the last good value is shown for up to `stale_s`, after which the gauge is left
out rather than showing a number nobody can vouch for. Concurrent scrapes share one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from tickq.processors import Integrations

log = logging.getLogger(__name__)

#: how long a scrape waits for the node
TIMEOUT_S = 2.0
#: a reading this young is reused without asking the node
FRESH_S = 15.0
#: the last good reading is shown for this long while the node fails; then nothing is
STALE_S = 600.0

BalanceSource = Callable[[], Awaitable[float]]


@runtime_checkable
class HasBalance(Protocol):
    """An integration that can read its wallet's balance (the Solana one)."""

    configured: bool

    async def balance_sol(self) -> float: ...


def wallet_source(integrations: Integrations) -> BalanceSource | None:
    """The balance reader of the first configured integration that has one; None when Solana
    is not configured (and the gauge is then absent)."""
    for integration in integrations:
        if isinstance(integration, HasBalance) and integration.configured:
            return integration.balance_sol
    return None


class CachedBalance:
    def __init__(self, source: BalanceSource, *, timeout_s: float = TIMEOUT_S,
                 fresh_s: float = FRESH_S, stale_s: float = STALE_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._monotonic = monotonic
        self._timeout_s = timeout_s
        self._fresh_s = fresh_s
        self._stale_s = stale_s
        self._value: float | None = None
        self._read_at = -float("inf")
        self._asked_at = -float("inf")
        self._pending: asyncio.Task[float] | None = None

    @property
    def value(self) -> float | None:
        """The last good reading, while it is not older than `stale_s`."""
        if self._value is None or self._monotonic() - self._read_at > self._stale_s:
            return None
        return self._value

    async def refresh(self) -> float | None:
        """Ask the node unless it was asked within `fresh_s`; the current value either way."""
        now = self._monotonic()
        if now - self._asked_at < self._fresh_s:
            return self.value
        self._asked_at = now
        if self._pending is None or self._pending.done():
            self._pending = asyncio.ensure_future(self._read())
        try:
            # Shielded: a scrape that gives up does not cancel the read; a late answer is
            # still kept for the next scrape.
            await asyncio.wait_for(asyncio.shield(self._pending), self._timeout_s)
        except TimeoutError:
            log.warning("wallet balance not read within %.1f s; showing the last reading",
                        self._timeout_s, extra={"event": "wallet_balance_slow"})
        except Exception as exc:
            log.warning("wallet balance unavailable: %s", exc,
                        extra={"event": "wallet_balance_failed"})
        return self.value

    async def _read(self) -> float:
        value = float(await self._source())
        self._value, self._read_at = value, self._monotonic()
        return value

    async def close(self) -> None:
        """Cancel a read still in flight (at shutdown)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
