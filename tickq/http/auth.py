"""API authentication: JWT bearer tokens and the `Principal` they stand for.

One key verifies tokens, and the key decides the only algorithm accepted: HS256 with
`JWT_SECRET`, RS256 or ES256 with `JWT_PUBLIC_KEY` (see `Settings.jwt_algorithms`). A verifier
never accepts both families, which is what defeats `alg: none` and the classic confusion of an
HS256 token signed with the RSA public key as its "secret" (the spec's service had no whitelist).

Claims (spec seed-004): `userId` (or the standard `sub`), `tenantId`, `role` and, for a
venue_admin, `venues`. `exp` is required; `nbf` and `iat` are honoured with a small leeway for
clock skew. There is no fallback secret: outside development a missing key is a configuration
error, and development gets an ephemeral secret that dies with the process.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

import jwt

from tickq.errors import AuthenticationError, ConfigError
from tickq.settings import MIN_SECRET_BYTES, Settings

log = logging.getLogger(__name__)

Role = Literal["admin", "venue_admin", "monitoring", "user", "service"]
ROLES: Final[frozenset[str]] = frozenset(get_args(Role))

#: a bearer token longer than this is refused before any parsing
MAX_TOKEN_CHARS = 4096
#: ids and tenant names longer than this are not ids
MAX_CLAIM_CHARS = 256
#: lifetime of the admin token development mode prints
DEV_TOKEN_TTL_S = 24 * 3600
DEV_TENANT = "dev"
DEV_USER = "dev-admin"
#: verified tokens remembered per verifier (oldest forgotten first)
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling: taken from a verified token, never from a request body."""

    user_id: str
    tenant_id: str
    role: Role
    #: the venues a venue_admin administers (empty for the other roles)
    venues: frozenset[str] = frozenset()
    #: when the token stops being valid (epoch seconds)
    expires_at: float | None = None

    @property
    def scoped(self) -> bool:
        """True for the roles whose reach depends on each job's data, not only on its type and
        tenant: a user acts for themselves only, a venue admin for their venues only."""
        return self.role in ("user", "venue_admin")

    @property
    def is_admin(self) -> bool:
        """Platform administrators act across tenants; everyone else stays inside their own."""
        return self.role == "admin"


