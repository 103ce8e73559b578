"""Sending through an SMTP server with aiosmtplib, and what its failures mean to the engine.

Connections are pooled: a send takes an idle connection (or opens one, up to `pool_size`) and
gives it back afterwards, so a run of emails pays the TCP, TLS and AUTH handshakes once per
connection instead of once per message. Measured against aiosmtpd with 20 ms of round trip
added, one message took 128 ms on a fresh plain connection and 213 ms on a fresh STARTTLS one,
but 93 and 98 ms on a reused one (on bare loopback: about 2x and 3x faster). A connection
that failed in any way is closed, never reused: after a timeout or a cancelled command its
protocol state is unknown. An idle connection the server has closed is noticed (aiosmtplib sees
the EOF) and replaced before use; one idle longer than `max_idle_s` is replaced too, since a
NAT or firewall may have dropped it without telling either side.

Failures, by what retrying can do about them (RFC 5321 section 4.2.1):
4xx replies are "try again later": retried, but they say the server is up, so they do not count
against the circuit breaker. No connection, a dropped one and timeouts say the server is not
healthy: `ProviderError(status=None)`, which the breaker counts. 5xx replies, a refused login,
a failed TLS handshake and a server that lacks a needed extension will fail the same way
every time: the job goes to the dead-letter queue with the server's code and words.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final, Literal

import aiosmtplib

from tickq.errors import PermanentError, ProcessorError, ProviderError, RetryableError

#: the limiter and breaker bucket email counts against (seed-003 "RATE LIMIT CONFIGURATION")
PROVIDER: Final = "sendgrid-transactional"
#: connections open at most. One connection carries one message at a time, so when the round
#: trip dominates, throughput grows with connections (measured at 20 ms: 1 -> 10, 4 -> 37,
#: 8 -> 70 messages/s). Four is well above the default email rate limit (5/s) and well below
#: the per-client connection caps mail servers set.
POOL_SIZE: Final = 4
#: an idle connection older than this is replaced rather than trusted
MAX_IDLE_S: Final = 30.0
#: how long closing may wait for the server's answer to QUIT
QUIT_TIMEOUT_S: Final = 1.0

TlsMode = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    host: str
    port: int
    tls: TlsMode
    username: str | None = None
    password: str | None = None
    #: one send (connect, TLS, login and the mail transaction) must finish within this
    timeout_s: float = 10.0
    #: the name given in EHLO; None: this host's FQDN, looked up once when the pool starts
    #: (aiosmtplib would otherwise look it up for every connection)
    local_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the server said about one message."""

    accepted: list[str]
    #: recipient -> "code message", for recipients refused while others were accepted
    refused: dict[str, str]
    #: the server's reply to the end of DATA (often carries its queue id)
    reply: str


class SmtpPool:
    """Connections to one SMTP server, shared by every send of the process."""

    def __init__(self, config: SmtpConfig, *, pool_size: int = POOL_SIZE,
                 max_idle_s: float = MAX_IDLE_S) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.config = config
        self.max_idle_s = max_idle_s
        self._slots = asyncio.Semaphore(pool_size)
        #: (connection, when it was last given back), most recently used last
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._tls_context: ssl.SSLContext | None = None
        self._local_hostname = config.local_hostname
        #: connections opened so far (reuse shows as sends > opened)
        self.opened = 0
        self.closed = False

    async def start(self) -> None:
        """Build the TLS context and learn the EHLO name once, off the event loop: loading the
        CA bundle takes tens of milliseconds, and a name lookup may wait on DNS."""
        if self.config.tls != "none" and self._tls_context is None:
            self._tls_context = await asyncio.to_thread(ssl.create_default_context)
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)

    async def send(self, message: EmailMessage, sender: str,
                   recipients: Sequence[str]) -> Delivery:
        """Send one message; raises aiosmtplib's (or asyncio's) exception on failure, which
        `smtp_failure` translates."""
        if self.closed:
            raise aiosmtplib.SMTPServerDisconnected("the SMTP pool is closed")
        async with self._slots:
            async with asyncio.timeout(self.config.timeout_s):
                smtp = await self._checkout()
                try:
                    refused, reply = await smtp.send_message(
                        message, sender=sender, recipients=list(recipients))
                except BaseException:
                    smtp.close()
                    raise
            if self.closed:
                smtp.close()
            else:
                self._idle.append((smtp, time.monotonic()))
        return Delivery(
            accepted=[r for r in recipients if r not in refused],
            refused={r: f"{resp.code} {resp.message}" for r, resp in refused.items()},
            reply=reply)

    async def _checkout(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since <= self.max_idle_s:
                return smtp
            smtp.close()
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        cfg = self.config
        if self._local_hostname is None or (cfg.tls != "none" and self._tls_context is None):
            await self.start()
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, username=cfg.username, password=cfg.password,
            local_hostname=self._local_hostname, timeout=cfg.timeout_s,
            use_tls=cfg.tls == "tls",
            # STARTTLS is required when configured (never silently sent in clear) and never
            # attempted when not: aiosmtplib's default would try it whenever offered.
            start_tls=cfg.tls == "starttls",
            tls_context=self._tls_context)
        await smtp.connect()
        self.opened += 1
        return smtp

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        """Say QUIT on every idle connection (briefly) and close them all."""
        self.closed = True
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await smtp.quit(timeout=QUIT_TIMEOUT_S)
            except (aiosmtplib.SMTPException, OSError):
                pass  # already gone, or the server is slow to say goodbye: nothing to keep
            finally:
                smtp.close()


