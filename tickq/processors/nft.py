"""Ticket NFTs on Solana: the `nft-mint` and `nft-transfer` processors.

**What a ticket NFT is.** An SPL mint with 0 decimals and a supply of exactly 1 whose mint
authority is removed in the transaction that mints it, so no one (the service included) can ever
mint a second copy. The program is `SOLANA_TOKEN_PROGRAM`: classic SPL Token, or Token-2022.

**Who owns it.** When the job names a `recipient` wallet, the token goes to that wallet's
associated token account and the service has no further say over it. Without one, it goes to a
*custodial* wallet the service derives for the user from the payer's secret, the tenant and the
user id: nothing is stored, and the service can sign for that wallet later, which is what
`nft-transfer` does (it moves the token out of `fromUserId`'s custodial wallet to `toWallet`).
A token sent to a user's own wallet can only be moved by that user.

**Who pays.** The payer (`SOLANA_KEYPAIR_PATH` or `SOLANA_PRIVATE_KEY`) pays every fee and the
rent of every account created (mint, token accounts); custodial wallets hold no SOL.

**Retries never mint twice.** The mint's address is derived from the payer's secret, the tenant
and the job's idempotency key, so every attempt of one job works on the same address. The mint
is created, given to its owner, and closed to further minting in one transaction: either all of
it landed or none of it did. An attempt that finds the mint at its address finishes whatever is
missing (token account, the one token while the supply is 0, the authority removal) and returns
it; it never mints again. A transfer reads both token accounts first: the token already at the
destination is success, not a second transfer. This is also how an attempt after a crash or a
timeout (`job.needs_reconcile`) reconciles: by reading the chain, not by trusting the journal.

**Where the metadata is.** Name, symbol and URI are derived from the job (`metadata.name`,
`metadata.symbol`, `metadata.uri` when given; "Ticket <ticketId>", "TICKET" and
`urn:tickq:ticket:<eventId>:<ticketId>` otherwise). With Token-2022 they are written on chain,
in the mint itself (metadata pointer + token metadata extensions, update authority: the payer).
With classic SPL Token there is no metadata program here (no Metaplex), so they are recorded in
the job's result only. Either way the result carries them with the ticket's ids and attributes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from spl.token.constants import MINT_LEN, TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to_checked,
    set_authority,
    transfer_checked,
)
from spl.token.models import (
    AuthorityType,
    InitializeMint2Params,
    MintToCheckedParams,
    SetAuthorityParams,
    TransferCheckedParams,
)

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.engine.jobtypes import NftMintData, NftTransferData
from tickq.errors import PermanentError, ProcessorError
from tickq.processors.base import Integration, Processor, job_data
from tickq.processors.solana_chain import LAMPORTS_PER_SOL, Chain, Landed, MintInfo
from tickq.processors.solana_client import RpcSolanaClient, SolanaClient
from tickq.processors.solana_keys import custodial_keypair, load_payer, mint_keypair
from tickq.processors.solana_metadata import (
    MINT_WITH_POINTER_LEN,
    initialize_metadata_pointer,
    initialize_token_metadata,
    metadata_len,
)

if TYPE_CHECKING:
    from tickq.engine.engine import Engine
    from tickq.settings import Settings

log = logging.getLogger(__name__)

PROGRAMS: dict[str, Pubkey] = {"token": TOKEN_PROGRAM_ID, "token-2022": TOKEN_2022_PROGRAM_ID}
PROGRAM_NAMES: dict[Pubkey, str] = {v: k for k, v in PROGRAMS.items()}
DEFAULT_SYMBOL = "TICKET"


@dataclass(frozen=True, slots=True)
class TicketMetadata:
    name: str
    symbol: str
    uri: str
    #: the job's `metadata` object as given (seat, section, tier, ...)
    attributes: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "symbol": self.symbol, "uri": self.uri,
                "attributes": self.attributes}


def ticket_metadata(data: NftMintData) -> TicketMetadata:
    """Name, symbol and URI of a ticket, from the job's metadata or its ids."""
    given = data.metadata

    def text(key: str, default: str) -> str:
        value = given.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise PermanentError(f"metadata.{key} must be a string, got {type(value).__name__}",
                                 code="invalid_metadata")
        return value

    uri = text("uri", f"urn:tickq:ticket:{quote(data.eventId, safe='')}:"
                      f"{quote(data.ticketId, safe='')}")
    return TicketMetadata(name=text("name", f"Ticket {data.ticketId}"),
                          symbol=text("symbol", DEFAULT_SYMBOL), uri=uri, attributes=dict(given))




