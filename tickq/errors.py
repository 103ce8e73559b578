"""Every error tickq raises or understands.

Two families: errors the API raises at its caller (`TickqError` and subclasses, each with a
machine-readable `code`), and errors a processor raises to tell the engine what happened
(`RetryableError` and its `ProviderError`, `PermanentError`, `RateLimited`, `CircuitOpen`). Any
other exception a processor raises is treated as retryable.
"""

from __future__ import annotations


class TickqError(Exception):
    """Base of errors raised to callers. `code` is stable and machine-readable."""

    code = "tickq_error"

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.job_id = job_id


class ValidationError(TickqError):
    """Input was refused before anything was written.

    `field` names the one offending input when there is one; `details` lists every problem
    (`{"field": ..., "message": ..., "code": ...}`) when a request had several, so that a client
    can fix them all in one round trip."""

    code = "validation_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.field = field
        self.details = details


class UnknownQueueError(ValidationError):
    code = "unknown_queue"


class UnknownJobTypeError(ValidationError):
    code = "unknown_job_type"


class JobDataError(ValidationError):
    code = "invalid_job_data"


class JobNotFoundError(TickqError):
    code = "job_not_found"


class NotFoundError(TickqError):
    """A named resource other than a job (a queue, a provider) does not exist (HTTP 404)."""

    code = "not_found"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IllegalTransitionError(TickqError):
    """A state change the state machine does not allow was attempted."""

    code = "illegal_transition"


class IdempotencyConflictError(TickqError):
    """The idempotency key is held by another job (e.g. a DLQ retry after the key was reused)."""

    code = "idempotency_conflict"


class StoreLockedError(TickqError):
    """Another process owns the journal file."""

    code = "store_locked"


class StoreClosedError(TickqError):
    code = "store_closed"


class JobTimeoutError(TickqError):
    """`Engine.result` gave up waiting, or a processor exceeded its type's timeout."""

    code = "timeout"


class PayloadTooLargeError(TickqError):
    """A request body exceeded the configured limit (HTTP 413)."""

    code = "payload_too_large"


class AuthenticationError(TickqError):
    """No credentials, or credentials that do not verify (HTTP 401). `code` says which."""

    code = "unauthorized"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PermissionDeniedError(TickqError):
    """Authenticated, but the role or scope does not allow the action (HTTP 403)."""

    code = "forbidden"

    def __init__(self, message: str = "insufficient permissions", *,
                 code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(TickqError):
    code = "config_error"


class ListenError(TickqError):
    """The HTTP server could not bind its address (in use, not permitted, unknown host)."""

    code = "listen_failed"


# --- raised by processors -------------------------------------------------------------------


class ProcessorError(Exception):
    """Base for the errors a processor raises to steer the engine."""

    retryable = True

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class RetryableError(ProcessorError):
    """A transient failure: spend an attempt and retry after the backoff."""


class PermanentError(ProcessorError):
    """Retrying cannot help (card declined, invalid request): straight to the dead-letter queue."""

    retryable = False


class ProviderError(RetryableError):
    """A call to an external provider failed on the provider's side.

    `status` is the HTTP status when there was a response (None when there was none: reset,
    DNS failure, no reply). A 5xx or no response counts against the provider's circuit breaker;
    a 4xx is the request's fault, so it is retried like any `RetryableError` but says nothing
    about the provider's health.
    """

    def __init__(self, message: str = "provider error", *, status: int | None = None,
                 provider: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.provider = provider

    @property
    def is_fault(self) -> bool:
        """True when the provider itself is failing (no response, or a 5xx)."""
        return self.status is None or self.status >= 500


class RateLimited(ProcessorError):
    """The provider said slow down. The job is deferred without spending an attempt."""

    def __init__(self, message: str = "rate limited", *, retry_after: float = 1.0,
                 provider: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(0.0, float(retry_after))
        self.provider = provider


class CircuitOpen(ProcessorError):
    """The provider's breaker is open. The job is deferred without spending an attempt."""

    def __init__(self, message: str = "circuit open", *, retry_after: float = 1.0,
                 provider: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))
        self.provider = provider
