"""Ticket NFTs on Solana, through the engine, on LiteSVM and over JSON-RPC.

Every mint and transfer really executes the SPL Token / Token-2022 / Associated Token Account
programs (LiteSVM), and every assertion about ownership reads the chain back: supply, decimals,
mint authority, balances, Token-2022 metadata. The retry scenarios interrupt an attempt after its
transaction landed and check that the next attempt finds the work done instead of doing it again.
The RPC tests run the production transport against a JSON-RPC node on 127.0.0.1 (solana_peer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from solana_peer import (
    COMPLETED,
    FAILED,
    SOL,
    Failure,
    NftService,
    funded_payer,
    holding,
    mint_info,
    nft_service,
    rpc_client,
    rpc_node,
    solana_settings,
)
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.system_program import CreateAccountParams, create_account
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
)
from spl.token.constants import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    MINT_LEN,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
    initialize_mint2,
    mint_to_checked,
    transfer_checked,
)
from spl.token.models import InitializeMint2Params, MintToCheckedParams, TransferCheckedParams

import tickq
from tickq.errors import (
    ConfigError,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
)
from tickq.processors import build_integrations
from tickq.processors.nft import SolanaIntegration
from tickq.processors.solana_chain import Chain
from tickq.processors.solana_client import LiteSvmClient, RpcSolanaClient
from tickq.processors.solana_errors import classify
from tickq.processors.solana_keys import b58decode, custodial_keypair, mint_keypair
from tickq.processors.solana_metadata import metadata_pointer
from tickq.settings import load_settings

PROGRAM_IDS = {"token": TOKEN_PROGRAM_ID, "token-2022": TOKEN_2022_PROGRAM_ID}


def mint_data(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"eventId": "evt-2024-finals", "ticketId": f"tkt-{n}", "seatId": f"A-{n}",
            "userId": "user-1", "venueId": "venue-9", **extra}


def transfer_data(mint: str, to_wallet: Pubkey, **extra: Any) -> dict[str, Any]:
    return {"mintAddress": mint, "fromUserId": "user-1", "toUserId": "user-2",
            "toWallet": str(to_wallet), "ticketId": "tkt-1", **extra}


def last_error(job: tickq.Job) -> tickq.ErrorEntry:
    assert job.errors, f"{job!r} has no error history"
    return job.errors[-1]


@pytest.fixture
def chain() -> LiteSvmClient:
    return LiteSvmClient()


@pytest.fixture
def payer(chain: LiteSvmClient) -> Keypair:
    return funded_payer(chain)


# --- minting --------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["token", "token-2022"])
async def test_mint_gives_the_recipient_the_only_token_of_a_closed_mint(
        chain: LiteSvmClient, payer: Keypair, program: str) -> None:
    recipient = Keypair().pubkey()
    async with nft_service(chain, payer, program=program) as svc:
        job = await svc.run("nft-mint", mint_data(recipient=str(recipient),
                                                  metadata={"section": "A", "row": 3}))
    assert job.state is COMPLETED, job.errors
    result = job.result
    assert result["owner"] == str(recipient) and result["custodial"] is False
    assert result["tokenProgram"] == program
    assert result["tokenProgramId"] == str(PROGRAM_IDS[program])
    assert result["alreadyMinted"] is False
    assert result["transactionSignature"] and result["signatures"] == [
        result["transactionSignature"]]
    assert result["confirmation"] == "finalized" and isinstance(result["slot"], int)
    assert result["metadata"] == {"name": "Ticket tkt-1", "symbol": "TICKET",
                                  "uri": "urn:tickq:ticket:evt-2024-finals:tkt-1",
                                  "attributes": {"section": "A", "row": 3}}

    info = await mint_info(chain, payer, result["mintAddress"])
    assert info.program == PROGRAM_IDS[program]
    assert (info.supply, info.decimals, info.mint_authority, info.freeze_authority) == (
        1, 0, None, None)
    assert await holding(chain, payer, recipient, result["mintAddress"], info.program) == 1
    assert result["tokenAccount"] == str(get_associated_token_address(
        recipient, info.address, info.program))


async def test_token_2022_mint_carries_its_metadata_on_chain(chain: LiteSvmClient,
                                                             payer: Keypair) -> None:
    meta = {"name": "Finals - Seat A-7", "symbol": "FIN24",
            "uri": "https://tickets.example/meta/tkt-7.json", "tier": "gold"}
    async with nft_service(chain, payer, program="token-2022") as svc:
        job = await svc.run("nft-mint", mint_data(7, metadata=meta))
    assert job.state is COMPLETED, job.errors
    assert job.result["metadataOnChain"] is True
    account = await chain.get_account(Pubkey.from_string(job.result["mintAddress"]))
    assert account is not None
    assert metadata_pointer(account.data) == Pubkey.from_string(job.result["mintAddress"])
    info = await mint_info(chain, payer, job.result["mintAddress"])
    assert info.metadata is not None
    assert (info.metadata.name, info.metadata.symbol, info.metadata.uri) == (
        meta["name"], meta["symbol"], meta["uri"])
    assert info.metadata.update_authority == payer.pubkey()


async def test_classic_token_mint_records_metadata_in_the_result_only(
        chain: LiteSvmClient, payer: Keypair) -> None:
    async with nft_service(chain, payer, program="token") as svc:
        job = await svc.run("nft-mint", mint_data(metadata={"name": "Finals"}))
    assert job.state is COMPLETED, job.errors
    assert job.result["metadataOnChain"] is False
    assert job.result["metadata"]["name"] == "Finals"
    assert (await mint_info(chain, payer, job.result["mintAddress"])).metadata is None


async def test_mint_without_recipient_goes_to_the_users_custodial_wallet(
        chain: LiteSvmClient, payer: Keypair) -> None:
    async with nft_service(chain, payer) as svc:
        job = await svc.run("nft-mint", mint_data(), tenant_id="tenant-a")
    assert job.state is COMPLETED, job.errors
    wallet = custodial_keypair(payer, "tenant-a", "user-1").pubkey()
    assert job.result["owner"] == str(wallet) and job.result["custodial"] is True
    assert await holding(chain, payer, wallet, job.result["mintAddress"], TOKEN_PROGRAM_ID) == 1
    # the mint's address is the one derived from the job's idempotency key
    assert job.result["mintAddress"] == str(
        mint_keypair(payer, "tenant-a", job.idempotency_key or "").pubkey())


async def test_running_a_finished_mint_again_returns_the_same_mint_and_sends_nothing(
        chain: LiteSvmClient, payer: Keypair) -> None:
    async with nft_service(chain, payer, program="token-2022") as svc:
        job = await svc.run("nft-mint", mint_data())
        assert job.state is COMPLETED, job.errors
        before = await chain.get_balance(payer.pubkey())
        again = [await svc.solana.mint(job) for _ in range(2)]
    for result in again:
        assert result["mintAddress"] == job.result["mintAddress"]
        assert result["alreadyMinted"] is True and result["signatures"] == []
        assert result["metadataOnChain"] is True
    assert await chain.get_balance(payer.pubkey()) == before  # no fee paid: nothing was sent
    info = await mint_info(chain, payer, job.result["mintAddress"])
    assert (info.supply, info.mint_authority) == (1, None)


@pytest.mark.parametrize("program", ["token", "token-2022"])
async def test_an_attempt_that_dies_after_its_mint_landed_is_retried_without_minting_again(
        chain: LiteSvmClient, payer: Keypair, program: str) -> None:
    landed: list[dict[str, Any]] = []

    def interrupted(solana: SolanaIntegration) -> Mapping[str, Any]:
        async def mint(job: tickq.Job) -> Any:
            result = await solana.mint(job)
            if job.attempts == 1:
                landed.append(result)
                raise ConnectionError("connection reset before the confirmation arrived")
            return result
        return {"nft-mint": mint}

    async with nft_service(chain, payer, program=program, wrap=interrupted) as svc:
        job = await svc.run("nft-mint", mint_data())
    assert job.state is COMPLETED and job.attempts == 2, job.errors
    assert last_error(job).type == "ConnectionError"
    assert landed[0]["alreadyMinted"] is False
    assert job.result["alreadyMinted"] is True
    assert job.result["mintAddress"] == landed[0]["mintAddress"]
    info = await mint_info(chain, payer, job.result["mintAddress"])
    assert (info.supply, info.mint_authority) == (1, None)
    owner = Pubkey.from_string(job.result["owner"])
    assert await holding(chain, payer, owner, job.result["mintAddress"], info.program) == 1


async def _half_made_mint(chain: LiteSvmClient, payer: Keypair, data: dict[str, Any],
                          *, mint_one_to: Pubkey | None = None) -> Pubkey:
    """The mint a job of `data` will use, created as an interrupted older flow would have left
    it: initialised with the payer as mint authority, and (with `mint_one_to`) one token minted,
    but the authority not yet removed."""
    key = f"nft-{data['eventId']}-{data['seatId']}"
    mint_kp = mint_keypair(payer, None, key)
    mint = mint_kp.pubkey()
    steps = [
        create_account(CreateAccountParams(
            from_pubkey=payer.pubkey(), to_pubkey=mint, space=MINT_LEN, owner=TOKEN_PROGRAM_ID,
            lamports=await chain.minimum_balance_for_rent_exemption(MINT_LEN))),
        initialize_mint2(InitializeMint2Params(decimals=0, mint=mint, mint_authority=payer.pubkey(),
                                               freeze_authority=None, program_id=TOKEN_PROGRAM_ID)),
    ]
    if mint_one_to is not None:
        steps += [
            create_idempotent_associated_token_account(payer.pubkey(), mint_one_to, mint),
            mint_to_checked(MintToCheckedParams(
                program_id=TOKEN_PROGRAM_ID, mint=mint, mint_authority=payer.pubkey(), amount=1,
                decimals=0, dest=get_associated_token_address(mint_one_to, mint))),
        ]
    await Chain(chain, payer).submit(steps, [mint_kp], what="setting up a half-made mint")
    return mint


async def test_a_mint_found_with_supply_zero_is_finished_with_exactly_one_token(
        chain: LiteSvmClient, payer: Keypair) -> None:
    recipient = Keypair().pubkey()
    data = mint_data(3, recipient=str(recipient))
    mint = await _half_made_mint(chain, payer, data)
    async with nft_service(chain, payer) as svc:
        job = await svc.run("nft-mint", data)
    assert job.state is COMPLETED, job.errors
    assert job.result["mintAddress"] == str(mint)
    assert job.result["transactionSignature"] is not None
    info = await mint_info(chain, payer, str(mint))
    assert (info.supply, info.mint_authority) == (1, None)
    assert await holding(chain, payer, recipient, str(mint), TOKEN_PROGRAM_ID) == 1


async def test_a_mint_found_with_its_token_but_an_open_authority_only_gets_closed(
        chain: LiteSvmClient, payer: Keypair) -> None:
    recipient = Keypair().pubkey()
    data = mint_data(4, recipient=str(recipient))
    mint = await _half_made_mint(chain, payer, data, mint_one_to=recipient)
    async with nft_service(chain, payer) as svc:
        job = await svc.run("nft-mint", data)
    assert job.state is COMPLETED, job.errors
    info = await mint_info(chain, payer, str(mint))
    assert (info.supply, info.mint_authority) == (1, None)
    assert await holding(chain, payer, recipient, str(mint), TOKEN_PROGRAM_ID) == 1


async def test_distinct_tickets_get_distinct_mints(chain: LiteSvmClient, payer: Keypair) -> None:
    async with nft_service(chain, payer) as svc:
        jobs = [await svc.run("nft-mint", mint_data(n)) for n in range(1, 4)]
    assert all(j.state is COMPLETED for j in jobs)
    assert len({j.result["mintAddress"] for j in jobs}) == 3


async def test_mint_refuses_bad_input_with_a_clear_code(chain: LiteSvmClient,
                                                        payer: Keypair) -> None:
    async with nft_service(chain, payer, program="token-2022") as svc:
        bad_wallet = await svc.run("nft-mint", mint_data(1, recipient="not-a-wallet"))
        bad_name = await svc.run("nft-mint", mint_data(2, metadata={"name": 42}))
        too_big = await svc.run("nft-mint",
                                mint_data(3, metadata={"uri": "https://x/" + "u" * 900}))
    for job, code in ((bad_wallet, "invalid_address"), (bad_name, "invalid_metadata"),
                      (too_big, "transaction_too_large")):
        assert job.state is FAILED and job.attempts == 1, job
        assert (last_error(job).type, last_error(job).code) == ("PermanentError", code)
    assert "not-a-wallet" in last_error(bad_wallet).message
    assert "1232" in last_error(too_big).message


# --- the payer ------------------------------------------------------------------------------


@pytest.mark.parametrize("lamports", [0, 1_000_000], ids=["never-funded", "fee-but-no-rent"])
async def test_a_payer_without_sol_fails_retryably_until_it_is_funded(
        chain: LiteSvmClient, lamports: int) -> None:
    payer = Keypair()
    if lamports:
        chain.airdrop(payer.pubkey(), lamports)
    async with nft_service(chain, payer, max_attempts=2) as svc:
        job = await svc.run("nft-mint", mint_data())
        assert job.state is FAILED and job.attempts == 2
        assert [(e.type, e.code) for e in job.errors] == [
            ("RetryableError", "insufficient_sol")] * 2
        assert str(payer.pubkey()) in last_error(job).message
        assert "fund the wallet" in last_error(job).message

        # An operator tops the wallet up and retries the job from the dead-letter queue; by then
        # a real cluster has moved to a new blockhash (LiteSVM moves only when told to).
        chain.airdrop(payer.pubkey(), 2 * SOL)
        chain.svm.expire_blockhash()
        await svc.engine.retry(job.id)
        job = await svc.engine.wait(job.id, timeout=10)
    assert job.state is COMPLETED, job.errors
    assert (await mint_info(chain, payer, job.result["mintAddress"])).supply == 1


async def test_balance_sol_reads_the_payers_balance_from_the_chain(chain: LiteSvmClient) -> None:
    payer = funded_payer(chain, sol=3)
    async with nft_service(chain, payer) as svc:
        assert await svc.solana.balance_sol() == 3.0
        await svc.run("nft-mint", mint_data())
        spent = 3.0 - await svc.solana.balance_sol()
    assert 0 < spent < 0.01  # a fee and the rent of two small accounts


# --- transfers ------------------------------------------------------------------------------


async def _minted(svc: NftService, n: int = 1, **extra: Any) -> tickq.Job:
    job = await svc.run("nft-mint", mint_data(n, **extra))
    assert job.state is COMPLETED, job.errors
    return job


@pytest.mark.parametrize("program", ["token", "token-2022"])
async def test_transfer_moves_the_ticket_from_the_custodial_wallet_to_the_new_owner(
        chain: LiteSvmClient, payer: Keypair, program: str) -> None:
    buyer = Keypair().pubkey()
    async with nft_service(chain, payer, program=program) as svc:
        minted = await _minted(svc)
        mint = minted.result["mintAddress"]
        sender_sol = await chain.get_balance(Pubkey.from_string(minted.result["owner"]))
        job = await svc.run("nft-transfer", transfer_data(mint, buyer))
    assert job.state is COMPLETED, job.errors
    result = job.result
    assert result["fromWallet"] == minted.result["owner"] and result["toWallet"] == str(buyer)
    assert result["alreadyTransferred"] is False and result["transactionSignature"]
    assert result["tokenProgram"] == program
    program_id = PROGRAM_IDS[program]
    assert await holding(chain, payer, minted.result["owner"], mint, program_id) == 0
    assert await holding(chain, payer, buyer, mint, program_id) == 1
    assert sender_sol == 0  # custodial wallets hold no SOL: the payer paid the fee
    assert (await mint_info(chain, payer, mint)).supply == 1


async def test_running_a_finished_transfer_again_moves_nothing(chain: LiteSvmClient,
                                                               payer: Keypair) -> None:
    buyer = Keypair().pubkey()
    async with nft_service(chain, payer) as svc:
        mint = (await _minted(svc)).result["mintAddress"]
        job = await svc.run("nft-transfer", transfer_data(mint, buyer))
        assert job.state is COMPLETED, job.errors
        again = await svc.solana.transfer(job)
    assert again["alreadyTransferred"] is True and again["signatures"] == []
    assert await holding(chain, payer, buyer, mint, TOKEN_PROGRAM_ID) == 1
    assert await holding(chain, payer, job.result["fromWallet"], mint, TOKEN_PROGRAM_ID) == 0


async def test_an_attempt_that_dies_after_its_transfer_landed_is_retried_as_success(
        chain: LiteSvmClient, payer: Keypair) -> None:
    buyer = Keypair().pubkey()

    def interrupted(solana: SolanaIntegration) -> Mapping[str, Any]:
        async def transfer(job: tickq.Job) -> Any:
            result = await solana.transfer(job)
            if job.attempts == 1:
                raise TimeoutError("no reply from the RPC node")
            return result
        return {"nft-transfer": transfer}

    async with nft_service(chain, payer, wrap=interrupted) as svc:
        mint = (await _minted(svc)).result["mintAddress"]
        job = await svc.run("nft-transfer", transfer_data(mint, buyer))
    assert job.state is COMPLETED and job.attempts == 2, job.errors
    assert job.result["alreadyTransferred"] is True
    assert await holding(chain, payer, buyer, mint, TOKEN_PROGRAM_ID) == 1
    assert await holding(chain, payer, job.result["fromWallet"], mint, TOKEN_PROGRAM_ID) == 0


async def test_transfer_of_a_ticket_the_user_does_not_hold_goes_to_the_dead_letter_queue(
        chain: LiteSvmClient, payer: Keypair) -> None:
    buyer = Keypair().pubkey()
    async with nft_service(chain, payer) as svc:
        mint = (await _minted(svc)).result["mintAddress"]
        stranger = await svc.run("nft-transfer", transfer_data(mint, buyer, fromUserId="user-9"))
        unknown = await svc.run("nft-transfer",
                                transfer_data(str(Keypair().pubkey()), buyer, ticketId="tkt-x"))
        bad_wallet = await svc.run("nft-transfer", {**transfer_data(mint, buyer),
                                                    "toWallet": "0OIl", "transferId": "t-3"})
    for job, code in ((stranger, "not_token_owner"), (unknown, "mint_not_found"),
                      (bad_wallet, "invalid_address")):
        assert job.state is FAILED and job.attempts == 1, job
        assert (last_error(job).type, last_error(job).code) == ("PermanentError", code)
    assert "user-9" in last_error(stranger).message
    assert await holding(chain, payer, buyer, mint, TOKEN_PROGRAM_ID) == 0


async def test_a_ticket_sent_to_a_users_own_wallet_cannot_be_moved_by_the_service(
        chain: LiteSvmClient, payer: Keypair) -> None:
    own_wallet = Keypair().pubkey()
    async with nft_service(chain, payer) as svc:
        mint = (await _minted(svc, recipient=str(own_wallet))).result["mintAddress"]
        job = await svc.run("nft-transfer", transfer_data(mint, Keypair().pubkey()))
    assert job.state is FAILED
    assert last_error(job).code == "not_token_owner"
    assert await holding(chain, payer, own_wallet, mint, TOKEN_PROGRAM_ID) == 1


async def test_mint_and_transfer_on_a_sqlite_journal(chain: LiteSvmClient, payer: Keypair,
                                                     tmp_path: Path) -> None:
    buyer = Keypair().pubkey()
    async with nft_service(chain, payer, url=f"sqlite:///{tmp_path}/tickq.db") as svc:
        minted = await _minted(svc)
        moved = await svc.run("nft-transfer",
                              transfer_data(minted.result["mintAddress"], buyer))
        stored = await svc.engine.get(minted.id)
    assert moved.state is COMPLETED, moved.errors
    assert stored is not None and stored.result == minted.result
    assert await holding(chain, payer, buyer, minted.result["mintAddress"], TOKEN_PROGRAM_ID) == 1


# --- configuration --------------------------------------------------------------------------


async def test_without_settings_the_integration_is_not_configured_and_jobs_say_so() -> None:
    settings = load_settings({"TICKQ_ENV": "test"})
    engine = tickq.Engine(tickq.open_store("memory://"), shutdown_grace_s=1.0)
    integrations = build_integrations(settings, engine,
                                      factories=("tickq.processors.nft:integration",))
    solana = integrations.get("solana")
    assert solana is not None and not solana.configured
    assert solana.missing == ["SOLANA_RPC_URL", "SOLANA_KEYPAIR_PATH (or SOLANA_PRIVATE_KEY)"]
    assert integrations.status()["solana"].status.value == "not_configured"
    integrations.install()
    await integrations.start()
    async with engine:
        job = await engine.enqueue("nft-mint", mint_data())
        job = await engine.wait(job.id, timeout=5)
    await integrations.close()
    assert job.state is FAILED and job.attempts == 1
    assert last_error(job).code == "not_configured"
    assert "SOLANA_RPC_URL" in last_error(job).message


def _keygen_file(path: Path, key: Keypair) -> Path:
    path.write_text(json.dumps(list(bytes(key))))
    return path


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "is not JSON"),
    ("[1, 2, 3]", "holds 3 numbers"),
    ('{"secret": "abc"}', "JSON array of numbers"),
    (json.dumps([300] * 64), "JSON array of numbers"),
    (json.dumps(list(bytes(Keypair()))[:32] + list(bytes(Keypair()))[32:]),
     "public half of the key does not match"),
], ids=["not-json", "short", "object", "out-of-range", "mismatched-halves"])
async def test_a_malformed_keypair_file_stops_the_start_with_a_clear_message(
        tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "payer.json"
    path.write_text(content)
    solana = SolanaIntegration(solana_settings(SOLANA_KEYPAIR_PATH=str(path)))
    assert solana.configured
    with pytest.raises(ConfigError) as caught:
        await solana.start()
    assert problem in caught.value.message and str(path) in caught.value.message


async def test_a_missing_keypair_file_and_a_bad_base58_key_are_named(tmp_path: Path) -> None:
    missing = SolanaIntegration(solana_settings(SOLANA_KEYPAIR_PATH=str(tmp_path / "nope.json")))
    with pytest.raises(ConfigError, match=r"nope\.json.*cannot be read"):
        await missing.start()
    not_b58 = SolanaIntegration(solana_settings(SOLANA_PRIVATE_KEY="0OIl+/"))
    with pytest.raises(ConfigError, match="SOLANA_PRIVATE_KEY is not base58"):
        await not_b58.start()
    short = SolanaIntegration(solana_settings(SOLANA_PRIVATE_KEY="3yZe7d"))
    with pytest.raises(ConfigError, match="SOLANA_PRIVATE_KEY decodes to 4 bytes"):
        await short.start()


def _b58encode(raw: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number, out = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        out = alphabet[digit] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


async def test_the_payer_loads_from_a_keygen_file_or_base58_and_both_must_agree(
        tmp_path: Path, chain: LiteSvmClient) -> None:
    key = Keypair()
    encoded = _b58encode(bytes(key))
    assert b58decode(encoded) == bytes(key)
    path = _keygen_file(tmp_path / "payer.json", key)
    for env in ({"SOLANA_KEYPAIR_PATH": str(path)}, {"SOLANA_PRIVATE_KEY": encoded},
                {"SOLANA_KEYPAIR_PATH": str(path), "SOLANA_PRIVATE_KEY": encoded}):
        solana = SolanaIntegration(solana_settings(**env), client=chain)
        await solana.start()
        assert solana.chain.payer.pubkey() == key.pubkey()
        await solana.close()
    other = _b58encode(bytes(Keypair()))
    clash = SolanaIntegration(solana_settings(SOLANA_KEYPAIR_PATH=str(path),
                                              SOLANA_PRIVATE_KEY=other), client=chain)
    with pytest.raises(ConfigError, match="different keys; set only one"):
        await clash.start()


# --- over JSON-RPC --------------------------------------------------------------------------


async def test_rpc_client_maps_429_and_503_and_no_answer_to_the_engines_errors() -> None:
    async with rpc_node() as node:
        async with rpc_client(node.url) as client:
            node.failures.extend([Failure(429, {"Retry-After": "3"}), Failure(503)])
            with pytest.raises(RateLimited) as limited:
                await client.latest_blockhash()
            assert (limited.value.retry_after, limited.value.provider) == (3.0, "solana")
            with pytest.raises(ProviderError) as down:
                await client.get_balance(Keypair().pubkey())
            assert (down.value.status, down.value.provider, down.value.is_fault) == (
                503, "solana", True)
            assert (await client.get_balance(Keypair().pubkey())) == 0  # the node is back
        port = node.port
    # nothing listens there any more
    async with rpc_client(f"http://127.0.0.1:{port}/") as gone:
        with pytest.raises(ProviderError) as refused:
            await gone.block_height()
    assert refused.value.status is None and refused.value.is_fault
    assert refused.value.provider == "solana"


async def test_mint_and_transfer_over_json_rpc_with_the_service_built_client(
        chain: LiteSvmClient, payer: Keypair) -> None:
    """The production path end to end: the integration builds its own `RpcSolanaClient` from
    SOLANA_RPC_URL and loads the payer from SOLANA_PRIVATE_KEY; the node makes new transactions
    wait two polls at "processed" before they are final."""
    buyer = Keypair().pubkey()
    async with rpc_node(chain, processed_polls=2) as node:
        settings = solana_settings("token-2022", SOLANA_RPC_URL=node.url,
                                   SOLANA_PRIVATE_KEY=_b58encode(bytes(payer)))
        async with nft_service(None, None, settings=settings) as svc:
            assert isinstance(svc.client, RpcSolanaClient)
            minted = await svc.run("nft-mint", mint_data())
            assert minted.state is COMPLETED, minted.errors
            mint = minted.result["mintAddress"]
            node.failures.append(Failure(503))  # one outage: the attempt is retried
            moved = await svc.run("nft-transfer", transfer_data(mint, buyer))
    assert minted.result["confirmation"] == "finalized"
    assert node.methods.count("getSignatureStatuses") >= 3
    assert moved.state is COMPLETED, moved.errors
    assert moved.attempts == 2 and last_error(moved).type == "ProviderError"
    assert await holding(chain, payer, buyer, mint, TOKEN_2022_PROGRAM_ID) == 1
    info = await mint_info(chain, payer, mint)
    assert (info.supply, info.mint_authority) == (1, None) and info.metadata is not None


async def test_preflight_failures_over_rpc_are_classified_like_on_litesvm(
        chain: LiteSvmClient) -> None:
    broke = Keypair()
    async with rpc_node(chain) as node, rpc_client(node.url) as client, nft_service(
            client, broke, max_attempts=1) as svc:
        job = await svc.run("nft-mint", mint_data())
    assert job.state is FAILED
    assert (last_error(job).type, last_error(job).code) == ("RetryableError", "insufficient_sol")
    assert "sendTransaction" in node.methods


async def test_the_factory_path_builds_an_rpc_integration(tmp_path: Path) -> None:
    path = _keygen_file(tmp_path / "payer.json", Keypair())
    settings = solana_settings(SOLANA_KEYPAIR_PATH=str(path))
    engine = tickq.Engine(tickq.open_store("memory://"))
    integrations = build_integrations(settings, engine,
                                      factories=("tickq.processors.nft:integration",))
    solana = integrations.get("solana")
    assert isinstance(solana, SolanaIntegration) and solana.configured
    assert solana.job_types == ("nft-mint", "nft-transfer") and solana.providers == ("solana",)
    await integrations.start()
    try:
        assert isinstance(solana.chain.client, RpcSolanaClient)
    finally:
        await integrations.close()


async def test_a_mint_not_confirmed_in_time_is_retried_and_finds_the_mint(
        chain: LiteSvmClient, payer: Keypair) -> None:
    """The mint lands but stays "processed" past the confirmation timeout: the attempt gives up
    (the mint is not visible at "confirmed" yet); by the retry the cluster has confirmed it,
    and the retry finds it instead of minting again."""
    async with rpc_node(chain, processed_polls=10**6) as node:

        def confirm_before_retry(solana: SolanaIntegration) -> Mapping[str, Any]:
            async def mint(job: tickq.Job) -> Any:
                if job.attempts > 1:
                    node.confirm_all()
                return await solana.mint(job)
            return {"nft-mint": mint}

        async with rpc_client(node.url) as client, nft_service(
                client, payer, confirm_timeout_s=0.05, wrap=confirm_before_retry) as svc:
            job = await svc.run("nft-mint", mint_data())
    assert job.state is COMPLETED and job.attempts == 2, job.errors
    assert (last_error(job).type, last_error(job).code) == ("RetryableError", "not_confirmed")
    assert job.result["alreadyMinted"] is True
    assert node.methods.count("sendTransaction") == 1
    assert (await mint_info(chain, payer, job.result["mintAddress"])).supply == 1


async def test_a_dropped_transaction_expires_and_the_next_attempt_mints(
        chain: LiteSvmClient, payer: Keypair) -> None:
    async with rpc_node(chain) as node:
        node.drop = 1
        async with rpc_client(node.url) as client, nft_service(client, payer) as svc:
            job = await svc.run("nft-mint", mint_data())
    assert job.state is COMPLETED and job.attempts == 2, job.errors
    assert (last_error(job).type, last_error(job).code) == ("RetryableError", "blockhash_expired")
    assert job.result["alreadyMinted"] is False
    assert node.methods.count("sendTransaction") == 2
    assert (await mint_info(chain, payer, job.result["mintAddress"])).supply == 1


async def test_a_token_program_refusal_on_chain_is_a_permanent_error(
        chain: LiteSvmClient, payer: Keypair) -> None:
    """A transfer out of a token account that holds nothing, sent past the processor's own
    checks: the program refuses, and no retry can change that."""
    async with nft_service(chain, payer) as svc:
        mint = Pubkey.from_string((await _minted(svc)).result["mintAddress"])
    empty_owner = Keypair()
    empty = get_associated_token_address(empty_owner.pubkey(), mint)
    buyer = Keypair().pubkey()
    steps = [
        create_idempotent_associated_token_account(payer.pubkey(), empty_owner.pubkey(), mint),
        create_idempotent_associated_token_account(payer.pubkey(), buyer, mint),
        transfer_checked(TransferCheckedParams(
            program_id=TOKEN_PROGRAM_ID, source=empty, mint=mint, amount=1, decimals=0,
            dest=get_associated_token_address(buyer, mint), owner=empty_owner.pubkey())),
    ]
    with pytest.raises(PermanentError) as refused:
        await Chain(chain, payer).submit(steps, [empty_owner], what="a transfer of nothing")
    assert refused.value.code == "token_insufficient_funds"
    assert "does not hold the token" in refused.value.message
    assert "instruction 2 (SPL Token program)" in refused.value.message


@pytest.mark.parametrize(("err", "expected"), [
    (TransactionErrorInstructionError(0, InstructionErrorCustom(4)),
     (PermanentError, "token_owner_mismatch")),
    (TransactionErrorInstructionError(1, InstructionErrorCustom(0)),
     (PermanentError, "associated_token_invalid_owner")),
    (TransactionErrorInstructionError(2, InstructionErrorCustom(1)),
     (RetryableError, "insufficient_sol")),
    (TransactionErrorInstructionError(2, InstructionErrorCustom(0)),
     (RetryableError, "account_in_use")),
    (TransactionErrorInstructionError(0, InstructionErrorFieldless.IllegalOwner),
     (PermanentError, "instruction_illegal_owner")),
    (TransactionErrorFieldless.BlockhashNotFound, (RetryableError, "blockhash_expired")),
    (TransactionErrorFieldless.InsufficientFundsForFee, (RetryableError, "insufficient_sol")),
    (TransactionErrorFieldless.ClusterMaintenance, (RetryableError, "cluster_maintenance")),
    (TransactionErrorFieldless.SignatureFailure, (PermanentError, "transaction_signature_failure")),
    (TransactionErrorInsufficientFundsForRent(0), (RetryableError, "insufficient_sol")),
], ids=lambda v: v[1] if isinstance(v, tuple) else None)
def test_classification_of_runtime_errors(err: Any, expected: tuple[type, str]) -> None:
    payer = Keypair().pubkey()
    programs = [TOKEN_PROGRAM_ID, ASSOCIATED_TOKEN_PROGRAM_ID, SYSTEM_PROGRAM_ID]
    error = classify(err, programs=programs, accounts=[payer], payer=payer, what="a mint")
    assert (type(error), error.code) == expected
    assert error.message.startswith("a mint") or error.message.startswith("the payer")
