"""The Solana peers of the NFT tests: LiteSVM in process, and a JSON-RPC node on 127.0.0.1.

`rpc_node` serves the Solana JSON-RPC methods the integration calls (getLatestBlockhash,
sendTransaction with preflight, getSignatureStatuses, getAccountInfo, getBalance,
getBlockHeight, getMinimumBalanceForRentExemption) over a real LiteSVM runtime, with the
responses serialised by solders' own response types, so `RpcSolanaClient` is exercised over
HTTP against a chain that really executes the SPL programs. A test scripts HTTP failures
(`RpcNode.failures`: 429, 503, ...) for the next requests, can make new transactions read
"processed" for a few status polls before they are "finalized" (reads at "confirmed" do not see
them until then), and can drop transactions the way a leader does (acknowledged, never
executed, until their blockhash expires).

`nft_service` runs an engine with the Solana integration installed the way the service installs
it, over any `SolanaClient`, with retries made fast.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from solders.account import Account
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetBalanceResp,
    GetBlockHeightResp,
    GetLatestBlockhashResp,
    GetMinimumBalanceForRentExemptionResp,
    GetSignatureStatusesResp,
    RpcBlockhash,
    RpcResponseContext,
    RpcSimulateTransactionResult,
    SendTransactionPreflightFailureMessage,
    SendTransactionResp,
)
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionConfirmationStatus, TransactionStatus
from spl.token.instructions import get_associated_token_address

import tickq
from tickq.processors import Integrations
from tickq.processors.nft import SolanaIntegration
from tickq.processors.solana_chain import Chain, MintInfo
from tickq.processors.solana_client import (
    BLOCKHASH_VALID_SLOTS,
    LiteSvmClient,
    RpcSolanaClient,
    SolanaClient,
)
from tickq.settings import Settings, load_settings

HOST = "127.0.0.1"
FAST = tickq.BackoffPolicy(kind=tickq.BackoffKind.FIXED, base_s=0.01, cap_s=0.01, jitter=False)
SOL = 1_000_000_000
COMPLETED, FAILED = tickq.JobState.COMPLETED, tickq.JobState.FAILED


# --- a JSON-RPC node over LiteSVM -----------------------------------------------------------


@dataclass
class Failure:
    """A scripted HTTP failure for the next request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


class RpcNode:
    """A Solana JSON-RPC endpoint on 127.0.0.1 backed by a LiteSVM runtime."""

    def __init__(self, chain: LiteSvmClient, *, processed_polls: int = 0) -> None:
        self.chain = chain
        self.svm = chain.svm
        #: new transactions read "processed" for this many status polls, then "finalized"
        self.processed_polls = processed_polls
        #: the next `drop` transactions are acknowledged but never executed (a leader dropped
        #: them), and the chain moves past their blockhash's last valid block height
        self.drop = 0
        self.failures: deque[Failure] = deque()
        self.methods: list[str] = []
        self.port = 0
        self._polls: dict[Signature, int] = {}
        #: accounts as they were before each transaction that is not confirmed yet: what a read
        #: at "confirmed" commitment still sees
        self._before: dict[Signature, dict[Pubkey, Account | None]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    async def __aenter__(self) -> RpcNode:
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.methods.append(body.get("method", "?"))
        if self.failures:
            failure = self.failures.popleft()
            return web.Response(status=failure.status, text="unavailable",
                                headers=failure.headers)
        answer = self._answer(body.get("method"), body.get("params") or [])
        answer["id"] = body.get("id")
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _slot(self) -> int:
        return int(self.svm.get_clock().slot)

    def _context(self) -> RpcResponseContext:
        return RpcResponseContext(self._slot())

    def _answer(self, method: str | None, params: list[Any]) -> dict[str, Any]:
        if method == "getLatestBlockhash":
            value = RpcBlockhash(self.svm.latest_blockhash(), self._slot() + BLOCKHASH_VALID_SLOTS)
            return _json(GetLatestBlockhashResp(value, self._context()))
        if method == "getBlockHeight":
            return _json(GetBlockHeightResp(self._slot()))
        if method == "getMinimumBalanceForRentExemption":
            lamports = self.svm.minimum_balance_for_rent_exemption(int(params[0]))
            return _json(GetMinimumBalanceForRentExemptionResp(lamports))
        if method == "getBalance":
            account = self._read(params)
            return _json(GetBalanceResp(account.lamports if account else 0, self._context()))
        if method == "getAccountInfo":
            return _json(GetAccountInfoResp(self._read(params), self._context()))
        if method == "sendTransaction":
            return self._send(params)
        if method == "getSignatureStatuses":
            return self._statuses(params)
        return {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}}

    def _read(self, params: list[Any]) -> Account | None:
        address = Pubkey.from_string(params[0])
        config = params[1] if len(params) > 1 else {}
        account = self.svm.get_account(address)
        if config.get("commitment", "finalized") != "processed":
            for before in self._before.values():
                if address in before:
                    account = before[address]
                    break
        return account if account is not None and account.lamports > 0 else None

    def confirm_all(self) -> None:
        """Every transaction sent so far reads "finalized" from now on."""
        for signature in self._polls:
            self._polls[signature] = self.processed_polls
        self._before.clear()

    def _send(self, params: list[Any]) -> dict[str, Any]:
        config = params[1] if len(params) > 1 else {}
        if config.get("encoding", "base58") != "base64":
            return {"jsonrpc": "2.0", "error": {"code": -32602, "message": "base64 only here"}}
        tx = Transaction.from_bytes(base64.b64decode(params[0]))
        if self.drop > 0:
            self.drop -= 1
            self.svm.warp_to_slot(self._slot() + BLOCKHASH_VALID_SLOTS + 1)
            return _json(SendTransactionResp(tx.signatures[0]))
        before = {key: self.svm.get_account(key) for key in tx.message.account_keys}
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            failure = SendTransactionPreflightFailureMessage(
                f"Transaction simulation failed: {result.err()}",
                RpcSimulateTransactionResult(err=result.err(), logs=result.meta().logs(),
                                             units_consumed=0))
            return {"jsonrpc": "2.0", "error": {"code": -32002, **orjson.loads(failure.to_json())}}
        self._polls[result.signature()] = 0
        if self.processed_polls:
            self._before[result.signature()] = before
        return _json(SendTransactionResp(result.signature()))

    def _statuses(self, params: list[Any]) -> dict[str, Any]:
        statuses: list[TransactionStatus | None] = []
        for text in params[0]:
            signature = Signature.from_string(text)
            found = self.svm.get_transaction(signature)
            if found is None:
                statuses.append(None)
                continue
            polls = self._polls.get(signature, self.processed_polls)
            self._polls[signature] = polls + 1
            level = (TransactionConfirmationStatus.Processed if polls < self.processed_polls
                     else TransactionConfirmationStatus.Finalized)
            if polls + 1 >= self.processed_polls:
                self._before.pop(signature, None)
            err = found.err() if isinstance(found, FailedTransactionMetadata) else None
            statuses.append(TransactionStatus(self._slot(), None, None, err, level))
        return _json(GetSignatureStatusesResp(statuses, self._context()))


