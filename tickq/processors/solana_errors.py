"""What a failed Solana transaction means for the job that sent it.

The runtime reports one error per transaction: either about the transaction as a whole (stale
blockhash, no funds for the fee) or about one instruction, by index, with the program's own
code. The index tells which program failed, and the program tells what its code means. The rule:

* the payer lacks SOL (fee or rent) -> `RetryableError` "insufficient_sol": no program is at
  fault, and the job succeeds once someone tops the wallet up (the balance gauge alerts on it);
* the blockhash expired or the cluster is busy -> `RetryableError`: sending again can land;
* a program refused the instruction (a token account without the token, the wrong owner, a
  frozen account, a mismatched mint) -> `PermanentError`: the same request fails the same way
  however often it is sent, so it goes to the dead-letter queue with the program's reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM_ID
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
    TransactionErrorType,
)
from spl.token.constants import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)

from tickq.errors import PermanentError, ProcessorError, RetryableError

INSUFFICIENT_SOL = "insufficient_sol"

#: spl-token `TokenError`, shared by Token and Token-2022 (which adds codes after these)
TOKEN_ERRORS: tuple[str, ...] = (
    "not_rent_exempt", "insufficient_funds", "invalid_mint", "mint_mismatch", "owner_mismatch",
    "fixed_supply", "already_in_use", "invalid_number_of_provided_signers",
    "invalid_number_of_required_signers", "uninitialized_state", "native_not_supported",
    "non_native_has_balance", "invalid_instruction", "invalid_state", "overflow",
    "authority_type_not_supported", "mint_cannot_freeze", "account_frozen",
    "mint_decimals_mismatch", "non_native_not_supported",
)
#: what a token error means in words, for the ones a ticket transfer or mint can meet
TOKEN_ERROR_TEXT: dict[str, str] = {
    "insufficient_funds": "the source token account does not hold the token",
    "owner_mismatch": "the token account belongs to another wallet",
    "mint_mismatch": "the token account is for another mint",
    "account_frozen": "the token account is frozen",
    "fixed_supply": "the mint's supply is fixed (its mint authority was removed)",
    "uninitialized_state": "the account is not initialised",
    "mint_decimals_mismatch": "the mint's decimals differ from the ones given",
}
#: system program `SystemError`
SYSTEM_ERRORS: tuple[str, ...] = (
    "account_already_in_use", "result_with_negative_lamports", "invalid_program_id",
    "invalid_account_data_length", "max_seed_length_exceeded", "address_with_seed_mismatch",
    "nonce_no_recent_blockhashes", "nonce_blockhash_not_expired", "nonce_unexpected_blockhash",
)
#: associated token account program `AssociatedTokenAccountError`
ATA_ERRORS: tuple[str, ...] = ("invalid_owner",)

#: transaction-level errors that may clear by themselves: send again later
_TRANSIENT = frozenset({
    "AccountInUse", "AccountLoadedTwice", "ClusterMaintenance", "WouldExceedMaxBlockCostLimit",
    "WouldExceedMaxAccountCostLimit", "WouldExceedAccountDataBlockLimit",
    "WouldExceedAccountDataTotalLimit", "WouldExceedMaxVoteCostLimit", "TooManyAccountLocks",
    "ResanitizationNeeded", "UnbalancedTransaction", "ProgramCacheHitMaxLimit",
})


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _variant(value: object) -> str:
    """'InstructionErrorFieldless.InvalidAccountData' -> 'InvalidAccountData'."""
    return str(value).rsplit(".", 1)[-1]


def _program_name(program: Pubkey) -> str:
    if program == SYSTEM_PROGRAM_ID:
        return "system program"
    if program == TOKEN_PROGRAM_ID:
        return "SPL Token program"
    if program == TOKEN_2022_PROGRAM_ID:
        return "Token-2022 program"
    if program == ASSOCIATED_TOKEN_PROGRAM_ID:
        return "Associated Token Account program"
    return f"program {program}"


def insufficient_sol(payer: Pubkey, what: str, balance: int | None = None) -> RetryableError:
    held = f" (it holds {balance / 1e9:.9f} SOL)" if balance is not None else ""
    return RetryableError(
        f"the payer {payer} cannot pay the fees and rent of {what}{held}: fund the wallet; "
        "the job is retried with backoff", code=INSUFFICIENT_SOL)


def classify(err: TransactionErrorType, *, programs: Sequence[Pubkey],
             accounts: Sequence[Pubkey], payer: Pubkey, what: str,
             logs: Sequence[str] = ()) -> ProcessorError:
    """The processor error for a failed transaction.

    `programs[i]` is the program of instruction i, `accounts` the message's account keys (the
    payer first); `what` names the transaction in messages ("the mint of ticket T-1").
    """
    if isinstance(err, TransactionErrorInstructionError):
        index = err.index
        program = programs[index] if 0 <= index < len(programs) else None
        return _instruction_error(err.err, index, program, payer, what, logs)
    if isinstance(err, TransactionErrorInsufficientFundsForRent):
        index = err.account_index
        account = accounts[index] if 0 <= index < len(accounts) else None
        if account == payer:
            return insufficient_sol(payer, what)
        return PermanentError(f"{what}: account {account} would be left below the rent-exempt "
                              "minimum", code="insufficient_funds_for_rent")
    if isinstance(err, TransactionErrorFieldless):
        name = _variant(err)
        if name in ("InsufficientFundsForFee", "AccountNotFound"):
            # AccountNotFound is about the fee payer: an address never funded does not exist.
            return insufficient_sol(payer, what)
        if name == "BlockhashNotFound":
            return RetryableError(f"{what}: the blockhash expired before the transaction landed",
                                  code="blockhash_expired")
        if name == "AlreadyProcessed":
            return RetryableError(f"{what}: this exact transaction was already processed; the "
                                  "next attempt reads what it did", code="already_processed")
        if name in _TRANSIENT:
            return RetryableError(f"{what}: the cluster refused the transaction for now "
                                  f"({name})", code=_snake(name))
        return PermanentError(f"{what}: the transaction was rejected ({name})",
                              code=f"transaction_{_snake(name)}")
    return RetryableError(f"{what}: the transaction failed ({err})", code="transaction_error")


def _instruction_error(err: object, index: int, program: Pubkey | None, payer: Pubkey,
                       what: str, logs: Sequence[str]) -> ProcessorError:
    where = f"instruction {index} ({_program_name(program) if program else 'unknown program'})"
    detail = _last_program_log(logs)
    if isinstance(err, InstructionErrorCustom):
        code = err.code
        if program == SYSTEM_PROGRAM_ID:
            name = SYSTEM_ERRORS[code] if code < len(SYSTEM_ERRORS) else f"error_{code}"
            if name == "result_with_negative_lamports":
                return insufficient_sol(payer, what)
            if name == "account_already_in_use":
                return RetryableError(f"{what}: {where}: the account already exists (an earlier "
                                      "attempt's transaction landed)", code="account_in_use")
            return PermanentError(f"{what}: {where} failed: {name}{detail}",
                                  code=f"system_{name}")
        if program in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
            name = TOKEN_ERRORS[code] if code < len(TOKEN_ERRORS) else f"error_{code}"
            text = TOKEN_ERROR_TEXT.get(name, name.replace("_", " "))
            return PermanentError(f"{what}: {where} refused: {text}{detail}",
                                  code=f"token_{name}")
        if program == ASSOCIATED_TOKEN_PROGRAM_ID:
            name = ATA_ERRORS[code] if code < len(ATA_ERRORS) else f"error_{code}"
            return PermanentError(f"{what}: {where} refused: {name.replace('_', ' ')}{detail}",
                                  code=f"associated_token_{name}")
        return PermanentError(f"{what}: {where} failed with custom error {code}{detail}",
                              code="program_error")
    if isinstance(err, InstructionErrorFieldless):
        name = _variant(err)
        if name == "InsufficientFunds" and program == SYSTEM_PROGRAM_ID:
            return insufficient_sol(payer, what)
        return PermanentError(f"{what}: {where} failed: {name}{detail}",
                              code=f"instruction_{_snake(name)}")
    return PermanentError(f"{what}: {where} failed: {err}{detail}", code="instruction_error")


def _last_program_log(logs: Sequence[str]) -> str:
    """The program's last own log line (its reason, when it gave one), for the message."""
    for line in reversed(logs):
        if line.startswith("Program log: ") and "Instruction:" not in line:
            return f" ({line.removeprefix('Program log: ')})"
    return ""