class TokenVerifier:
    """Verifies bearer tokens with one key and its one algorithm."""

    def __init__(self, key: str, algorithms: Sequence[str], *, issuer: str | None = None,
                 audience: str | None = None, leeway_s: float = 30.0) -> None:
        if not algorithms:
            raise ValueError("a verifier needs at least one algorithm")
        if "none" in (a.lower() for a in algorithms):
            raise ValueError("'none' is never an accepted algorithm")
        self._key = key
        self.algorithms: tuple[str, ...] = tuple(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        #: token -> (principal, nbf) for tokens whose signature and claims already verified.
        #: Verification was a third of a single enqueue's server time (PyJWT re-prepares the key
        #: and parses both segments with the stdlib json on every call); a caller sends the same
        #: token many times. Only the time checks are repeated on a hit.
        self._verified: dict[str, tuple[Principal, float | None]] = {}

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are remembered."""
        return len(self._verified)

    def forget_tokens(self) -> int:
        """Forget every remembered token (each is verified in full on its next use); returns
        how many there were."""
        n = len(self._verified)
        self._verified.clear()
        return n

    def verify(self, token: str) -> Principal:
        """The principal a token stands for, or `AuthenticationError` saying what is wrong."""
        hit = self._verified.get(token)
        if hit is not None:
            principal, nbf = hit
            now = time.time()
            if (principal.expires_at is not None and now <= principal.expires_at + self.leeway_s
                    and (nbf is None or now >= nbf - self.leeway_s)):
                return principal
            del self._verified[token]  # verified again below, which says what is wrong
        principal, nbf = self._verify(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = (principal, nbf)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float | None]:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthenticationError("the bearer token is not a JWT", code="invalid_token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key, algorithms=list(self.algorithms), issuer=self.issuer,
                audience=self.audience, leeway=self.leeway_s,
                options={"require": ["exp"], "verify_aud": True})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired", code="token_expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("the token is not valid yet (nbf or iat is in the future)",
                                      code="invalid_token") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError("the token's algorithm is not accepted",
                                      code="invalid_token") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token has no {exc.claim!r} claim",
                                      code="invalid_token") from None
        except jwt.InvalidAudienceError:
            if self.audience is None:
                log.warning("a token named an audience but JWT_AUDIENCE is not set",
                            extra={"event": "token_audience_unexpected"})
            raise AuthenticationError("the token's audience is not accepted",
                                      code="invalid_token") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token's issuer is not accepted",
                                      code="invalid_token") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token's signature does not verify",
                                      code="invalid_token") from None
        except jwt.InvalidTokenError:
            # DecodeError and friends: bad base64, bad JSON, a header that is not an object.
            raise AuthenticationError("the token is malformed", code="invalid_token") from None
        nbf = claims.get("nbf")
        return principal_from_claims(claims), (float(nbf) if isinstance(nbf, int | float)
                                               else None)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Check the claims the API relies on; a token missing one is not a token for this API."""
    user = claims.get("userId", claims.get("sub"))
    tenant = claims.get("tenantId")
    role = claims.get("role")
    if not _is_id(user):
        raise AuthenticationError("the token names no user (userId or sub)", code="invalid_token")
    if not _is_id(tenant):
        raise AuthenticationError("the token names no tenant (tenantId)", code="invalid_token")
    if not isinstance(role, str) or role not in ROLES:
        raise AuthenticationError(f"the token's role must be one of {', '.join(sorted(ROLES))}",
                                  code="invalid_token")
    venues = claims.get("venues", [])
    if not isinstance(venues, list) or not all(_is_id(v) for v in venues):
        raise AuthenticationError("the token's venues must be a list of venue ids",
                                  code="invalid_token")
    if role == "venue_admin" and not venues:
        raise AuthenticationError("a venue_admin token must list its venues",
                                  code="invalid_token")
    exp = claims.get("exp")
    return Principal(user_id=cast(str, user), tenant_id=cast(str, tenant), role=cast(Role, role),
                     venues=frozenset(venues) if role == "venue_admin" else frozenset(),
                     expires_at=float(exp) if isinstance(exp, int | float) else None)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_CLAIM_CHARS and value.isprintable()


def mint_token(secret: str, *, role: str, tenant_id: str, user_id: str,
               venues: Iterable[str] = (), ttl_s: float = 3600.0, issuer: str | None = None,
               audience: str | None = None, now: float | None = None) -> str:
    """An HS256 token for the given principal. Only a shared secret can mint; a deployment that
    verifies with a public key gets its tokens from whoever holds the private key."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(sorted(ROLES))}")
    if not (_is_id(tenant_id) and _is_id(user_id)):
        raise ValueError("tenant and user must be non-empty printable ids")
    venue_list = sorted(set(venues))
    if role == "venue_admin" and not venue_list:
        raise ValueError("a venue_admin token needs at least one venue")
    if ttl_s <= 0:
        raise ValueError("ttl must be > 0 seconds")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user_id, "userId": user_id, "tenantId": tenant_id,
                              "role": role, "iat": issued, "nbf": issued,
                              "exp": issued + int(ttl_s), "jti": secrets.token_hex(8)}
    if venue_list:
        claims["venues"] = venue_list
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def verifier_from_settings(settings: Settings) -> TokenVerifier:
    """The verifier the settings describe. Outside development a missing key is a
    `ConfigError` naming the variables; development without one gets a random secret (use
    `development_credentials` to also get a token for it)."""
    common: dict[str, Any] = {"issuer": settings.jwt_issuer, "audience": settings.jwt_audience,
                              "leeway_s": settings.jwt_leeway_s}
    if settings.jwt_public_key is not None:
        return TokenVerifier(settings.jwt_public_key, settings.jwt_algorithms, **common)
    if settings.jwt_secret is not None:
        return TokenVerifier(settings.jwt_secret.get_secret_value(), ("HS256",), **common)
    if not settings.is_development:
        raise ConfigError(missing_key_message(settings))
    return TokenVerifier(new_secret(), ("HS256",), **common)


def missing_key_message(settings: Settings) -> str:
    return (f"JWT_SECRET: required when TICKQ_ENV={settings.env}; set JWT_SECRET (HS256, at "
            f"least {MIN_SECRET_BYTES} bytes) or JWT_PUBLIC_KEY (an RS256/ES256 PEM public key). "
            "Only TICKQ_ENV=development runs without one.")


def development_credentials(settings: Settings) -> tuple[Settings, str | None]:
    """In development with no key configured: the settings with an ephemeral secret, and an
    admin token (tenant "dev") signed with it. Otherwise the settings unchanged and None."""
    if not settings.is_development or settings.jwt_configured:
        return settings, None
    from pydantic import SecretStr

    secret = new_secret()
    token = mint_token(secret, role="admin", tenant_id=DEV_TENANT, user_id=DEV_USER,
                       ttl_s=DEV_TOKEN_TTL_S, issuer=settings.jwt_issuer,
                       audience=settings.jwt_audience)
    return settings.model_copy(update={"jwt_secret": SecretStr(secret)}), token


def new_secret() -> str:
    """A random HS256 secret well above the minimum length."""
    return secrets.token_urlsafe(48)


__all__ = ["ROLES", "Principal", "Role", "TokenVerifier", "development_credentials",
           "mint_token", "principal_from_claims", "verifier_from_settings"]
