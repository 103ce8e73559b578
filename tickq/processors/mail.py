"""The `send-email` job type: render one of the platform's templates and hand it to SMTP.

Configured by EMAIL_HOST (with EMAIL_PORT, EMAIL_TLS, EMAIL_USER/EMAIL_PASSWORD and EMAIL_FROM).
In development with no EMAIL_HOST, messages go to the log instead (DESIGN.md: a fresh checkout
works with nothing configured), and the job's result says `"transport": "log"` so that nobody
takes a logged message for a delivered one. Anywhere else, no EMAIL_HOST means "not configured"
and the jobs fail saying so.

Every message carries a Message-ID made from the job id: a retry of a send whose reply was lost
carries the same id, so the receiving side can drop the duplicate.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, Any, Protocol

from tickq.clock import iso
from tickq.engine.jobtypes import EmailData
from tickq.errors import ConfigError, PermanentError
from tickq.processors.base import Integration, Processor, job_data
from tickq.processors.mail_smtp import PROVIDER, SmtpConfig, SmtpPool, smtp_failure
from tickq.processors.mail_templates import EmailTemplates, RenderedEmail

if TYPE_CHECKING:
    from tickq.clock import Clock
    from tickq.engine.engine import Engine
    from tickq.engine.job import Job
    from tickq.settings import Settings

log = logging.getLogger(__name__)

JOB_TYPE = "send-email"
_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class Transport(Protocol):
    """Where rendered messages go."""

    name: str

    async def start(self) -> None: ...

    async def deliver(self, message: EmailMessage, sender: str,
                      recipients: Sequence[str]) -> dict[str, Any]:
        """Hand the message over; returns what the result should say about it."""
        ...

    async def close(self) -> None: ...


class SmtpTransport:
    """Delivery through an SMTP server, with its failures translated for the engine."""

    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.pool = SmtpPool(config)

    async def start(self) -> None:
        await self.pool.start()

    async def deliver(self, message: EmailMessage, sender: str,
                      recipients: Sequence[str]) -> dict[str, Any]:
        try:
            delivery = await self.pool.send(message, sender, recipients)
        except Exception as exc:
            failure = smtp_failure(exc, self.pool.config.timeout_s)
            if failure is None:
                raise
            raise failure from exc
        return {"accepted": delivery.accepted, "refused": delivery.refused,
                "reply": delivery.reply}

    async def close(self) -> None:
        await self.pool.close()


class LogTransport:
    """Development only: the whole message as one structured log line, nothing sent."""

    name = "log"

    async def start(self) -> None:
        log.warning("EMAIL_HOST is not set: emails are written to the log, not sent",
                    extra={"event": "email_transport_log"})

    async def deliver(self, message: EmailMessage, sender: str,
                      recipients: Sequence[str]) -> dict[str, Any]:
        text = message.get_body(("plain",))
        html = message.get_body(("html",))
        log.info("email not sent (development): written to the log",
                 extra={"event": "email_logged", "to": list(recipients), "from": sender,
                        "subject": str(message["Subject"]),
                        "message_id": str(message["Message-ID"]),
                        "job_id": str(message["X-Tickq-Job-Id"]),
                        "text": _content(text), "html": _content(html)})
        return {"delivered": False}

    async def close(self) -> None:
        """Nothing is held open."""


def _content(part: MIMEPart | None) -> str | None:
    if part is None:
        return None
    content: str = part.get_content()
    return content


def message_id(job_id: str, sender: str) -> str:
    """`<tickq.<job id>@<sender's domain>>`: the same for every attempt of one job."""
    domain = sender.rpartition("@")[2] or "tickq.invalid"
    return f"<tickq.{_ID_CHARS.sub('-', job_id)}@{domain}>"


def build_message(rendered: RenderedEmail, *, job_id: str, sender: Address, to: Address,
                  subject: str, at: float) -> EmailMessage:
    """multipart/alternative: text first, HTML last (clients show the last part they can)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.fromtimestamp(at, UTC))
    msg["Message-ID"] = message_id(job_id, sender.addr_spec)
    msg["X-Tickq-Job-Id"] = job_id
    # RFC 3834: out-of-office robots must not answer transactional mail.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


def default_sender(value: str) -> Address:
    """EMAIL_FROM as a bare address or with a display name ("Tickets <noreply@example.com>")."""
    name, addr = parseaddr(value)
    try:
        return Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, MessageError) as exc:
        raise ConfigError(f"EMAIL_FROM: must be an email address, optionally with a name "
                          f"(\"Tickets <noreply@example.com>\"); got {value!r} ({exc})") from None


def _address(value: str, field: str) -> Address:
    """The address if it is one addr-spec; a header must not smuggle in a second recipient."""
    try:
        return Address(addr_spec=value)
    except (ValueError, IndexError, MessageError) as exc:
        raise PermanentError(f"data.{field} is not a valid email address: {value!r} ({exc})",
                             code="invalid_address") from None


class EmailIntegration(Integration):
    name = "email"
    job_types = (JOB_TYPE,)
    providers = (PROVIDER,)

    def __init__(self, settings: Settings, clock: Clock, *,
                 transport: Transport | None = None,
                 templates: EmailTemplates | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.default_sender = default_sender(settings.email_from)
        self.templates = templates or EmailTemplates()
        self.transport: Transport | None = transport
        if transport is not None:
            return
        if settings.email_host is not None:
            if settings.email_user is not None and settings.email_password is None:
                self.missing.append("EMAIL_PASSWORD")
            if settings.email_password is not None and settings.email_user is None:
                self.missing.append("EMAIL_USER")
            password = settings.email_password
            self.transport = SmtpTransport(SmtpConfig(
                host=settings.email_host, port=settings.email_port, tls=settings.email_tls,
                username=settings.email_user,
                password=password.get_secret_value() if password is not None else None,
                timeout_s=settings.webhook_timeout_s))
        elif settings.is_development:
            self.transport = LogTransport()
        else:
            self.missing.insert(0, "EMAIL_HOST")

    def processors(self) -> Mapping[str, Processor]:
        return {JOB_TYPE: self.send}

    async def start(self) -> None:
        if self.transport is not None:
            await self.transport.start()

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.close()

    async def send(self, job: Job) -> dict[str, Any]:
        transport = self.transport
        if transport is None:
            raise PermanentError(self.why_not_configured, code="not_configured")
        data = job_data(EmailData, job)
        to = _address(data.to, "to")
        sender = _address(data.from_, "from") if data.from_ else self.default_sender
        rendered = self.templates.render(data.template, data.data)
        # A caller's subject is text, never a template: rendering it would let the caller
        # run template code.
        subject = " ".join(data.subject.split()) if data.subject else rendered.subject
        at = self.clock.now()
        message = build_message(rendered, job_id=job.id, sender=sender, to=to,
                                subject=subject, at=at)
        outcome = await transport.deliver(message, sender.addr_spec, [to.addr_spec])
        # A logged message was never sent: its result must not say when it was.
        when = "sentAt" if outcome.get("delivered", True) else "loggedAt"
        return {"transport": transport.name, "messageId": message_id(job.id, sender.addr_spec),
                "to": to.addr_spec, "from": sender.addr_spec, "template": rendered.template,
                "subject": subject, when: iso(at), **outcome}


def integration(settings: Settings, engine: Engine) -> Integration:
    return EmailIntegration(settings, engine.clock)


__all__ = ["JOB_TYPE", "EmailIntegration", "LogTransport", "SmtpTransport", "Transport",
           "build_message", "integration", "message_id"]
