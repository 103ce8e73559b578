"""Authentication attacks: every way a token can be missing, forged or out of date is a 401;
the wrong role is a 403. Plus the configuration rules that make those guarantees hold."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from httpkit import JOBS, SECRET, Api, auth, serve_api, token

from tickq.errors import ConfigError
from tickq.http.auth import development_credentials, verifier_from_settings
from tickq.settings import load_settings


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u1", "tenantId": "t1", "role": "admin", "iat": now, "exp": now + 300,
            **extra}


def forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token assembled by hand (PyJWT refuses to make the malicious ones)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def status_of(api: Api, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp = await api.client.get(JOBS, headers=headers)
    return resp.status, await resp.json()


# --- HS256 -----------------------------------------------------------------------------------


async def test_a_valid_token_is_accepted(api: Api) -> None:
    assert (await status_of(api, auth()))[0] == 200


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_token"),
    ({"Authorization": ""}, "missing_token"),
    ({"Authorization": "Bearer"}, "invalid_token"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "invalid_token"),
    ({"Authorization": "Bearer not-a-jwt"}, "invalid_token"),
    ({"Authorization": "Bearer a.b.c"}, "invalid_token"),
    ({"Authorization": "Bearer " + "a" * 2500 + "." + "b" * 2500 + ".c"}, "invalid_token"),
])
async def test_missing_or_malformed_tokens_are_401(api: Api, headers: dict[str, str],
                                                   code: str) -> None:
    status, body = await status_of(api, headers)
    assert status == 401
    assert (body["error"], body["code"]) == ("Unauthorized", code)
    assert set(body) == {"error", "code", "message", "requestId"}


async def test_401_carries_a_bearer_challenge(api: Api) -> None:
    resp = await api.client.get(JOBS)
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="tickq"'
    resp = await api.client.get(JOBS, headers=bearer("x.y.z"))
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused(api: Api, alg: str) -> None:
    tok = forge({"alg": alg, "typ": "JWT"}, claims(), None)
    assert (await status_of(api, bearer(tok)))[0] == 401
    tok = forge({"alg": alg, "typ": "JWT"}, claims(), None).rsplit(".", 1)[0] + "."
    assert (await status_of(api, bearer(tok)))[0] == 401


async def test_wrong_secret_and_tampered_payload_are_refused(api: Api) -> None:
    assert (await status_of(api, bearer(token(secret="another-secret" * 4))))[0] == 401
    header, _, sig = token(role="user").split(".")
    tampered = f"{header}.{b64(json.dumps(claims(role='admin')).encode())}.{sig}"
    status, body = await status_of(api, bearer(tampered))
    assert (status, body["code"]) == (401, "invalid_token")
    assert "signature" in body["message"]


@pytest.mark.parametrize(("payload", "code"), [
    ({"exp": int(time.time()) - 120}, "token_expired"),
    ({"nbf": int(time.time()) + 600}, "invalid_token"),
    ({"iat": int(time.time()) + 600}, "invalid_token"),
])
async def test_out_of_date_tokens_are_refused(api: Api, payload: dict[str, Any],
                                              code: str) -> None:
    tok = jwt.encode(claims(**payload), SECRET, algorithm="HS256")
    status, body = await status_of(api, bearer(tok))
    assert (status, body["code"]) == (401, code)


async def test_small_clock_skew_is_tolerated(api: Api) -> None:
    now = int(time.time())
    tok = jwt.encode(claims(exp=now - 5, nbf=now + 5, iat=now + 5), SECRET, algorithm="HS256")
    assert (await status_of(api, bearer(tok)))[0] == 200


@pytest.mark.parametrize("payload", [
    {"exp": None},
    {"tenantId": None},
    {"sub": None},
    {"role": "superuser"},
    {"role": None},
    {"role": "venue_admin"},  # without venues
    {"role": "venue_admin", "venues": "v1"},
    {"tenantId": 7},
])
async def test_tokens_without_the_claims_the_api_needs_are_refused(
        api: Api, payload: dict[str, Any]) -> None:
    body = {k: v for k, v in claims(**payload).items() if v is not None}
    tok = jwt.encode(body, SECRET, algorithm="HS256")
    assert (await status_of(api, bearer(tok)))[0] == 401


async def test_a_token_naming_an_audience_is_refused_when_none_is_configured(api: Api) -> None:
    tok = jwt.encode(claims(aud="billing"), SECRET, algorithm="HS256")
    assert (await status_of(api, bearer(tok)))[0] == 401


@pytest.fixture
async def strict_api() -> AsyncIterator[Api]:
    async with serve_api({"JWT_ISSUER": "auth-service", "JWT_AUDIENCE": "tickq"}) as running:
        yield running


@pytest.mark.parametrize(("extra", "status"), [
    ({"iss": "auth-service", "aud": "tickq"}, 200),
    ({"iss": "auth-service", "aud": ["other", "tickq"]}, 200),
    ({"iss": "evil", "aud": "tickq"}, 401),
    ({"aud": "tickq"}, 401),
    ({"iss": "auth-service", "aud": "other"}, 401),
    ({"iss": "auth-service"}, 401),
])
async def test_issuer_and_audience_when_configured(strict_api: Api, extra: dict[str, Any],
                                                   status: int) -> None:
    tok = jwt.encode(claims(**extra), SECRET, algorithm="HS256")
    assert (await status_of(strict_api, bearer(tok)))[0] == status


# --- public keys -----------------------------------------------------------------------------


def pem_of(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_rs256_tokens_verify_and_hs256_signed_with_the_public_key_do_not(
        rsa_key: rsa.RSAPrivateKey) -> None:
    pem = pem_of(rsa_key)
    async with serve_api({"JWT_SECRET": "", "JWT_PUBLIC_KEY": pem}) as api:
        good = jwt.encode(claims(), rsa_key, algorithm="RS256")
        assert (await status_of(api, bearer(good)))[0] == 200
        # The confusion attack: the public key (which anyone may hold) used as an HMAC secret.
        for key in (pem.encode(), pem.strip().encode()):
            forged = forge({"alg": "HS256", "typ": "JWT"}, claims(), key)
            status, body = await status_of(api, bearer(forged))
            assert (status, body["code"]) == (401, "invalid_token")
        assert (await status_of(api, bearer(token())))[0] == 401  # HS256 with any secret
        assert (await status_of(api, bearer(forge({"alg": "none"}, claims(), None))))[0] == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert (await status_of(api, bearer(jwt.encode(claims(), other, "RS256"))))[0] == 401


async def test_es256_with_an_ec_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    async with serve_api({"JWT_SECRET": "", "JWT_PUBLIC_KEY": pem_of(key)}) as api:
        assert (await status_of(api, bearer(jwt.encode(claims(), key, "ES256"))))[0] == 200
        forged = forge({"alg": "HS256"}, claims(), pem_of(key).encode())
        assert (await status_of(api, bearer(forged)))[0] == 401


def test_a_pem_with_escaped_newlines_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    one_line = pem_of(rsa_key).replace("\n", "\\n")
    settings = load_settings({"JWT_PUBLIC_KEY": one_line})
    assert settings.jwt_algorithms == ("RS256",)


# --- roles -----------------------------------------------------------------------------------


async def test_a_user_calling_admin_routes_is_403(api: Api) -> None:
    job_id = await api.enqueue({"queue": "money", "type": "refund-process",
                                "data": {"transactionId": "tx1", "userId": "u1",
                                         "venueId": "v1"}})
    user = auth("user")
    for resp in (await api.client.post(f"{JOBS}/{job_id}/retry", headers=user),
                 await api.client.delete(f"{JOBS}/{job_id}", headers=user),
                 await api.client.post(f"{JOBS}/batch", json={}, headers=user)):
        assert resp.status == 403
        body = await resp.json()
        assert (body["error"], body["code"]) == ("Forbidden", "forbidden")
        assert "admin or venue_admin" in body["message"]


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["production", "staging", "test"])
def test_outside_development_a_key_is_required(env: str) -> None:
    settings = load_settings({"TICKQ_ENV": env, "TICKQ_DATABASE_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match=r"^JWT_SECRET: required when TICKQ_ENV="):
        verifier_from_settings(settings)


def test_a_weak_secret_is_refused_outside_development() -> None:
    with pytest.raises(ConfigError, match=r"JWT_SECRET: must be at least 32 bytes") as caught:
        load_settings({"TICKQ_ENV": "production", "JWT_SECRET": "short-secret"})
    assert "short-secret" not in str(caught.value)
    assert load_settings({"JWT_SECRET": "short-secret"}).jwt_secret is not None  # development


def test_a_secret_and_a_public_key_together_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET and JWT_PUBLIC_KEY are both set"):
        load_settings({"JWT_SECRET": SECRET, "JWT_PUBLIC_KEY": pem_of(rsa_key)})


@pytest.mark.parametrize(("value", "why"), [
    ("not a key", "is not a PEM public key"),
    ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "is not a PEM public key"),
])
def test_a_bad_public_key_is_refused(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"^JWT_PUBLIC_KEY: {why}"):
        load_settings({"JWT_PUBLIC_KEY": value})


def test_small_rsa_and_other_curves_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        load_settings({"JWT_PUBLIC_KEY": pem_of(small)})
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ConfigError, match=r"RSA .* or EC P-256"):
        load_settings({"JWT_PUBLIC_KEY": pem_of(p384)})


def test_development_makes_an_ephemeral_secret_and_an_admin_token() -> None:
    settings, tok = development_credentials(load_settings({}))
    assert tok is not None and settings.jwt_secret is not None
    principal = verifier_from_settings(settings).verify(tok)
    assert (principal.role, principal.tenant_id) == ("admin", "dev")
    again, _ = development_credentials(load_settings({}))
    assert again.jwt_secret != settings.jwt_secret  # a new secret per process
    configured, none = development_credentials(load_settings({"JWT_SECRET": SECRET}))
    assert none is None and configured.jwt_secret is not None
    assert configured.jwt_secret.get_secret_value() == SECRET
