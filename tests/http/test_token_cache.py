"""Verified tokens are remembered, but never past their own validity."""

from __future__ import annotations

import time

import pytest

from tickq.errors import AuthenticationError
from tickq.http import auth
from tickq.http.auth import TokenVerifier, mint_token

SECRET = "s" * 40


def test_a_remembered_token_is_still_refused_once_it_expires() -> None:
    verifier = TokenVerifier(SECRET, ["HS256"], leeway_s=0)
    issued = int(time.time()) - 58  # expires one to two seconds from now
    token = mint_token(SECRET, role="admin", tenant_id="t1", user_id="u1", ttl_s=60,
                       now=issued)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # answered from memory

    time.sleep(max(0.0, issued + 60 - time.time()) + 0.2)
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    assert info.value.code == "token_expired"


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    verifier = TokenVerifier(SECRET, ["HS256"])
    token = mint_token(SECRET, role="user", tenant_id="t1", user_id="u1")
    verifier.verify(token)
    head, payload, signature = token.split(".")
    forged = ".".join((head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
    with pytest.raises(AuthenticationError):
        verifier.verify(forged)


def test_the_memory_of_tokens_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "MAX_CACHED_TOKENS", 3)
    verifier = TokenVerifier(SECRET, ["HS256"])
    tokens = [mint_token(SECRET, role="user", tenant_id="t1", user_id=f"u{i}") for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    assert tokens[0] not in verifier._verified and tokens[-1] in verifier._verified
