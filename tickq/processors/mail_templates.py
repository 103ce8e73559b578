"""The transactional email templates (spec seed-004 "Email Templates") and how they are rendered.

Each template is three Jinja2 files under `templates/email/`: `<name>.subject`, `<name>.txt` and
`<name>.html`. Only the HTML is autoescaped: the text part must show what the customer typed
(`<b>` stays `<b>`), while in HTML the same text must never become markup. `StrictUndefined`
turns a variable the job forgot into an error naming it instead of a blank in a customer's
receipt; that error is the job's fault, so it goes to the dead-letter queue rather than being
retried. Callers' data is only ever a template's variables, never template source, so a job
cannot reach Jinja's expression language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import jinja2

from tickq.errors import PermanentError

#: where the template files live inside the `tickq.processors` package
TEMPLATE_DIR: Final = "templates/email"
PARTS: Final = ("subject", "txt", "html")

#: names the spec's services used for a template, beyond the mechanical spellings of its
#: canonical name (`payment_confirmation`, `PaymentConfirmation`, "Payment Confirmation")
ALIASES: Final[Mapping[str, str]] = {
    "nft-minted-confirmation": "nft-minted",  # sendNFTMintedConfirmation()
    "operation-failed": "admin-alert",  # the webhook event admin alerts go out as
}

#: currencies whose smallest unit is the whole unit (Stripe's zero-decimal list)
ZERO_DECIMAL: Final = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG",
                                 "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"})
SYMBOLS: Final[Mapping[str, str]] = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥",
                                     "CAD": "CA$", "AUD": "A$", "INR": "₹", "KRW": "₩"}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s_]+")
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class TemplateDataError(ValueError):
    """A template variable is present but unusable (an amount that is not whole cents)."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    template: str
    subject: str
    text: str
    html: str


def canonical_name(name: str) -> str:
    """PaymentConfirmation, payment_confirmation, "Payment Confirmation": payment-confirmation."""
    spaced = _CAMEL_BOUNDARY.sub("-", name.strip())
    dashed = _SEPARATORS.sub("-", spaced).lower()
    return ALIASES.get(dashed, dashed)


def money(cents: Any, currency: Any = "USD") -> str:
    """An amount in the currency's smallest unit, as a customer reads it: 123456 USD -> $1,234.56.

    Floats are refused: an amount that already lost precision must not be mailed as a receipt."""
    if isinstance(cents, bool) or not isinstance(cents, int | str):
        raise TemplateDataError(f"an amount must be a whole number of cents, got {cents!r}")
    if isinstance(cents, str):
        if not re.fullmatch(r"-?[0-9]{1,15}", cents.strip()):
            raise TemplateDataError(f"an amount must be a whole number of cents, got {cents!r}")
        cents = int(cents)
    code = str(currency).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise TemplateDataError(f"a currency must be a 3-letter ISO code, got {currency!r}")
    places = 0 if code in ZERO_DECIMAL else 2
    value = Decimal(cents).scaleb(-places)
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.{places}f}"
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def _one_line(text: str) -> str:
    """A subject is one header line: newlines from the data would be header injection."""
    return " ".join(text.split())


class EmailTemplates:
    """Every template of the package, compiled once; `render` is all a send needs."""

    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self.env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader("tickq.processors", TEMPLATE_DIR),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                default_for_string=False, default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["money"] = money
        files = set(self.env.list_templates())
        stems = {f.rsplit(".", 1)[0] for f in files if not f.startswith("_")}
        #: template name -> its (subject, text, html), compiled now so that a broken template
        #: fails at start-up rather than on a customer's order
        self._compiled: dict[str, tuple[jinja2.Template, ...]] = {
            stem: tuple(self.env.get_template(f"{stem}.{part}") for part in PARTS)
            for stem in sorted(stems) if all(f"{stem}.{part}" in files for part in PARTS)
        }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._compiled)

    def resolve(self, name: str) -> str:
        """The canonical name of a known template; `PermanentError(unknown_template)` if none."""
        canonical = canonical_name(name)
        if not _NAME.match(canonical) or canonical not in self._compiled:
            raise PermanentError(
                f"unknown email template {name!r}; known templates: {', '.join(self.names)}",
                code="unknown_template")
        return canonical

    def render(self, name: str, data: Mapping[str, Any]) -> RenderedEmail:
        template = self.resolve(name)
        subject, text, html = self._compiled[template]
        context = dict(data)
        try:
            return RenderedEmail(template=template, subject=_one_line(subject.render(context)),
                                 text=text.render(context), html=html.render(context))
        except jinja2.UndefinedError as exc:
            # StrictUndefined says "'eventName' is undefined": the variable, by name.
            raise PermanentError(f"email template {template} needs data that is missing: "
                                 f"{exc.message}", code="template_data") from None
        except (TemplateDataError, TypeError) as exc:
            raise PermanentError(f"email template {template} cannot use its data: {exc}",
                                 code="template_data") from None


__all__ = ["ALIASES", "EmailTemplates", "RenderedEmail", "TemplateDataError", "canonical_name",
           "money"]
