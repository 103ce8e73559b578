"""What every integration (Stripe, Solana, SMTP, ...) offers the service.

An integration owns its clients (connection pools, keys) for the life of the service, hands the
engine one processor per job type it serves, and says whether it can work: `not_configured` when
a setting it needs is missing (its jobs then fail with that reason instead of pretending to
succeed), `degraded` when a provider it calls has its circuit breaker open, `ready` otherwise.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import pydantic

from tickq.engine.job import Job
from tickq.errors import PermanentError

Processor = Callable[[Job], Awaitable[Any]]
D = TypeVar("D", bound=pydantic.BaseModel)


class Readiness(StrEnum):
    READY = "ready"
    DEGRADED = "degraded"
    NOT_CONFIGURED = "not_configured"


@dataclass(slots=True, frozen=True)
class IntegrationStatus:
    name: str
    status: Readiness
    #: the breaker/limiter providers this integration calls, with their breaker state
    providers: Mapping[str, str] = field(default_factory=dict)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status.value, "providers": dict(self.providers)}
        if self.message:
            body["message"] = self.message
        return body


class Integration(abc.ABC):
    """Base class: subclasses set `name`, `job_types` and `providers`, fill `missing` with the
    settings they lack, and implement `processors`, and `start`/`close` when they hold clients."""

    #: short name shown in readiness ("stripe", "solana", "email", ...)
    name: str = ""
    #: the job types this integration processes
    job_types: tuple[str, ...] = ()
    #: provider names (as in the limiter and breaker board) its calls count against
    providers: tuple[str, ...] = ()

    def __init__(self) -> None:
        #: environment variables that must be set before this integration can work
        self.missing: list[str] = []

    @property
    def configured(self) -> bool:
        return not self.missing

    @property
    def why_not_configured(self) -> str:
        return f"{self.name} is not configured: set {', '.join(self.missing)}"

    @abc.abstractmethod
    def processors(self) -> Mapping[str, Processor]:
        """Job type -> processor. Only asked when `configured`."""

    async def start(self) -> None:  # noqa: B027  (optional hook: most hold no client)
        """Open clients. Called once before the engine starts, only when `configured`."""

    async def close(self) -> None:  # noqa: B027  (optional hook: most hold no client)
        """Close clients. Called once after the engine has stopped; must be safe to call when
        `start` was never called or failed half way."""


def not_configured(reason: str) -> Processor:
    """A processor that fails every job with `reason` (to the dead-letter queue at once: no
    retry can help until someone sets the missing configuration and retries it from there)."""

    async def refuse(job: Job) -> Any:
        raise PermanentError(reason, code="not_configured")

    return refuse


def job_data(model: type[D], job: Job) -> D:
    """The job's data as its type's contract. The data was checked at enqueue, so this fails
    only for a job left by another version; data that does not fit cannot succeed on a retry."""
    try:
        return model.model_validate(job.data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise PermanentError(f"{job.type} data is invalid: {problems}",
                             code="invalid_job_data") from None

