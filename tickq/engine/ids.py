"""Job ids: 26-character ULIDs (Crockford base32), monotonic within one process.

Sortable by creation time, so "then by id" in the dispatch order is "then by age", and a B-tree on
the id column appends instead of splitting pages at random.
"""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MASK = (1 << _RANDOM_BITS) - 1


def _encode(value: int) -> str:
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


class IdGenerator:
    """Monotonic ULIDs: within one millisecond the random part counts up instead of re-drawing."""

    __slots__ = ("_last_ms", "_last_rand")

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_rand = 0

    def new(self, now: float | None = None) -> str:
        ms = int((time.time() if now is None else now) * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._last_rand = (self._last_rand + 1) & _RANDOM_MASK
        else:
            self._last_ms = ms
            # Keep the top bit clear so a millisecond's worth of increments cannot wrap.
            self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        return _encode((ms << _RANDOM_BITS) | self._last_rand)
