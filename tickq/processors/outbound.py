"""Outgoing HTTP as every integration that talks to a web endpoint (SMS, push, webhooks) does it.

An integration's `OutboundClient` owns one `aiohttp.ClientSession` for the life of the
service (opened in `start`, closed in `close`; never one per request), with the
`WEBHOOK_TIMEOUT_S` timeout, a `User-Agent: tickq/<version>` header, no redirects followed and
no proxy taken from the environment. What a reply means for the job is decided in one place,
`raise_for_status`: 2xx is success; 408, 5xx, timeouts and connection failures are retried
(`ProviderError`; all but 408 count against the provider's circuit breaker); 429 defers the job
without spending an attempt (`RateLimited`, honouring `Retry-After`); any other status is
permanent.

Where a job chooses the URL (webhooks, job callbacks), the client is *guarded*: only http and
https, and no loopback, private, link-local, multicast, reserved or unspecified address, unless
`OUTBOUND_ALLOW_PRIVATE=true`. The check runs at delivery time on the addresses the request
actually connects to: `GuardedResolver` is the session's DNS resolver, so aiohttp connects only
to addresses that passed the check, and a name that resolved to a public address when the job
was enqueued and to 127.0.0.1 now (DNS rebinding) is refused now. Checking the resolver's answer,
rather than resolving once and connecting to the checked IP with the original Host header, keeps
TLS certificate checks and SNI working unchanged. A host written as an IP literal never reaches
a resolver, so it is checked before the request; redirects are not followed, since a redirect
could otherwise point at an address no check saw.

Endpoints the operator configures (Twilio's API base, the push gateway, the platform's
notification URLs) are not guarded: a job cannot steer them, and a gateway or receiver on the
private network is a normal deployment, which should not require opening every job's webhooks
to the private network with OUTBOUND_ALLOW_PRIVATE.

Webhooks are signed with HMAC-SHA256 (`sign`, `verify_signature`): the header is
`X-Tickq-Signature: t=<unix seconds>,v1=<hex>` with v1 = HMAC(secret, f"{t}." + body) over the
exact bytes sent; the timestamp lets a receiver refuse replays older than its tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from tickq import __version__
from tickq.errors import PermanentError, ProviderError, RateLimited
from tickq.settings import Settings

USER_AGENT = f"tickq/{__version__}"
SIGNATURE_HEADER = "X-Tickq-Signature"
#: the longest URL a webhook or callback may have
MAX_URL_CHARS = 2048
#: at most this much of a reply is read (an error message is all that is looked at)
MAX_REPLY_BYTES = 64 * 1024
#: a 429 without a usable Retry-After defers the job this long
DEFAULT_RETRY_AFTER_S = 1.0
#: a Retry-After is honoured up to this long: a receiver cannot park its provider's bucket (which
#: other receivers share) for longer than this on one answer
MAX_RETRY_AFTER_S = 3600.0
#: how old a signature `verify_signature` accepts by default
DEFAULT_TOLERANCE_S = 300.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: RFC 6052: IPv6 addresses that carry an IPv4 address in their last 32 bits (NAT64)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(PermanentError):
    """The URL is not one tickq sends to (scheme, or an address the guard refuses). Retrying
    cannot help until the URL or the OUTBOUND_ALLOW_PRIVATE setting changes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="destination_refused")


# --- URLs and addresses ---------------------------------------------------------------------


