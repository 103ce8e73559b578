"""One payer on one cluster: token state read back, and payer-signed transactions sent and
confirmed.

This is the transport-independent half of the Solana integration. It compiles and signs every
transaction, waits for the configured confirmation level, and turns a failure into the
processor error that `solana_errors.classify` picks, whichever `SolanaClient` carries the bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token.state import Mint, TokenAccount, TokenAccountState
from solders.transaction import Transaction
from solders.transaction_status import TransactionErrorFieldless
from spl.token.constants import ACCOUNT_LEN, MINT_LEN, TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

from tickq.errors import PermanentError, ProcessorError, RetryableError
from tickq.processors.solana_client import (
    LEVELS,
    AccountState,
    ConfirmationLevel,
    SolanaClient,
    TransactionFailed,
)
from tickq.processors.solana_errors import INSUFFICIENT_SOL, classify, insufficient_sol
from tickq.processors.solana_metadata import TokenMetadata, read_token_metadata

#: the most a serialized transaction may take (IPv6 MTU minus headers)
PACKET_DATA_SIZE = 1232
LAMPORTS_PER_SOL = 1_000_000_000
TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)


@dataclass(frozen=True, slots=True)
class MintInfo:
    address: Pubkey
    #: the token program that owns the mint
    program: Pubkey
    supply: int
    decimals: int
    mint_authority: Pubkey | None
    freeze_authority: Pubkey | None
    #: Token-2022 metadata stored in the mint itself, when it has any
    metadata: TokenMetadata | None


@dataclass(frozen=True, slots=True)
class TokenAccountInfo:
    address: Pubkey
    mint: Pubkey
    owner: Pubkey
    amount: int
    frozen: bool


@dataclass(frozen=True, slots=True)
class Landed:
    """A transaction the chain confirmed."""

    signature: Signature
    slot: int
    confirmation: ConfirmationLevel


class Chain:
    """Reads and writes of one payer through one client."""

    def __init__(self, client: SolanaClient, payer: Keypair, *,
                 commitment: ConfirmationLevel = "confirmed", confirm_timeout_s: float = 60.0,
                 poll_interval_s: float = 0.4,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.payer = payer
        self.commitment = commitment
        self.confirm_timeout_s = confirm_timeout_s
        self.poll_interval_s = poll_interval_s
        self._monotonic = monotonic
        self._rent: dict[int, int] = {}

    # --- reads --------------------------------------------------------------------------

    async def rent(self, size: int) -> int:
        """Rent-exempt minimum for `size` bytes (asked once per size: it changes by feature
        gate, not by the minute)."""
        lamports = self._rent.get(size)
        if lamports is None:
            lamports = await self.client.minimum_balance_for_rent_exemption(size)
            self._rent[size] = lamports
        return lamports

    async def balance(self, address: Pubkey) -> int:
        return await self.client.get_balance(address)

    async def _token_program_account(self, address: Pubkey, what: str, code: str
                                     ) -> AccountState | None:
        """The account at `address` (None when there is none), which must belong to a token
        program: anything else there is a `PermanentError` (`code`), as no retry changes it."""
        account = await self.client.get_account(address)
        if account is not None and account.owner not in TOKEN_PROGRAMS:
            raise PermanentError(f"address {address} holds an account of program {account.owner}, "
                                 f"not {what}", code=code)
        return account

    async def read_mint(self, address: Pubkey) -> MintInfo | None:
        """The mint at `address`; None when no account is there. An account that is there but
        is not a token mint is a `PermanentError`: the address is taken."""
        account = await self._token_program_account(address, "a token mint",
                                                    "mint_address_taken")
        if account is None:
            return None
        try:
            mint = Mint.from_bytes(account.data[:MINT_LEN])
        except ValueError as exc:
            raise PermanentError(f"account {address} is not an initialised mint: {exc}",
                                 code="mint_invalid") from None
        metadata = (read_token_metadata(account.data)
                    if account.owner == TOKEN_2022_PROGRAM_ID else None)
        return MintInfo(address=address, program=account.owner, supply=mint.supply,
                        decimals=mint.decimals, mint_authority=mint.mint_authority,
                        freeze_authority=mint.freeze_authority, metadata=metadata)

    async def read_token_account(self, address: Pubkey) -> TokenAccountInfo | None:
        """The token account at `address`; None when it does not exist (yet)."""
        account = await self._token_program_account(address, "a token account",
                                                    "token_account_invalid")
        if account is None:
            return None
        try:
            state = TokenAccount.from_bytes(account.data[:ACCOUNT_LEN])
        except ValueError as exc:
            raise PermanentError(f"account {address} is not a token account: {exc}",
                                 code="token_account_invalid") from None
        return TokenAccountInfo(address=address, mint=state.mint, owner=state.owner,
                                amount=state.amount,
                                frozen=state.state == TokenAccountState.Frozen)

    async def token_amount(self, address: Pubkey) -> int:
        """Tokens in a token account; 0 when the account does not exist."""
        account = await self.read_token_account(address)
        return account.amount if account is not None else 0

    # --- writes -------------------------------------------------------------------------

    async def submit(self, instructions: Sequence[Instruction], signers: Sequence[Keypair] = (),
                     *, what: str) -> Landed:
        """Sign `instructions` with the payer (fee payer, first signer) and `signers`, send them
        as one transaction and wait for the configured confirmation. `what` names the
        transaction in error messages."""
        payer = self.payer.pubkey()
        recent = await self.client.latest_blockhash()
        message = Message.new_with_blockhash(list(instructions), payer, recent.blockhash)
        tx = Transaction([self.payer, *signers], message, recent.blockhash)
        size = len(bytes(tx))
        if size > PACKET_DATA_SIZE:
            raise PermanentError(f"{what}: the transaction takes {size} bytes, more than the "
                                 f"{PACKET_DATA_SIZE} a Solana transaction may take",
                                 code="transaction_too_large")
        keys = list(message.account_keys)
        programs = [keys[ix.program_id_index] for ix in message.instructions]
        signature = tx.signatures[0]
        try:
            try:
                await self.client.send_transaction(tx)
            except TransactionFailed as failed:
                if not _already_processed(failed):
                    raise
                # The same bytes were sent before (same blockhash, same signers): what that
                # transaction did is this one's outcome, success or failure.
                status = await self.client.signature_status(signature)
                if status is None:
                    raise
                if status.err is not None:
                    raise TransactionFailed(status.err, signature=signature) from None
            return await self._confirm(signature, recent.last_valid_block_height, what)
        except TransactionFailed as failed:
            raise await self._explain(failed, programs, keys, what) from failed

    async def _confirm(self, signature: Signature, last_valid_block_height: int,
                       what: str) -> Landed:
        wanted = LEVELS.index(self.commitment)
        deadline = self._monotonic() + self.confirm_timeout_s
        while True:
            status = await self.client.signature_status(signature)
            if status is not None:
                if status.err is not None:
                    raise TransactionFailed(status.err, signature=signature)
                if status.confirmation is not None and LEVELS.index(status.confirmation) >= wanted:
                    return Landed(signature, status.slot, status.confirmation)
            elif await self.client.block_height() > last_valid_block_height:
                raise RetryableError(
                    f"{what}: transaction {signature} expired before it landed (block height "
                    f"passed {last_valid_block_height}); the next attempt reads what happened",
                    code="blockhash_expired")
            if self._monotonic() >= deadline:
                raise RetryableError(
                    f"{what}: transaction {signature} was not {self.commitment} within "
                    f"{self.confirm_timeout_s:g} s; the next attempt reads what happened",
                    code="not_confirmed")
            await asyncio.sleep(self.poll_interval_s)

    async def _explain(self, failed: TransactionFailed, programs: Sequence[Pubkey],
                       keys: Sequence[Pubkey], what: str) -> ProcessorError:
        payer = self.payer.pubkey()
        error = classify(failed.err, programs=programs, accounts=keys, payer=payer, what=what,
                         logs=failed.logs)
        if error.code == INSUFFICIENT_SOL:
            try:
                held: int | None = await self.client.get_balance(payer)
            except (ProcessorError, OSError):
                held = None
            error = insufficient_sol(payer, what, held)
        return error


def _already_processed(failed: TransactionFailed) -> bool:
    return (isinstance(failed.err, TransactionErrorFieldless)
            and failed.err == TransactionErrorFieldless.AlreadyProcessed)