def _address(value: str, field: str) -> Pubkey:
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise PermanentError(f"{field} {value!r} is not a Solana address (base58, 32 bytes)",
                             code="invalid_address") from None


def _landed(landed: Landed | None) -> dict[str, Any]:
    if landed is None:
        return {"transactionSignature": None, "signatures": [], "slot": None,
                "confirmation": None}
    return {"transactionSignature": str(landed.signature), "signatures": [str(landed.signature)],
            "slot": landed.slot, "confirmation": landed.confirmation}


class TicketNfts:
    """The processors' work, over one `Chain`."""

    def __init__(self, chain: Chain, program: Pubkey = TOKEN_PROGRAM_ID) -> None:
        if program not in PROGRAM_NAMES:
            raise ValueError(f"{program} is not an SPL token program")
        self.chain = chain
        self.program = program

    @property
    def payer(self) -> Keypair:
        return self.chain.payer

    # --- nft-mint -----------------------------------------------------------------------

    async def mint(self, job: Job) -> dict[str, Any]:
        data = job_data(NftMintData, job)
        meta = ticket_metadata(data)
        custodial = data.recipient is None
        owner = (_address(data.recipient, "recipient") if data.recipient is not None
                 else custodial_keypair(self.payer, job.tenant_id, data.userId).pubkey())
        mint_kp = mint_keypair(self.payer, job.tenant_id, job.idempotency_key or job.id)
        mint = mint_kp.pubkey()
        what = f"the mint of ticket {data.ticketId}"

        state = await self.chain.read_mint(mint)
        if state is not None and state.decimals != 0:
            raise PermanentError(f"mint {mint} has {state.decimals} decimals; a ticket's has 0",
                                 code="mint_not_a_ticket")
        landed: Landed | None = None
        if not _complete(state):
            try:
                landed = await (self._create(mint_kp, owner, meta, what) if state is None
                                else self._finish(state, owner, what))
            except ProcessorError:
                # An earlier attempt of this job whose lease lapsed while it was still running
                # may have got there first; if the mint is complete now, its work is this result.
                state = await self.chain.read_mint(mint)
                if not _complete(state):
                    raise
        program = state.program if state is not None else self.program
        on_chain = (state.metadata if state is not None
                    else None if program != TOKEN_2022_PROGRAM_ID else meta)
        result: dict[str, Any] = {
            "mintAddress": str(mint),
            "owner": str(owner),
            "custodial": custodial,
            "tokenAccount": str(get_associated_token_address(owner, mint, program)),
            "tokenProgram": PROGRAM_NAMES[program],
            "tokenProgramId": str(program),
            "supply": 1,
            "decimals": 0,
            "mintAuthority": None,
            "payer": str(self.payer.pubkey()),
            **_landed(landed),
            "alreadyMinted": landed is None,
            "ticketId": data.ticketId,
            "eventId": data.eventId,
            "seatId": data.seatId,
            "venueId": data.venueId,
            "userId": data.userId,
            "metadata": meta.to_dict(),
            "metadataOnChain": on_chain is not None,
            "mintedAt": iso(time.time()),
        }
        log.info("ticket NFT minted", extra={"event": "nft_minted", "job_id": job.id,
                                             "mint": str(mint), "already": landed is None})
        return result

    def _issue(self, mint: Pubkey, owner: Pubkey, program: Pubkey) -> list[Instruction]:
        """Give the one token to `owner` and close the mint to further minting."""
        payer = self.payer.pubkey()
        ata = get_associated_token_address(owner, mint, program)
        return [
            create_idempotent_associated_token_account(payer, owner, mint, program),
            mint_to_checked(MintToCheckedParams(program_id=program, mint=mint, dest=ata,
                                                mint_authority=payer, amount=1, decimals=0)),
            self._revoke(mint, program),
        ]

    def _revoke(self, mint: Pubkey, program: Pubkey) -> Instruction:
        return set_authority(SetAuthorityParams(
            program_id=program, account=mint, authority=AuthorityType.MINT_TOKENS,
            current_authority=self.payer.pubkey(), new_authority=None))

    async def _create(self, mint_kp: Keypair, owner: Pubkey, meta: TicketMetadata,
                      what: str) -> Landed:
        payer = self.payer.pubkey()
        mint = mint_kp.pubkey()
        program = self.program
        init = initialize_mint2(InitializeMint2Params(
            decimals=0, mint=mint, mint_authority=payer, freeze_authority=None,
            program_id=program))
        if program == TOKEN_2022_PROGRAM_ID:
            # Allocate for the pointer only, fund for pointer + metadata: the metadata
            # instruction grows the account but does not pay for the growth.
            full = MINT_WITH_POINTER_LEN + metadata_len(meta.name, meta.symbol, meta.uri)
            setup = [
                create_account(CreateAccountParams(
                    from_pubkey=payer, to_pubkey=mint, lamports=await self.chain.rent(full),
                    space=MINT_WITH_POINTER_LEN, owner=program)),
                initialize_metadata_pointer(mint, payer, mint),
                init,
                initialize_token_metadata(mint, payer, payer, meta.name, meta.symbol, meta.uri),
            ]
        else:
            setup = [
                create_account(CreateAccountParams(
                    from_pubkey=payer, to_pubkey=mint, lamports=await self.chain.rent(MINT_LEN),
                    space=MINT_LEN, owner=program)),
                init,
            ]
        return await self.chain.submit([*setup, *self._issue(mint, owner, program)], [mint_kp],
                                       what=what)

    async def _finish(self, state: MintInfo, owner: Pubkey, what: str) -> Landed:
        """Complete a mint found part-way: mint the one token while the supply is 0, and remove
        the mint authority while it is still set."""
        payer = self.payer.pubkey()
        mint, program = state.address, state.program
        if state.supply > 1:
            raise PermanentError(f"mint {mint} has a supply of {state.supply}; a ticket's is 1",
                                 code="mint_not_a_ticket")
        if state.mint_authority != payer:
            raise PermanentError(
                f"mint {mint} has supply {state.supply} and its mint authority is "
                f"{state.mint_authority}, not this payer ({payer}): it cannot be finished",
                code="mint_unfinishable")
        steps = self._issue(mint, owner, program) if state.supply == 0 else [
            self._revoke(mint, program)]
        return await self.chain.submit(steps, what=f"{what} (finishing)")

    # --- nft-transfer -------------------------------------------------------------------

    async def transfer(self, job: Job) -> dict[str, Any]:
        data = job_data(NftTransferData, job)
        mint = _address(data.mintAddress, "mintAddress")
        to_wallet = _address(data.toWallet, "toWallet")
        what = f"the transfer of ticket {data.ticketId}"
        state = await self.chain.read_mint(mint)
        if state is None:
            raise PermanentError(f"mint {mint} does not exist", code="mint_not_found")
        if state.decimals != 0 or state.supply != 1:
            raise PermanentError(f"mint {mint} is not a ticket (supply {state.supply}, "
                                 f"{state.decimals} decimals)", code="mint_not_a_ticket")
        program = state.program
        sender = custodial_keypair(self.payer, job.tenant_id, data.fromUserId)
        source = get_associated_token_address(sender.pubkey(), mint, program)
        dest = get_associated_token_address(to_wallet, mint, program)
        result: dict[str, Any] = {
            "mintAddress": str(mint),
            "ticketId": data.ticketId,
            "fromUserId": data.fromUserId,
            "toUserId": data.toUserId,
            "fromWallet": str(sender.pubkey()),
            "toWallet": str(to_wallet),
            "sourceTokenAccount": str(source),
            "destinationTokenAccount": str(dest),
            "tokenProgram": PROGRAM_NAMES[program],
            "tokenProgramId": str(program),
        }
        # Source first, then destination: a transfer landing between the two reads then shows
        # as "already at the destination", never as "the sender does not hold it".
        held = await self.chain.read_token_account(source)
        if await self.chain.token_amount(dest) >= 1:
            return self._transferred(job, result, None)
        if held is None or held.amount < 1:
            raise PermanentError(
                f"user {data.fromUserId} does not hold ticket {mint}: their custodial wallet "
                f"{sender.pubkey()} has no token of it (and {to_wallet} does not either)",
                code="not_token_owner")
        if held.frozen:
            raise PermanentError(f"the token account {source} of ticket {mint} is frozen",
                                 code="token_account_frozen")
        payer = self.payer.pubkey()
        steps = [
            create_idempotent_associated_token_account(payer, to_wallet, mint, program),
            transfer_checked(TransferCheckedParams(
                program_id=program, source=source, mint=mint, dest=dest, owner=sender.pubkey(),
                amount=1, decimals=state.decimals)),
        ]
        try:
            landed = await self.chain.submit(steps, [sender], what=what)
        except ProcessorError:
            if await self.chain.token_amount(dest) >= 1:
                return self._transferred(job, result, None)
            raise
        return self._transferred(job, result, landed)

    @staticmethod
    def _transferred(job: Job, result: dict[str, Any], landed: Landed | None) -> dict[str, Any]:
        log.info("ticket NFT transferred", extra={"event": "nft_transferred", "job_id": job.id,
                                                  "mint": result["mintAddress"],
                                                  "already": landed is None})
        return {**result, **_landed(landed), "alreadyTransferred": landed is None,
                "transferredAt": iso(time.time())}