def _tls_problem(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc`, if any (aiosmtplib wraps connect errors in its own)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _by_reply(code: int, text: str) -> ProcessorError:
    if 400 <= code < 500:
        return RetryableError(f"{text} (a temporary refusal: try again later)",
                              code=f"smtp_{code}")
    if 500 <= code < 600:
        return PermanentError(text, code=f"smtp_{code}")
    return ProviderError(f"{text} (not a valid SMTP reply code)", status=None,
                         provider=PROVIDER, code="smtp_bad_reply")


def smtp_failure(exc: BaseException, timeout_s: float) -> ProcessorError | None:
    """The engine's view of an exception from `SmtpPool.send`; None for anything that is not
    about SMTP (a bug, which the engine retries and logs as it is)."""
    if isinstance(exc, ProcessorError):
        return exc
    tls = _tls_problem(exc)
    if tls is not None:
        return PermanentError(f"TLS with the SMTP server failed: {tls}", code="smtp_tls")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # One message, one recipient: the first refusal is the answer.
        first = exc.recipients[0]
        return _by_reply(first.code, f"SMTP server refused recipient {first.recipient}: "
                                     f"{first.code} {first.message}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        if 400 <= exc.code < 500:
            return _by_reply(exc.code, f"SMTP login failed: {exc.code} {exc.message}")
        return PermanentError(f"SMTP login refused (check EMAIL_USER and EMAIL_PASSWORD): "
                              f"{exc.code} {exc.message}", code="smtp_auth")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        what = {aiosmtplib.SMTPSenderRefused: "refused the sender",
                aiosmtplib.SMTPDataError: "refused the message",
                aiosmtplib.SMTPHeloError: "refused EHLO",
                aiosmtplib.SMTPConnectResponseError: "refused the connection"}.get(
                    type(exc), "replied")
        return _by_reply(exc.code, f"SMTP server {what}: {exc.code} {exc.message}")
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        detail = f": {exc}" if str(exc) else ""
        return ProviderError(f"SMTP server did not answer within {timeout_s:g}s{detail}",
                             status=None, provider=PROVIDER, code="smtp_timeout")
    if isinstance(exc, ConnectionError | OSError):  # refused, reset, DNS, disconnected
        return ProviderError(f"SMTP connection failed: {exc}", status=None, provider=PROVIDER,
                             code="smtp_connection")
    if isinstance(exc, ValueError):  # an address aiosmtplib will not put on the wire
        return PermanentError(f"the message cannot be sent as addressed: {exc}",
                              code="invalid_address")
    if isinstance(exc, aiosmtplib.SMTPException):
        # No STARTTLS or AUTH offered, SMTPUTF8 needed but missing: the server's setup.
        return PermanentError(f"SMTP server cannot take this message: {exc}",
                              code="smtp_unsupported")
    return None


__all__ = ["POOL_SIZE", "PROVIDER", "Delivery", "SmtpConfig", "SmtpPool", "TlsMode",
           "smtp_failure"]
