"""What a failed Stripe call means for the job that made it.

Stripe answers every failure with an HTTP status and an error object (`type`, `code`,
`message`); the SDK turns them into exception classes. The engine only needs to know which of
four things happened, so each failure becomes one of the processor errors of `tickq.errors`:

* the request can never succeed as sent (a declined card, an invalid request, a bad API key, a
  4xx other than 408/409/429): `PermanentError` with Stripe's code, straight to the dead-letter
  queue, where an operator sees `card_declined` rather than a stack trace;
* Stripe asked us to slow down (429): `RateLimited`, so the job waits without spending an
  attempt and the provider's bucket cools down for Retry-After (1 s when Stripe sends none);
* Stripe is failing or unreachable (5xx, no answer, a timeout): `ProviderError`, retried with
  backoff and counted against the provider's circuit breaker;
* the request collided with another one (408, 409: a concurrent request with the same
  Idempotency-Key): `ProviderError` with its 4xx status, retried, but not held against Stripe's
  health.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TypeVar

import aiohttp
import stripe

from tickq.errors import PermanentError, ProcessorError, ProviderError, RateLimited

T = TypeVar("T")

#: the pause after a 429 when Stripe does not say how long
DEFAULT_RETRY_AFTER_S = 1.0
#: a Retry-After longer than this is not believed (a misbehaving proxy must not park jobs for
#: a day); the engine's cooldown for the bucket still applies
MAX_RETRY_AFTER_S = 300.0
#: 4xx statuses that say "try again", not "this request is wrong"
RETRYABLE_4XX = frozenset({408, 409})


def stripe_code(exc: stripe.StripeError) -> str | None:
    """Stripe's machine-readable code (`card_declined`, `resource_missing`, ...), if any."""
    if exc.code:
        return exc.code
    error = exc.error
    code = getattr(error, "code", None) if error is not None else None
    return code if isinstance(code, str) and code else None


def retry_after(headers: Mapping[str, str] | None) -> float:
    """Seconds from a Retry-After header (a number of seconds), else the default."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                seconds = float(value.strip())
            except ValueError:
                break  # an HTTP date: rare enough from an API to take the default
            if seconds >= 0:
                return min(seconds, MAX_RETRY_AFTER_S)
            break
    return DEFAULT_RETRY_AFTER_S


def translate(exc: stripe.StripeError, provider: str) -> ProcessorError:
    """The processor error a Stripe SDK exception stands for (see the module docstring)."""
    status = exc.http_status
    code = stripe_code(exc)
    message = exc.user_message or exc.__class__.__name__
    if isinstance(exc, stripe.RateLimitError):
        return RateLimited(f"Stripe rate limited the request: {message}",
                           retry_after=retry_after(exc.headers), provider=provider,
                           code=code or "rate_limited")
    if isinstance(exc, stripe.CardError):
        return PermanentError(f"Stripe declined the card: {message}",
                              code=code or "card_declined")
    if isinstance(exc, stripe.AuthenticationError):
        return PermanentError(f"Stripe refused the API key (check STRIPE_SECRET_KEY): {message}",
                              code="stripe_auth")
    if isinstance(exc, stripe.PermissionError):
        return PermanentError(f"the Stripe API key may not do this: {message}",
                              code="stripe_permission")
    if isinstance(exc, stripe.IdempotencyError):
        return PermanentError(f"Stripe refused the Idempotency-Key (reused with other "
                              f"parameters): {message}", code="idempotency_error")
    if isinstance(exc, stripe.APIConnectionError) or status is None:
        return ProviderError(f"no answer from Stripe: {message}", status=None,
                             provider=provider, code="stripe_unreachable")
    if status in RETRYABLE_4XX:
        return ProviderError(f"Stripe answered {status}, try again: {message}", status=status,
                             provider=provider, code=code or "stripe_conflict")
    if status >= 500:
        return ProviderError(f"Stripe failed with {status}: {message}", status=status,
                             provider=provider, code=code or "stripe_unavailable")
    return PermanentError(f"Stripe refused the request ({status}): {message}",
                          code=code or "invalid_request")


async def call(provider: str, request: Awaitable[T]) -> T:
    """Await one Stripe request, turning any failure into the error the engine understands.

    The SDK wraps most transport failures in `APIConnectionError`, but a timeout or a reset
    while the body is being read escapes as the transport's own exception; both mean "no
    answer"."""
    try:
        return await request
    except stripe.StripeError as exc:
        raise translate(exc, provider) from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ProviderError(f"no answer from Stripe: {exc.__class__.__name__}: {exc}",
                            status=None, provider=provider, code="stripe_unreachable") from exc


__all__ = ["DEFAULT_RETRY_AFTER_S", "call", "retry_after", "stripe_code", "translate"]