def check_url(url: str) -> URL:
    """The parsed URL when it is absolute http or https with a host and at most
    `MAX_URL_CHARS` long; `DestinationRefused` naming the problem otherwise."""
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(f"the URL is {len(url)} characters long; the limit is "
                                 f"{MAX_URL_CHARS}")
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as exc:
        raise DestinationRefused(f"the URL is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise DestinationRefused(f"the URL must be http or https, not {parsed.scheme or 'none'!r}")
    if not parsed.raw_host:
        raise DestinationRefused("the URL has no host")
    return parsed


def shown(url: URL | str) -> str:
    """A URL fit for logs and error messages: no credentials, query or fragment (they often
    carry tokens)."""
    try:
        u = URL(url) if isinstance(url, str) else url
        return str(u.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid URL>"


def refused_because(ip: IPAddress) -> str | None:
    """Why an outbound request to `ip` is refused (None: it is a public address). IPv6 forms
    that embed an IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by that address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refused_because(embedded)
            if reason is not None:
                return reason
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address when `host` is an IP literal (IPv6 possibly with a zone), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _refusal(host: str, address: str, reason: str) -> DestinationRefused:
    where = address if host == address else f"{host} ({address})"
    return DestinationRefused(f"{where} is a {reason} address; outbound requests there are "
                              "refused (OUTBOUND_ALLOW_PRIVATE=true allows them)")


class GuardedResolver(AbstractResolver):
    """A resolver that hands aiohttp only the addresses `refused_because` accepts, and refuses
    the name when none is left. aiohttp connects to what its resolver returned, so the address
    checked is the address used."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        first_refusal: DestinationRefused | None = None
        for entry in found:
            ip = ip_literal(entry["host"])
            reason = "unparseable" if ip is None else refused_because(ip)
            if reason is None:
                allowed.append(entry)
            elif first_refusal is None:
                first_refusal = _refusal(host, entry["host"], reason)
        if not allowed:
            raise first_refusal or DestinationRefused(f"{host} resolves to no address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# --- replies and what they mean -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, headers and (the first `MAX_REPLY_BYTES` of) the body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def retry_after_s(value: str | None, now: float) -> float:
    """A Retry-After header (delay seconds or an HTTP date) as seconds from `now`, within
    [0, MAX_RETRY_AFTER_S]; `DEFAULT_RETRY_AFTER_S` when absent or unreadable."""
    if not value or not value.strip():
        return DEFAULT_RETRY_AFTER_S
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_S
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def raise_for_status(reply: Reply, *, provider: str, what: str, detail: str | None = None,
                     code: str | None = None, now: float | None = None) -> None:
    """Nothing for a 2xx; otherwise the error that tells the engine what to do with the job.

    `what` names the peer in the message ("Twilio", "https://example.com/hook"); `detail` is
    the peer's own explanation and `code` its error code, when it gave them."""
    status = reply.status
    if 200 <= status < 300:
        return
    message = f"{what} answered {status}" + (f": {detail}" if detail else "")
    if status == 429:
        at = datetime.now(UTC).timestamp() if now is None else now
        raise RateLimited(message, retry_after=retry_after_s(reply.headers.get("Retry-After"), at),
                          provider=provider, code=code or "http_429")
    if status == 408 or status >= 500 or status < 200:
        raise ProviderError(message, status=status, provider=provider,
                            code=code or f"http_{status}")
    if 300 <= status < 400:
        location = reply.headers.get("Location")
        target = f" to {shown(location)}" if location else ""
        raise PermanentError(f"{what} redirected ({status}){target}; redirects are not "
                             "followed", code="redirect")
    raise PermanentError(message, code=code or f"http_{status}")


# --- the client -----------------------------------------------------------------------------


class OutboundClient:
    """One integration's HTTP client. `guard` refuses non-public addresses unless the settings
    allow them (see the module docstring)."""

    def __init__(self, settings: Settings, *, provider: str, guard: bool) -> None:
        self.provider = provider
        self.timeout_s = settings.webhook_timeout_s
        self.guarded = guard and not settings.outbound_allow_private
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        resolver = GuardedResolver() if self.guarded else None
        connector = aiohttp.TCPConnector(resolver=resolver, limit=100, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": USER_AGENT}, trust_env=False, raise_for_status=False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def check(self, url: str | URL) -> URL:
        """`check_url`, plus the address check of an IP-literal host when guarded."""
        parsed = check_url(url) if isinstance(url, str) else check_url(str(url))
        if self.guarded:
            host = parsed.raw_host or ""
            ip = ip_literal(host)
            if ip is not None:
                reason = refused_because(ip)
                if reason is not None:
                    raise _refusal(host, str(ip), reason)
        return parsed

    async def post(self, url: str | URL, body: bytes, *, headers: Mapping[str, str],
                   what: str) -> Reply:
        """POST `body` (sent byte for byte) and read the reply. A timeout or a failed
        connection becomes a `ProviderError` without status (it counts against the breaker);
        a refused destination a `DestinationRefused`."""
        session = self._session
        if session is None:
            raise RuntimeError(f"the {self.provider} HTTP client is used before start()")
        target = self.check(url)
        try:
            async with session.post(target, data=body, headers=dict(headers),
                                    allow_redirects=False) as resp:
                return Reply(resp.status, resp.headers.copy(), await _read_capped(resp))
        except DestinationRefused:
            raise
        except TimeoutError:
            raise ProviderError(f"{what} did not answer within {self.timeout_s:g}s",
                                provider=self.provider, code="timeout") from None
        except aiohttp.InvalidURL as exc:
            raise DestinationRefused(f"the URL is not valid: {exc}") from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise ProviderError(f"{what}: the host name did not resolve ({exc.os_error})",
                                provider=self.provider, code="dns") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"{what} could not be reached: {exc.__class__.__name__}: "
                                f"{exc}", provider=self.provider, code="connection") from None


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_REPLY_BYTES:
        chunk = await resp.content.read(MAX_REPLY_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# --- signatures -----------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, body: bytes, t: int) -> str:
    """The hex HMAC-SHA256 of f"{t}." + body."""
    return hmac.new(_key(secret), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, t: int) -> str:
    """The `X-Tickq-Signature` value for `body` sent at unix time `t`."""
    return f"t={t},v1={signature(secret, body, t)}"


def verify_signature(secret: str | bytes, header: str | None, body: bytes,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when `header` (an `X-Tickq-Signature` value) signs exactly `body` with `secret`
    and its timestamp is within `tolerance_s` of `now` (default: the current time). Several
    `v1=` entries are allowed (one per secret while a secret is being rotated); one must
    match. Receivers should pass the raw request body, before any JSON parsing."""
    if not header:
        return False
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            try:
                t = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if t is None or not candidates:
        return False
    at = datetime.now(UTC).timestamp() if now is None else now
    if abs(at - t) > tolerance_s:
        return False
    expected = signature(secret, body, t)
    return any(hmac.compare_digest(expected, c) for c in candidates)


__all__ = ["MAX_URL_CHARS", "SIGNATURE_HEADER", "USER_AGENT", "DestinationRefused",
           "GuardedResolver", "OutboundClient", "Reply", "check_url", "raise_for_status",
           "refused_because", "retry_after_s", "shown", "sign", "verify_signature"]
