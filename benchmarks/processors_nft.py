"""Ticket NFT mints per second through the engine, on LiteSVM.

Every job runs the real `nft-mint` processor: derive the mint and custodial keys, read the mint
address, build and sign one transaction (create the mint, Token-2022 metadata when that program
is chosen, create the owner's token account, mint 1, remove the mint authority), execute it on
an in-process LiteSVM runtime and read its status back. The chain costs next to nothing here, so
the figures are the processor's and the engine's own cost per mint; a real cluster adds its
round trips (and the RPC provider's limits) on top.

Two scenarios:

* no provider limit: `--mints` jobs per token program, as fast as the money queue runs them;
  mints/s from the first enqueue to the last completion;
* the "solana" limit on (`--rate` per second, burst 1): `--limited-mints` jobs; the steady
  start rate of the processors (first start to last) must equal the limit, within 2%.

    python benchmarks/processors_nft.py                       # 400 mints x 2 programs, 40 at 10/s
    python benchmarks/processors_nft.py --mints 100 --limited-mints 12 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from solders.keypair import Keypair

import tickq
from tickq.engine.breaker import BreakerBoard
from tickq.engine.limiter import LimitConfig, RateLimiter
from tickq.processors import Integrations
from tickq.processors.nft import SolanaIntegration
from tickq.processors.solana_client import LiteSvmClient
from tickq.settings import load_settings

TARGET_PCT = 2.0
SOL = 1_000_000_000


async def run_mints(count: int, *, program: str, limit: LimitConfig | None,
                    timeout_s: float) -> tuple[float, list[float], int]:
    """Mint `count` tickets through one engine; return (elapsed seconds from the first enqueue
    to the last completion, processor start times, completed jobs)."""
    chain = LiteSvmClient()
    payer = Keypair()
    chain.airdrop(payer.pubkey(), 1_000 * SOL)
    settings = load_settings({"TICKQ_ENV": "test", "SOLANA_TOKEN_PROGRAM": program})
    limiter = RateLimiter({"solana": limit} if limit is not None else {})
    engine = tickq.Engine(tickq.open_store("memory://"), limiter=limiter,
                          breakers=BreakerBoard(), shutdown_grace_s=1.0)
    solana = SolanaIntegration(settings, client=chain, payer=payer, poll_interval_s=0.001)
    starts: list[float] = []

    async def mint(job: tickq.Job) -> Any:
        starts.append(time.perf_counter())
        return await solana.mint(job)

    engine.register("nft-mint", mint)
    integrations = Integrations(engine, [solana])
    integrations.install()
    await integrations.start()
    try:
        async with engine:
            specs = [tickq.JobSpec(type="nft-mint", data={
                "eventId": "evt-bench", "ticketId": f"tkt-{i}", "seatId": f"S-{i}",
                "userId": f"user-{i % 50}", "venueId": "venue-1"}) for i in range(count)]
            t0 = time.perf_counter()
            jobs = [e.job for e in await engine.enqueue_many(specs)]
            done = await asyncio.wait_for(
                asyncio.gather(*(engine.wait(j.id) for j in jobs)), timeout_s)
            elapsed = time.perf_counter() - t0
    finally:
        await integrations.close()
    completed = sum(j.state is tickq.JobState.COMPLETED for j in done)
    return elapsed, starts, completed


async def main_async(args: argparse.Namespace) -> int:
    ok = True
    for program in ("token", "token-2022"):
        elapsed, _, completed = await run_mints(args.mints, program=program, limit=None,
                                                timeout_s=args.timeout)
        ok &= completed == args.mints
        print(f"nft-mint, no provider limit, {program:<10}: {completed / elapsed:8,.1f} mints/s "
              f"({completed:,} of {args.mints:,} minted in {elapsed:.2f} s)")

    limit = LimitConfig(rate_per_s=args.rate, burst=1, max_concurrent=5, cooldown_s=1.0)
    elapsed, starts, completed = await run_mints(args.limited_mints, program="token", limit=limit,
                                                 timeout_s=args.timeout)
    ok &= completed == args.limited_mints
    starts.sort()
    if len(starts) >= 2:
        rate = (len(starts) - 1) / (starts[-1] - starts[0])
        deviation = (rate / args.rate - 1) * 100
        held = abs(deviation) <= TARGET_PCT
        ok &= held
        print(f"nft-mint, solana limit {args.rate:g}/s, token     : {rate:8,.2f} mints/s "
              f"(deviation {deviation:+.2f}%, target within {TARGET_PCT:g}%: "
              f"{'yes' if held else 'NO'}; {completed} minted in {elapsed:.2f} s)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mints", type=int, default=400,
                        help="mints per token program without a limit (default 400)")
    parser.add_argument("--limited-mints", type=int, default=40,
                        help="mints under the provider limit (default 40)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="the solana limit, mints per second (default 10)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on a scenario after this many seconds (default 120)")
    args = parser.parse_args(argv)
    if args.mints < 1 or args.limited_mints < 2 or args.rate <= 0:
        parser.error("--mints must be >= 1, --limited-mints >= 2 and --rate > 0")
    logging.disable(logging.INFO)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
