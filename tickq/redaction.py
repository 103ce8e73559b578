"""Removing personal data and secrets from text and values before they are logged.

What goes (and what it becomes):

* email addresses (`[email]`), with every character RFC 5322 allows before the `@`;
* phone numbers (`[phone]`): a `+` and 8 to 15 digits, separators allowed, or the North American
  `(415) 555-0100` / `415-555-0100` shapes; a run of digits with no `+` and no separators is left
  alone (it is a timestamp or an amount far more often than a phone number);
* card numbers (`[card]`): 13 to 19 digits, single spaces or dashes between them, that pass the
  Luhn check and start with 2-6 (the payment networks' industries): ids, amounts and epoch
  milliseconds (which start with 1) are kept;
* bearer and basic credentials (`Bearer [token]`), JWTs (`[jwt]`), and the value after a
  secret-looking key in text (`password=[secret]`, `"api_key": "[secret]"`);
* in structured values, the whole value of a key whose name says it is a secret (`password`,
  `secret`, `token`, `authorization`, `api_key`, `private_key`, `cookie`, `credentials`, ...).

Every pattern starts only at the start of a run of the characters it matches, and each is tried
only when a cheap test says it could match, so a long line costs a few linear scans.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping
from typing import Any

SECRET = "[secret]"
#: nested values deeper than this are flattened to text and redacted as text
MAX_DEPTH = 8

_EMAIL_LOCAL = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-"
_EMAIL = re.compile(rf"(?<![{_EMAIL_LOCAL}])[{_EMAIL_LOCAL}]+@[A-Za-z0-9][A-Za-z0-9-]*"
                    r"(?:\.[A-Za-z0-9-]+)+")
_JWT = re.compile(r"(?<![\w-])eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_AUTH = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{6,}")
_KEYWORD = (r"(?:pass(?:word|wd)?|pwd|secret|token|authorization|api[_-]?key|apikey|"
            r"(?:private|secret|access)[_-]?key|credentials?|cookie)")
_KEY_VALUE = re.compile(rf"(?i)(\b[\w-]*{_KEYWORD})(\"?'?\s*[:=]\s*\"?'?)([^\s\"',;&}}\]]+)")
_CARD = re.compile(r"(?<![\w+.-])\d(?:[ -]?\d){12,18}(?![\w-])")
_PHONE_INTL = re.compile(r"(?<![\w+])\+(?:[\s().-]{0,2}\d){8,15}(?![\w-])")
#: what must be in a text for the credential patterns, and the number patterns, to apply
_HINT = re.compile(r"(?i)pass|pwd|secret|token|auth|key|cred|cookie|bearer|basic")
_DIGIT = re.compile(r"\d")
_PHONE_NANP = re.compile(r"(?<![\w.+-])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])")

#: words of a key name that make its value a secret, and pairs of consecutive words that do
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "authorization",
                           "apikey", "cookie", "credential", "credentials", "jwt", "auth",
                           "privatekey", "passphrase"})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("secret", "key"),
                           ("access", "key"), ("signing", "key")})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _card(match: re.Match[str]) -> str:
    digits = match.group(0).replace(" ", "").replace("-", "")
    return "[card]" if _card_number(digits) else match.group(0)


def redact_text(text: str) -> str:
    """`text` with every email, phone number, card number, credential and secret value
    replaced (see the module's doc)."""
    if not text:
        return text
    if "eyJ" in text:
        text = _JWT.sub("[jwt]", text)
    hint = _HINT.search(text)
    if hint is not None:
        text = _AUTH.sub(r"\1 [token]", text)
        if "=" in text or ":" in text:
            text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{SECRET}", text)
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if _DIGIT.search(text) is not None:
        text = _CARD.sub(_card, text)
        if "+" in text:
            text = _PHONE_INTL.sub("[phone]", text)
        text = _PHONE_NANP.sub("[phone]", text)
    return text


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a field or key named `name` holds a secret: one of its words (camelCase,
    snake_case, kebab-case) is `password`, `secret`, `token`, ..., or two consecutive words are
    `api key`, `private key`, ... ("tokensAvailable" and "tokenizer" are not secrets)."""
    words = [w.lower() for w in _WORD.findall(name)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def redact_value(value: Any, depth: int = 0) -> Any:
    """`value` with its text redacted, recursively: strings, mapping values (a secret key's
    whole value replaced), list and tuple items. Numbers long enough to be a card number are
    checked as one; anything else is logged as its text, so it is redacted as text."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int):
        return "[card]" if value >= 10**12 and _card_number(str(value)) else value
    if depth >= MAX_DEPTH:
        return redact_text(str(value))
    if isinstance(value, Mapping):
        return {k: SECRET if isinstance(k, str) and is_secret_key(k)
                else redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    return redact_text(str(value))


__all__ = ["SECRET", "is_secret_key", "luhn_ok", "redact_text", "redact_value"]
