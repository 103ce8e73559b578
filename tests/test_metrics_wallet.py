"""`solana_wallet_balance_sol`'s reader: the payer's balance read over JSON-RPC from a node on
127.0.0.1 (a LiteSVM chain behind real HTTP), reused while fresh, kept while the node fails
until it is stale, and never holding a scrape longer than its timeout."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from aiohttp import web
from solders.keypair import Keypair

from tickq.engine.engine import Engine
from tickq.metrics_wallet import CachedBalance, wallet_source
from tickq.processors import Integrations, build_integrations
from tickq.processors.nft import SolanaIntegration
from tickq.settings import load_settings
from tickq.storage.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).resolve().parent / "processors"))
from solana_peer import SOL, Failure, rpc_node


class Ticks:
    """A monotonic clock that moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def solana_over(url: str, payer: Keypair) -> AsyncIterator[SolanaIntegration]:
    settings = load_settings({"TICKQ_ENV": "test", "SOLANA_RPC_URL": url})
    solana = SolanaIntegration(settings, payer=payer)
    await solana.start()
    try:
        yield solana
    finally:
        await solana.close()


async def test_the_balance_is_read_from_the_node_reused_while_fresh_and_kept_until_stale(
        ) -> None:
    payer = Keypair()
    ticks = Ticks()
    async with rpc_node() as node, solana_over(node.url, payer) as solana:
        node.chain.airdrop(payer.pubkey(), 3 * SOL)
        cached = CachedBalance(solana.balance_sol, fresh_s=15, stale_s=600, monotonic=ticks)
        assert await cached.refresh() == 3.0
        node.chain.airdrop(payer.pubkey(), 2 * SOL)
        asked = node.methods.count("getBalance")
        ticks.now += 10
        assert await cached.refresh() == 3.0  # fresh: the node is not asked
        assert node.methods.count("getBalance") == asked
        ticks.now += 6
        assert await cached.refresh() == 5.0
        node.failures.extend([Failure(503), Failure(503)])
        ticks.now += 20
        assert await cached.refresh() == 5.0  # the node fails: the last reading stays
        assert node.methods.count("getBalance") == asked + 2
        ticks.now += 600
        assert await cached.refresh() is None  # ... but not once it is stale


async def test_a_node_that_hangs_costs_a_scrape_its_timeout_and_a_late_answer_is_kept() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        await release.wait()
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": {
            "context": {"slot": 7}, "value": 2_500_000_000}})

    app = web.Application()
    app.router.add_post("/", hang)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    ticks = Ticks()
    try:
        async with solana_over(url, Keypair()) as solana:
            cached = CachedBalance(solana.balance_sol, timeout_s=0.05, monotonic=ticks)
            started = time.monotonic()
            assert await cached.refresh() is None
            assert time.monotonic() - started < 1.0
            release.set()
            deadline = time.monotonic() + 5
            while True:  # the read left running by the scrape that gave up
                if cached.value is not None:
                    break
                assert time.monotonic() < deadline, "the late answer never arrived"
                await asyncio.sleep(0.01)
            assert await cached.refresh() == 2.5  # within the fresh window: the late answer
    finally:
        await runner.cleanup()


def test_only_a_configured_solana_integration_gives_a_balance_reader() -> None:
    bare = load_settings({"TICKQ_ENV": "test", "TICKQ_DATABASE_URL": "memory://"})
    engine = Engine(MemoryStore())
    assert wallet_source(build_integrations(bare, engine)) is None
    configured = load_settings({"TICKQ_ENV": "test", "SOLANA_RPC_URL": "http://127.0.0.1:9/"})
    solana = SolanaIntegration(configured, payer=Keypair())
    source = wallet_source(Integrations(engine, [solana]))
    assert source is not None and source == solana.balance_sol
