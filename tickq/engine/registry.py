"""Job types and queues known to an engine, and the validation an enqueue goes through."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from tickq.engine.backoff import BackoffPolicy
from tickq.engine.queues import DEFAULT_QUEUES, QueueConfig
from tickq.errors import JobDataError, UnknownJobTypeError, UnknownQueueError, ValidationError

#: Builds an idempotency key from a job's (validated) data and the enqueue time.
KeyRule = Callable[[Mapping[str, Any], float], str]

PRIORITY_MIN, PRIORITY_MAX = 1, 10


@dataclass(frozen=True, slots=True, kw_only=True)
class JobType:
    """Everything the engine needs to know about one kind of job."""

    name: str
    queue: str
    priority: int = 5
    #: per-attempt time limit; None uses the queue's
    timeout_s: float | None = None
    #: pydantic model the data must satisfy; None accepts any JSON object
    schema: type[pydantic.BaseModel] | None = None
    #: derives a key when the caller gives none; None means "no key unless the caller gives one"
    key_rule: KeyRule | None = None
    #: how long a completed job keeps holding its idempotency key
    key_ttl_s: float = 86_400.0
    #: overrides of the queue's retry settings
    max_attempts: int | None = None
    backoff: BackoffPolicy | None = None
    #: how long completed jobs of this type are kept; None uses the queue's
    retention_s: float | None = None
    #: the rate-limit bucket (provider or group) the job draws on
    provider: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a job type needs a name")
        if not PRIORITY_MIN <= self.priority <= PRIORITY_MAX:
            raise ValueError(f"default priority of {self.name} must be 1..10")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if self.key_ttl_s < 0:
            raise ValueError("key_ttl_s must be >= 0")


class Registry:
    """The queues and job types of one engine. Users add their own next to the built-in ones."""

    def __init__(self, queues: tuple[QueueConfig, ...] = DEFAULT_QUEUES,
                 types: tuple[JobType, ...] = ()) -> None:
        self._queues: dict[str, QueueConfig] = {}
        self._types: dict[str, JobType] = {}
        #: job type -> (its schema, a validator of lists of it), made on first use
        self._adapters: dict[str, tuple[Any, pydantic.TypeAdapter[list[Any]]]] = {}
        for q in queues:
            self.add_queue(q)
        for t in types:
            self.add_type(t)

    def add_queue(self, queue: QueueConfig, *, replace: bool = False) -> None:
        if queue.name in self._queues and not replace:
            raise ValueError(f"queue {queue.name!r} is already registered")
        self._queues[queue.name] = queue

    def add_type(self, job_type: JobType, *, replace: bool = False) -> None:
        if job_type.queue not in self._queues:
            raise UnknownQueueError(
                f"job type {job_type.name!r} names queue {job_type.queue!r}, "
                "which is not registered"
            )
        if job_type.name in self._types and not replace:
            raise ValueError(f"job type {job_type.name!r} is already registered")
        self._types[job_type.name] = job_type

    def queue(self, name: str) -> QueueConfig:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueueError(
                f"unknown queue {name!r}; known queues: {', '.join(sorted(self._queues))}",
                field="queue") from None

    def job_type(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; register it first or use one of: "
                f"{', '.join(sorted(self._types))}", field="type") from None

    @property
    def queues(self) -> tuple[QueueConfig, ...]:
        return tuple(self._queues.values())

    @property
    def types(self) -> tuple[JobType, ...]:
        return tuple(self._types.values())

    # --- validation --------------------------------------------------------------------

    @property
    def validator_count(self) -> int:
        """How many batch validators (one per job type validated in bulk) have been built."""
        return len(self._adapters)

    def validate_data(self, job_type: JobType, data: Any) -> Any:
        """The job's data, checked against the type's schema and normalised (defaults filled)."""
        if job_type.schema is None:
            if not isinstance(data, dict):
                raise JobDataError(f"data for {job_type.name} must be a JSON object", field="data")
            return data
        try:
            model = job_type.schema.model_validate(data)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            details = [{"field": _path(e["loc"]), "message": e["msg"], "code": e["type"]}
                       for e in errors]
            problems = "; ".join(f"{d['field']}: {d['message']}" for d in details)
            raise JobDataError(f"data for {job_type.name} is invalid: {problems}",
                               field="data", details=details) from None
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    def validate_many(self, job_type: JobType, items: Sequence[Any]
                      ) -> list[Any | JobDataError]:
        """`validate_data` for many items of one type, each result or error in its place.

        One pydantic call checks and dumps the whole list; only when some item is invalid is
        the list checked again item by item, to say which and why."""
        if job_type.schema is None or len(items) < 2:
            return self._one_by_one(job_type, items)
        adapter = self._list_adapter(job_type)
        try:
            models = adapter.validate_python(items)
        except pydantic.ValidationError:
            # some item is invalid: check them one by one to say which, and why
            return self._one_by_one(job_type, items)
        dumped: list[Any] = adapter.dump_python(models, mode="json", by_alias=True,
                                                exclude_none=True)
        return dumped

    def _one_by_one(self, job_type: JobType, items: Sequence[Any]) -> list[Any | JobDataError]:
        out: list[Any | JobDataError] = []
        for item in items:
            try:
                out.append(self.validate_data(job_type, item))
            except JobDataError as exc:
                out.append(exc)
        return out

    def _list_adapter(self, job_type: JobType) -> pydantic.TypeAdapter[list[Any]]:
        made = self._adapters.get(job_type.name)
        if made is None or made[0] is not job_type.schema:
            schema = job_type.schema
            listed: Any = list[schema]  # type: ignore[valid-type]
            made = self._adapters[job_type.name] = (schema, pydantic.TypeAdapter(listed))
        return made[1]

    @staticmethod
    def validate_priority(priority: int) -> int:
        if isinstance(priority, bool) or not isinstance(priority, int) or not (
            PRIORITY_MIN <= priority <= PRIORITY_MAX
        ):
            raise ValidationError(f"priority must be a whole number from 1 to 10, got {priority!r}",
                                  code="invalid_priority", field="priority")
        return priority


def _path(loc: tuple[int | str, ...]) -> str:
    """('seats', 0, 'id') -> 'data.seats[0].id': where in the job's data a problem is."""
    path = "data"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path
