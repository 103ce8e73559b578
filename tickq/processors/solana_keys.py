"""The payer's keypair, and the keypairs derived from it.

The payer is the one key the service holds: it pays every fee and rent, is the mint authority for
the moment a ticket is minted, and its secret seeds every other key, so that nothing else needs
storing. A mint's address follows from the job's idempotency key (a retried job finds the mint
its earlier attempt made), and a custodial wallet follows from tenant and user id (the service
can sign a transfer out of it later). Losing the payer's secret loses control of every custodial
wallet, so the key file deserves the care of a bank key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from solders.keypair import Keypair

from tickq.errors import ConfigError
from tickq.settings import Settings

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58decode(text: str) -> bytes:
    """Bytes of a base58 string (Bitcoin alphabet, as Solana uses); ValueError names the first
    character that is not base58."""
    number = 0
    for position, char in enumerate(text):
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise ValueError(f"character {position + 1} ({char!r}) is not base58")
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def keypair_from_file(path: Path) -> Keypair:
    """The keypair in a solana-keygen file: a JSON array of the 64 bytes secret + public key."""
    where = f"SOLANA_KEYPAIR_PATH ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not text; expected the JSON array of 64 numbers "
                          "that solana-keygen writes") from None
    try:
        numbers = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not JSON ({exc.msg} at line {exc.lineno}); expected the "
                          "JSON array of 64 numbers that solana-keygen writes") from None
    if not isinstance(numbers, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 255 for n in numbers):
        raise ConfigError(f"{where} must hold a JSON array of numbers from 0 to 255 "
                          "(the format solana-keygen writes)")
    if len(numbers) != 64:
        raise ConfigError(f"{where} holds {len(numbers)} numbers; a Solana keypair file holds 64 "
                          "(32 of secret key, 32 of public key)")
    return _from_64(bytes(numbers), where)


def keypair_from_base58(text: str) -> Keypair:
    """The keypair in a base58 secret key (64 bytes secret + public key, as wallets export it,
    or a bare 32-byte seed)."""
    where = "SOLANA_PRIVATE_KEY"
    try:
        raw = b58decode(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{where} is not base58: {exc}") from None
    if len(raw) == 32:
        return Keypair.from_seed(raw)
    if len(raw) != 64:
        raise ConfigError(f"{where} decodes to {len(raw)} bytes; a Solana secret key is 64 bytes "
                          "(or a 32-byte seed)")
    return _from_64(raw, where)


def _from_64(raw: bytes, where: str) -> Keypair:
    try:
        return Keypair.from_bytes(raw)
    except ValueError:
        raise ConfigError(f"{where}: the public half of the key does not match its secret half "
                          "(is the file or value truncated or edited?)") from None


def load_payer(settings: Settings) -> Keypair:
    """The payer keypair named by the settings. When both the file and the base58 key are set,
    they must be the same key: two different wallets configured at once is a mistake to stop
    at start, not a choice to make silently."""
    from_file = (keypair_from_file(settings.solana_keypair_path)
                 if settings.solana_keypair_path is not None else None)
    from_env = (keypair_from_base58(settings.solana_private_key.get_secret_value())
                if settings.solana_private_key is not None else None)
    if from_file is not None and from_env is not None and from_file.pubkey() != from_env.pubkey():
        raise ConfigError(f"SOLANA_KEYPAIR_PATH ({from_file.pubkey()}) and SOLANA_PRIVATE_KEY "
                          f"({from_env.pubkey()}) are different keys; set only one")
    payer = from_file or from_env
    if payer is None:
        raise ConfigError("set SOLANA_KEYPAIR_PATH or SOLANA_PRIVATE_KEY to the payer's key")
    return payer


def _derive(purpose: bytes, payer: Keypair, *parts: str) -> Keypair:
    # Every part is length-prefixed, so ("ab", "c") and ("a", "bc") never derive the same key.
    material = bytearray(purpose)
    material += payer.secret()
    for part in parts:
        encoded = part.encode("utf-8")
        material += len(encoded).to_bytes(4, "big") + encoded
    return Keypair.from_seed(hashlib.sha256(bytes(material)).digest())


def mint_keypair(payer: Keypair, tenant_id: str | None, idempotency_key: str) -> Keypair:
    """The mint account's keypair for one ticket: the same for every attempt of its job."""
    return _derive(b"tickq-mint", payer, tenant_id or "", idempotency_key)


def custodial_keypair(payer: Keypair, tenant_id: str | None, user_id: str) -> Keypair:
    """The wallet the service keeps a user's tickets in when the user named none of their own."""
    return _derive(b"tickq-custody", payer, tenant_id or "", user_id)
