"""Dashboard sign-in: a signed session cookie standing for a verified token, and CSRF tokens.

A browser cannot attach a bearer token to a page load, so the operator pastes one into the sign-in
form once. The cookie then carries that token, the moment the session ends (the token's `exp`,
capped at `MAX_SESSION_S`) and a random session id, signed with HMAC-SHA256. The token inside is
verified again on every request by the app's `TokenVerifier`, so a dashboard session never
outlives its token nor admits a token the API would refuse. Being self-contained, the cookie is
accepted by every node that shares the signing key, which matters with several nodes on one
PostgreSQL database.

The signing key is derived from `JWT_SECRET` when there is one (every node has it); a deployment
verifying with a public key has no shared secret, so each process signs with a random key of its
own and a session is then good on the node that issued it only.

CSRF: every state-changing request carries a token that is the HMAC of the session id, in a
form field (`csrf`) or an `X-CSRF-Token` header; the cookie is also `SameSite=Strict`, and a
request whose `Origin` or `Sec-Fetch-Site` says it came from another site is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from tickq.errors import AuthenticationError, PermissionDeniedError
from tickq.http.auth import Principal
from tickq.http.keys import VERIFIER
from tickq.settings import Settings

COOKIE = "tickq_dashboard"
COOKIE_PATH = "/dashboard"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: the longest a dashboard session lasts, whatever the token's own lifetime
MAX_SESSION_S = 8 * 3600
#: a cookie longer than this is not one this code made (a token is at most 4096 characters)
MAX_COOKIE_CHARS = 6000
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: who they are, the token that proves it, and the session's id (what
    the CSRF token is derived from)."""

    principal: Principal
    token: str
    session_id: str
    until: float


class SessionSigner:
    """Makes and reads session cookies and the CSRF tokens tied to them."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionSigner:
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value().encode()
            return cls(hmac.new(secret, b"tickq dashboard session v1", hashlib.sha256).digest())
        return cls(secrets.token_bytes(32))

    def _mac(self, purpose: bytes, payload: bytes) -> str:
        digest = hmac.new(self._key, purpose + b"\x00" + payload, hashlib.sha256).digest()
        return _b64(digest)

    def issue(self, token: str, principal: Principal, now: float) -> tuple[str, float]:
        """The cookie value for a freshly verified token, and when the session ends."""
        until = now + MAX_SESSION_S
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        payload = orjson.dumps({"t": token, "u": until, "s": secrets.token_urlsafe(16)})
        return f"{_b64(payload)}.{self._mac(b'session', payload)}", until

    def read(self, value: str, now: float) -> tuple[str, str, float] | None:
        """(token, session id, end) of a cookie this signer made that has not ended; None for
        anything else (forged, truncated, expired)."""
        if len(value) > MAX_COOKIE_CHARS or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(b"session", payload)):
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        token, until, sid = data.get("t"), data.get("u"), data.get("s")
        if not (isinstance(token, str) and isinstance(sid, str)
                and isinstance(until, int | float)) or now >= until:
            return None
        return token, sid, float(until)

    def csrf_token(self, session_id: str) -> str:
        return self._mac(b"csrf", session_id.encode())

    def csrf_ok(self, session_id: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.csrf_token(session_id).encode())


SIGNER = web.AppKey("tickq.dashboard.signer", SessionSigner)
SESSION = web.RequestKey("tickq.dashboard.session", Session)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def current(request: web.Request) -> Session | None:
    """The request's session if its cookie is valid and its token still verifies."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    read = request.app[SIGNER].read(value, time.time())
    if read is None:
        return None
    token, sid, until = read
    try:
        principal = request.app[VERIFIER].verify(token)
    except AuthenticationError:
        return None
    return Session(principal, token, sid, until)


def sign_in(request: web.Request, response: web.StreamResponse, token: str) -> Principal:
    """Verify `token` (`AuthenticationError` says what is wrong) and set the session cookie."""
    principal = request.app[VERIFIER].verify(token.strip())
    now = time.time()
    value, until = request.app[SIGNER].issue(token.strip(), principal, now)
    response.set_cookie(COOKIE, value, path=COOKIE_PATH, max_age=max(1, int(until - now)),
                        httponly=True, samesite="Strict", secure=request.secure)
    return principal


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def check_same_origin(request: web.Request) -> None:
    """Refuse a request a browser says came from another site (403)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise PermissionDeniedError("cross-site requests are refused", code="csrf_failed")
    origin = request.headers.get("Origin")
    # "null" is what a browser sends when it withholds the origin (a no-referrer policy, a
    # sandboxed frame): it proves nothing either way, and Sec-Fetch-Site above has spoken.
    if origin not in (None, "null") and origin != f"{request.scheme}://{request.host}":
        raise PermissionDeniedError("the request's Origin is not this dashboard",
                                    code="csrf_failed")


async def check_csrf(request: web.Request, session: Session) -> None:
    """A state-changing request must carry the session's CSRF token (403 otherwise)."""
    if request.method in _SAFE_METHODS:
        return
    check_same_origin(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.content_type in ("application/x-www-form-urlencoded",
                                                       "multipart/form-data"):
        form = await request.post()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else None
    if not request.app[SIGNER].csrf_ok(session.session_id, presented):
        raise PermissionDeniedError("missing or wrong CSRF token; reload the page and try again",
                                    code="csrf_failed")
