"""The few chain operations the NFT processors need, over two transports.

`SolanaClient` is deliberately narrow: read an account, a balance, a signature's status, the
latest blockhash and block height, the rent-exempt minimum, and send one signed transaction.
Everything above it (instruction building, signing, confirmation, error classification) lives
in `solana_chain` and is shared, so the code the LiteSVM tests run is the code production runs.

* `RpcSolanaClient` talks JSON-RPC to a node through solana-py's `AsyncClient`; transport
  failures become `ProviderError`/`RateLimited` here, where the HTTP status is known.
* `LiteSvmClient` runs transactions in-process on LiteSVM (the SPL Token, Token-2022 and
  Associated Token Account programs come preloaded). A transaction there is final the moment it
  executes: there are no forks to roll it back, so its status reads "finalized".

A transaction that the chain rejects (in preflight or after landing) raises `TransactionFailed`
with the runtime's error; `solana_errors` decides what that means for the job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import httpx2
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Commitment
from solana.rpc.core import RPCException, RPCNoResultException
from solana.rpc.models import TxOpts
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionErrorType

from tickq.errors import ProviderError, RateLimited
from tickq.processors.outbound import retry_after_s

PROVIDER = "solana"

ConfirmationLevel = Literal["processed", "confirmed", "finalized"]
#: confirmation levels in increasing order of certainty
LEVELS: tuple[ConfirmationLevel, ...] = ("processed", "confirmed", "finalized")

#: slots a blockhash stays usable for on a real cluster (LiteSVM has no block height of its own)
BLOCKHASH_VALID_SLOTS = 150

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecentBlockhash:
    blockhash: Hash
    #: a transaction using this blockhash can no longer land once the block height passes this
    last_valid_block_height: int


@dataclass(frozen=True, slots=True)
class AccountState:
    owner: Pubkey
    lamports: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SignatureState:
    slot: int
    #: None while the node knows the transaction but has not yet rated it
    confirmation: ConfirmationLevel | None
    #: the runtime's error when the transaction landed and failed
    err: TransactionErrorType | None


class TransactionFailed(Exception):
    """The chain refused or failed a transaction; `err` is the runtime's error."""

    def __init__(self, err: TransactionErrorType, *, logs: Sequence[str] = (),
                 signature: Signature | None = None) -> None:
        super().__init__(str(err))
        self.err = err
        self.logs = tuple(logs)
        self.signature = signature


class SolanaClient(Protocol):
    """The chain, as the NFT processors use it."""

    async def latest_blockhash(self) -> RecentBlockhash: ...

    async def block_height(self) -> int: ...

    async def send_transaction(self, tx: Transaction) -> Signature:
        """Submit a signed transaction; raise `TransactionFailed` when it is refused."""
        ...

    async def signature_status(self, signature: Signature) -> SignatureState | None:
        """What the chain knows of a transaction; None when it knows nothing (yet)."""
        ...

    async def get_account(self, address: Pubkey) -> AccountState | None:
        """An account's owner, lamports and data; None when it does not exist."""
        ...

    async def get_balance(self, address: Pubkey) -> int:
        """Lamports held by an address (0 when the account does not exist)."""
        ...

    async def minimum_balance_for_rent_exemption(self, size: int) -> int: ...

    async def close(self) -> None: ...


class LiteSvmClient:
    """The chain as an in-process LiteSVM runtime: for tests, benchmarks and local development.

    `airdrop` funds an address (the payer, before its first mint). The runtime is single-threaded
    and every call returns at once, so the async methods call it directly.
    """

    def __init__(self, svm: LiteSVM | None = None) -> None:
        self.svm = svm if svm is not None else LiteSVM()

    def airdrop(self, address: Pubkey, lamports: int) -> None:
        result = self.svm.airdrop(address, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"airdrop to {address} failed: {result.err()}")

    def _slot(self) -> int:
        return int(self.svm.get_clock().slot)

    async def latest_blockhash(self) -> RecentBlockhash:
        return RecentBlockhash(self.svm.latest_blockhash(), self._slot() + BLOCKHASH_VALID_SLOTS)

    async def block_height(self) -> int:
        return self._slot()

    async def send_transaction(self, tx: Transaction) -> Signature:
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            raise TransactionFailed(result.err(), logs=result.meta().logs(),
                                    signature=tx.signatures[0])
        return result.signature()

    async def signature_status(self, signature: Signature) -> SignatureState | None:
        result = self.svm.get_transaction(signature)
        if result is None:
            return None
        err = result.err() if isinstance(result, FailedTransactionMetadata) else None
        return SignatureState(slot=self._slot(), confirmation="finalized", err=err)

    async def get_account(self, address: Pubkey) -> AccountState | None:
        account = self.svm.get_account(address)
        if account is None or account.lamports == 0:
            return None
        return AccountState(owner=account.owner, lamports=account.lamports,
                            data=bytes(account.data))

    async def get_balance(self, address: Pubkey) -> int:
        return self.svm.get_balance(address) or 0

    async def minimum_balance_for_rent_exemption(self, size: int) -> int:
        return int(self.svm.minimum_balance_for_rent_exemption(size))

    async def close(self) -> None:
        """Nothing to release: the runtime lives as long as the object."""


