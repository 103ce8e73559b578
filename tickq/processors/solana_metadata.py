"""Ticket metadata on chain, through Token-2022's metadata pointer and token metadata extensions.

A Token-2022 mint can carry its own name, symbol and URI: the metadata pointer extension says
"my metadata is in me", and the token metadata extension holds it, in the mint account. No
second program (Metaplex) is involved, so the metadata is written in the same transaction that
creates and mints the ticket. The installed `spl` package has no builders for these two
extensions, so they are built here from their published layouts (spl-token-2022
`MetadataPointerInstruction::Initialize` and the spl-token-metadata-interface `Initialize`
instruction) and read back with the TLV layout Token-2022 stores extensions in.

The classic SPL Token program has no metadata of its own; with it, the ticket's metadata is
recorded in the job's result only.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID

#: a Token-2022 account with extensions is padded to a token account's size before its type byte
BASE_ACCOUNT_LEN = 165
ACCOUNT_TYPE_MINT = 1
EXT_METADATA_POINTER = 18
EXT_TOKEN_METADATA = 19
_TLV_HEADER = 4
#: a mint with the metadata pointer extension (what `create_account` allocates; the metadata
#: itself is appended by the token metadata instruction, which reallocates the account)
MINT_WITH_POINTER_LEN = BASE_ACCOUNT_LEN + 1 + _TLV_HEADER + 64

_METADATA_POINTER_INSTRUCTION = 39
_METADATA_POINTER_INITIALIZE = 0
_INITIALIZE_METADATA = hashlib.sha256(
    b"spl_token_metadata_interface:initialize_account").digest()[:8]


@dataclass(frozen=True, slots=True)
class TokenMetadata:
    name: str
    symbol: str
    uri: str
    update_authority: Pubkey | None = None
    mint: Pubkey | None = None
    additional: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "symbol": self.symbol, "uri": self.uri,
                "additional": dict(self.additional)}


def _borsh_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def metadata_len(name: str, symbol: str, uri: str) -> int:
    """Bytes the token metadata extension takes in the mint, its TLV header included."""
    value = 32 + 32 + sum(len(_borsh_str(s)) for s in (name, symbol, uri)) + 4
    return _TLV_HEADER + value


def initialize_metadata_pointer(mint: Pubkey, authority: Pubkey | None,
                                metadata_address: Pubkey) -> Instruction:
    """Point the mint's metadata at `metadata_address` (the mint itself, here). Must come
    before `InitializeMint`."""
    data = (bytes([_METADATA_POINTER_INSTRUCTION, _METADATA_POINTER_INITIALIZE])
            + bytes(authority or Pubkey.default()) + bytes(metadata_address))
    return Instruction(TOKEN_2022_PROGRAM_ID, data, [AccountMeta(mint, False, True)])


def initialize_token_metadata(mint: Pubkey, update_authority: Pubkey, mint_authority: Pubkey,
                              name: str, symbol: str, uri: str) -> Instruction:
    """Write name, symbol and URI into the mint. The mint authority signs; the mint account must
    already hold the lamports for the larger size (the program reallocates, it does not pay)."""
    data = _INITIALIZE_METADATA + _borsh_str(name) + _borsh_str(symbol) + _borsh_str(uri)
    accounts = [AccountMeta(mint, False, True), AccountMeta(update_authority, False, False),
                AccountMeta(mint, False, False), AccountMeta(mint_authority, True, False)]
    return Instruction(TOKEN_2022_PROGRAM_ID, data, accounts)


def extensions(data: bytes) -> dict[int, bytes]:
    """A Token-2022 mint's extensions: type -> value bytes (empty for a mint without any)."""
    if len(data) <= BASE_ACCOUNT_LEN or data[BASE_ACCOUNT_LEN] != ACCOUNT_TYPE_MINT:
        return {}
    found: dict[int, bytes] = {}
    offset = BASE_ACCOUNT_LEN + 1
    while offset + _TLV_HEADER <= len(data):
        kind, length = struct.unpack_from("<HH", data, offset)
        if kind == 0:
            break
        start = offset + _TLV_HEADER
        found[kind] = data[start:start + length]
        offset = start + length
    return found


def metadata_pointer(data: bytes) -> Pubkey | None:
    """Where the mint says its metadata lives, or None without the extension."""
    value = extensions(data).get(EXT_METADATA_POINTER)
    if value is None or len(value) < 64:
        return None
    address = Pubkey.from_bytes(value[32:64])
    return None if address == Pubkey.default() else address


def read_token_metadata(data: bytes) -> TokenMetadata | None:
    """The token metadata stored in a Token-2022 mint, or None when it has none."""
    value = extensions(data).get(EXT_TOKEN_METADATA)
    if value is None or len(value) < 64:
        return None
    authority = Pubkey.from_bytes(value[:32])
    mint = Pubkey.from_bytes(value[32:64])
    offset = 64

    def text() -> str:
        nonlocal offset
        (length,) = struct.unpack_from("<I", value, offset)
        raw = value[offset + 4:offset + 4 + length]
        offset += 4 + length
        return raw.decode("utf-8", errors="replace")

    name, symbol, uri = text(), text(), text()
    additional: dict[str, str] = {}
    if offset + 4 <= len(value):
        (count,) = struct.unpack_from("<I", value, offset)
        offset += 4
        for _ in range(count):
            key = text()
            additional[key] = text()
    return TokenMetadata(name=name, symbol=symbol, uri=uri,
                         update_authority=None if authority == Pubkey.default() else authority,
                         mint=mint, additional=additional)