def _json(resp: Any) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(resp.to_json())
    return answer


@asynccontextmanager
async def rpc_node(chain: LiteSvmClient | None = None, **options: Any
                   ) -> AsyncIterator[RpcNode]:
    async with RpcNode(chain or LiteSvmClient(), **options) as node:
        yield node


@asynccontextmanager
async def rpc_client(url: str) -> AsyncIterator[RpcSolanaClient]:
    """An `RpcSolanaClient` on `url`, closed on the way out (its HTTP session with it)."""
    client = RpcSolanaClient(url)
    try:
        yield client
    finally:
        await client.close()


# --- reading the chain back -----------------------------------------------------------------


async def mint_info(client: SolanaClient, payer: Keypair, address: str) -> MintInfo:
    """The mint at `address`, read through a fresh `Chain` (not the integration's)."""
    info = await Chain(client, payer).read_mint(Pubkey.from_string(address))
    assert info is not None, f"no mint at {address}"
    return info


async def holding(client: SolanaClient, payer: Keypair, wallet: str | Pubkey, mint: str,
                  program: str | Pubkey) -> int:
    """How many tokens of `mint` the wallet's associated token account holds."""
    owner = wallet if isinstance(wallet, Pubkey) else Pubkey.from_string(wallet)
    program_id = program if isinstance(program, Pubkey) else Pubkey.from_string(program)
    ata = get_associated_token_address(owner, Pubkey.from_string(mint), program_id)
    return await Chain(client, payer).token_amount(ata)


# --- an engine with the Solana integration --------------------------------------------------


@dataclass
class NftService:
    engine: tickq.Engine
    solana: SolanaIntegration
    client: SolanaClient
    payer: Keypair

    async def run(self, type_name: str, data: Mapping[str, Any], timeout: float = 10.0,
                  **options: Any) -> tickq.Job:
        """Enqueue one job and return its final record."""
        job = await self.engine.enqueue(type_name, dict(data), **options)
        return await asyncio.wait_for(self.engine.wait(job.id), timeout)


def solana_settings(program: str = "token", **env: str) -> Settings:
    """Settings with the integration configured (the client is handed in, so the URL is never
    dialled unless a test makes it so)."""
    return load_settings({"TICKQ_ENV": "test", "SOLANA_RPC_URL": "http://127.0.0.1:9/",
                          "SOLANA_TOKEN_PROGRAM": program, **env})


@asynccontextmanager
async def nft_service(client: SolanaClient | None, payer: Keypair | None, *,
                      program: str = "token", settings: Settings | None = None,
                      url: str = "memory://", max_attempts: int = 3,
                      confirm_timeout_s: float = 60.0,
                      wrap: Callable[[SolanaIntegration], Mapping[str, Any]] | None = None,
                      **engine_options: Any) -> AsyncIterator[NftService]:
    """An engine on `url` with a `SolanaIntegration` over `client` paying with `payer` (None:
    built from `settings`, as the service builds them), fast retries and at most `max_attempts`
    attempts on the NFT types. `wrap(integration)` may return processors that are registered
    instead of the integration's own (to interrupt an attempt on purpose)."""
    engine = tickq.Engine(tickq.open_store(url), shutdown_grace_s=1.0, **engine_options)
    for jt in engine.registry.types:
        if jt.name in ("nft-mint", "nft-transfer"):
            engine.registry.add_type(
                dataclasses.replace(jt, backoff=FAST, max_attempts=max_attempts), replace=True)
    solana = SolanaIntegration(settings or solana_settings(program), client=client, payer=payer,
                               confirm_timeout_s=confirm_timeout_s, poll_interval_s=0.01)
    for type_name, fn in (wrap(solana) if wrap else {}).items():
        engine.register(type_name, fn)
    integrations = Integrations(engine, [solana])
    integrations.install()
    await integrations.start()
    try:
        await engine.start()
        try:
            yield NftService(engine, solana, solana.chain.client, solana.chain.payer)
        finally:
            await engine.stop()
    finally:
        await integrations.close()


def funded_payer(client: LiteSvmClient, sol: int = 10) -> Keypair:
    payer = Keypair()
    client.airdrop(payer.pubkey(), sol * SOL)
    return payer