class RpcSolanaClient:
    """The chain through a JSON-RPC node.

    Every call maps transport failures to the engine's errors: no reply or a 5xx is a
    `ProviderError` that counts against the "solana" circuit breaker, a 429 is `RateLimited`
    (deferred without spending an attempt, honouring Retry-After), a JSON-RPC error is a
    `ProviderError` too. Preflight failures are the chain's verdict on the transaction and come
    out as `TransactionFailed`, exactly as LiteSVM reports them.
    """

    def __init__(self, url: str, commitment: ConfirmationLevel = "confirmed", *,
                 timeout_s: float = 15.0) -> None:
        self.url = url
        self.commitment = Commitment(commitment)
        self.rpc = AsyncClient(url, commitment=self.commitment, timeout=timeout_s)

    async def _call(self, method: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except SolanaRpcException as exc:
            raise _transport_error(method, exc) from exc
        except RPCException as exc:
            answer = exc.args[0] if exc.args else None
            if isinstance(answer, SendTransactionPreflightFailureMessage):
                err = answer.data.err
                if err is not None:
                    raise TransactionFailed(err, logs=answer.data.logs or ()) from None
            raise _rpc_error(method, answer) from exc
        except RPCNoResultException as exc:
            raise ProviderError(f"Solana RPC {method} returned no result: {exc}",
                                provider=PROVIDER, code="rpc_no_result") from exc

    async def latest_blockhash(self) -> RecentBlockhash:
        resp = await self._call("getLatestBlockhash", self.rpc.get_latest_blockhash())
        return RecentBlockhash(resp.value.blockhash, resp.value.last_valid_block_height)

    async def block_height(self) -> int:
        return (await self._call("getBlockHeight", self.rpc.get_block_height())).value

    async def send_transaction(self, tx: Transaction) -> Signature:
        opts = TxOpts(skip_confirmation=True, preflight_commitment=self.commitment)
        resp = await self._call("sendTransaction", self.rpc.send_raw_transaction(bytes(tx), opts))
        return resp.value

    async def signature_status(self, signature: Signature) -> SignatureState | None:
        resp = await self._call("getSignatureStatuses",
                                self.rpc.get_signature_statuses([signature]))
        status = resp.value[0] if resp.value else None
        if status is None:
            return None
        level = (LEVELS[int(status.confirmation_status)]
                 if status.confirmation_status is not None else None)
        return SignatureState(slot=status.slot, confirmation=level, err=status.err)

    async def get_account(self, address: Pubkey) -> AccountState | None:
        resp = await self._call("getAccountInfo", self.rpc.get_account_info(address))
        account = resp.value
        if account is None or account.lamports == 0:
            return None
        return AccountState(owner=account.owner, lamports=account.lamports,
                            data=bytes(account.data))

    async def get_balance(self, address: Pubkey) -> int:
        return (await self._call("getBalance", self.rpc.get_balance(address))).value

    async def minimum_balance_for_rent_exemption(self, size: int) -> int:
        resp = await self._call("getMinimumBalanceForRentExemption",
                                self.rpc.get_minimum_balance_for_rent_exemption(size))
        return resp.value

    async def close(self) -> None:
        await self.rpc.close()


def _transport_error(method: str, exc: SolanaRpcException) -> ProviderError | RateLimited:
    cause = exc.__cause__
    if isinstance(cause, httpx2.HTTPStatusError):
        status = cause.response.status_code
        if status == 429:
            return RateLimited(f"Solana RPC {method}: HTTP 429 Too Many Requests",
                               retry_after=retry_after_s(cause.response.headers.get("retry-after"),
                                                         time.time()),
                               provider=PROVIDER, code="rpc_rate_limited")
        return ProviderError(f"Solana RPC {method}: HTTP {status}", status=status,
                             provider=PROVIDER, code="rpc_http_error")
    reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return ProviderError(f"Solana RPC {method}: no response ({reason})", status=None,
                         provider=PROVIDER, code="rpc_unreachable")


def _rpc_error(method: str, answer: object) -> ProviderError | RateLimited:
    code = getattr(answer, "code", None)
    message = getattr(answer, "message", None) or str(answer)
    if code == 429:
        return RateLimited(f"Solana RPC {method}: {message}", provider=PROVIDER,
                           code="rpc_rate_limited")
    return ProviderError(f"Solana RPC {method} failed: {message}", status=None,
                         provider=PROVIDER, code="rpc_error")
