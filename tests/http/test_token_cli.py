"""`python -m tickq token`: mints a token the API accepts, or says why it cannot."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpkit import SECRET

from tickq.cli import browsable, main
from tickq.http.auth import verifier_from_settings
from tickq.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    for var in ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "TICKQ_ENV"):
        monkeypatch.delenv(var, raising=False)


def test_token_is_minted_with_the_configured_secret(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("JWT_ISSUER", "tickq-cli")
    code = main(["token", "--role", "venue_admin", "--tenant", "t1", "--user", "u7",
                 "--venues", "v1,v2", "--ttl", "120"])
    assert code == 0
    tok = capsys.readouterr().out.strip()
    principal = verifier_from_settings(load_settings({"JWT_SECRET": SECRET,
                                                      "JWT_ISSUER": "tickq-cli"})).verify(tok)
    assert (principal.role, principal.tenant_id, principal.user_id) == ("venue_admin", "t1", "u7")
    assert principal.venues == {"v1", "v2"}
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"], issuer="tickq-cli")
    assert claims["exp"] - claims["iat"] == 120


def test_token_without_a_secret_says_it_needs_jwt_secret(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--role", "admin", "--tenant", "t1"]) == 2
    assert "JWT_SECRET is not set" in capsys.readouterr().err


def test_token_with_only_a_public_key_cannot_mint(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    monkeypatch.setenv("JWT_PUBLIC_KEY", key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    assert main(["token", "--role", "admin", "--tenant", "t1"]) == 2
    err = capsys.readouterr().err
    assert "cannot mint" in err and "JWT_PUBLIC_KEY" in err and "RS256" in err


@pytest.mark.parametrize("args", [
    ["--role", "root", "--tenant", "t1"],
    ["--role", "admin"],
    ["--role", "admin", "--tenant", "t1", "--ttl", "0"],
    ["--role", "admin", "--tenant", " "],
])
def test_token_arguments_are_checked(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    with pytest.raises(SystemExit) as exited:
        main(["token", *args])
    assert exited.value.code == 2


def test_a_venue_admin_token_needs_venues(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    assert main(["token", "--role", "venue_admin", "--tenant", "t1"]) == 2
    assert "--venues" in capsys.readouterr().err


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"),
                                             ("::1", "[::1]"), ("127.0.0.1", "127.0.0.1"),
                                             ("tickq.internal", "tickq.internal")])
def test_the_dashboard_address_printed_in_development_can_be_opened(host: str,
                                                                    shown: str) -> None:
    assert browsable(host) == shown
