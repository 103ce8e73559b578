"""A real SMTP server for the email tests: aiosmtpd on 127.0.0.1, in the test's own event loop.

`Mailbox` is the aiosmtpd handler. It keeps every message whose DATA it saw (with the reply it
gave, so a test can see a refused copy and its retry), and answers with whatever replies a test
queued for RCPT or DATA before falling back to "250". `SmtpPeer` serves it on an ephemeral port,
optionally with AUTH, STARTTLS or implicit TLS, and counts the connections clients opened.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    #: the server's answer to its DATA ("250 ..." when accepted)
    reply: str
    #: the user the connection logged in as, if it did
    login: str | None
    message: EmailMessage = field(init=False)

    def __post_init__(self) -> None:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.message = parsed

    @property
    def accepted(self) -> bool:
        return self.reply.startswith("250")

    def part(self, subtype: str) -> str:
        body = self.message.get_body((subtype,))
        assert body is not None, f"no text/{subtype} part"
        content: str = body.get_content()
        return content


class Mailbox:
    """The aiosmtpd handler: stores messages, answers as scripted."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        #: replies for the next RCPT commands / DATA ends; empty: accept
        self.rcpt_replies: deque[str] = deque()
        self.data_replies: deque[str] = deque()
        #: refuse MAIL FROM until the session has logged in
        self.require_auth = False

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.accepted]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = (self.data_replies.popleft() if self.data_replies
                 else f"250 2.0.0 Ok: queued as Q{len(self.received) + 1}")
        content = envelope.original_content or b""
        self.received.append(Received(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos), raw=content,
            reply=reply, login=session.auth_data if session.authenticated else None))
        return reply


class Credentials:
    """An aiosmtpd authenticator that knows one user."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        # handled=False: aiosmtpd answers a failure itself (535) instead of leaving it to us
        return AuthResult(success=ok, handled=False, auth_data=self.user if ok else None)


class SmtpPeer:
    """`async with SmtpPeer(mailbox) as peer:` serves on `peer.port` until the block ends."""

    def __init__(self, mailbox: Mailbox, *, credentials: Credentials | None = None,
                 starttls: ssl.SSLContext | None = None,
                 implicit_tls: ssl.SSLContext | None = None, idle_timeout_s: float = 300) -> None:
        self.mailbox = mailbox
        self.credentials = credentials
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.idle_timeout_s = idle_timeout_s
        self.connections = 0
        self.port = 0
        self._sessions: list[SMTP] = []
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        self.connections += 1
        smtp = SMTP(self.mailbox, hostname="mx.tickq.test", loop=asyncio.get_running_loop(),
                    authenticator=self.credentials,
                    # loopback only: a login in clear is what this test server is for
                    auth_require_tls=self.credentials is None,
                    tls_context=self.starttls, require_starttls=self.starttls is not None,
                    timeout=self.idle_timeout_s)
        self._sessions.append(smtp)
        return smtp

    async def __aenter__(self) -> SmtpPeer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, HOST, 0, ssl=self.implicit_tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()


@dataclass(frozen=True)
class SelfSignedCert:
    """A self-signed certificate for 127.0.0.1, its key, and a server context using them."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(folder: Path) -> SelfSignedCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickq test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return SelfSignedCert(cert_file, key_file)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.port = 0
        self._held: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._hold, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._held:
            writer.close()
        await self._server.wait_closed()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port