def _complete(state: MintInfo | None) -> bool:
    return state is not None and state.supply == 1 and state.mint_authority is None


class SolanaIntegration(Integration):
    """Ticket NFTs through one payer wallet.

    Built from the settings it talks JSON-RPC to `SOLANA_RPC_URL`; an embedding application or a
    test can hand it any `SolanaClient` (a `LiteSvmClient`, say) and, optionally, the payer.
    The payer's key is read at `start`, where a malformed key stops the service with a
    `ConfigError` naming the problem.
    """

    name = "solana"
    job_types = ("nft-mint", "nft-transfer")
    providers = ("solana",)

    def __init__(self, settings: Settings, *, client: SolanaClient | None = None,
                 payer: Keypair | None = None, confirm_timeout_s: float = 60.0,
                 poll_interval_s: float = 0.4) -> None:
        super().__init__()
        self.settings = settings
        self._client = client
        self._payer = payer
        self._confirm_timeout_s = confirm_timeout_s
        self._poll_interval_s = poll_interval_s
        self._opened: SolanaClient | None = None
        self._nfts: TicketNfts | None = None
        if client is None and not settings.solana_rpc_url:
            self.missing.append("SOLANA_RPC_URL")
        if (payer is None and settings.solana_keypair_path is None
                and settings.solana_private_key is None):
            self.missing.append("SOLANA_KEYPAIR_PATH (or SOLANA_PRIVATE_KEY)")

    async def start(self) -> None:
        if self._nfts is not None:
            return
        payer = self._payer or load_payer(self.settings)
        client = self._client
        if client is None:
            url = self.settings.solana_rpc_url
            if not url:
                raise RuntimeError("the solana integration is not configured: "
                                   "set SOLANA_RPC_URL")
            client = self._opened = RpcSolanaClient(url, self.settings.solana_commitment)
        chain = Chain(client, payer, commitment=self.settings.solana_commitment,
                      confirm_timeout_s=self._confirm_timeout_s,
                      poll_interval_s=self._poll_interval_s)
        self._nfts = TicketNfts(chain, PROGRAMS[self.settings.solana_token_program])
        log.info("solana integration ready", extra={
            "event": "integration_started", "integration": self.name,
            "payer": str(payer.pubkey()), "token_program": self.settings.solana_token_program})

    async def close(self) -> None:
        opened, self._opened = self._opened, None
        self._nfts = None
        if opened is not None:
            await opened.close()

    @property
    def nfts(self) -> TicketNfts:
        if self._nfts is None:
            raise RuntimeError("the solana integration is used before start()")
        return self._nfts

    @property
    def chain(self) -> Chain:
        return self.nfts.chain

    def processors(self) -> dict[str, Processor]:
        return {"nft-mint": self.mint, "nft-transfer": self.transfer}

    async def mint(self, job: Job) -> dict[str, Any]:
        return await self.nfts.mint(job)

    async def transfer(self, job: Job) -> dict[str, Any]:
        return await self.nfts.transfer(job)

    async def balance_sol(self) -> float:
        """The payer's balance in SOL, read from the chain."""
        chain = self.chain
        return await chain.balance(chain.payer.pubkey()) / LAMPORTS_PER_SOL


def integration(settings: Settings, engine: Engine) -> Integration:
    return SolanaIntegration(settings)
