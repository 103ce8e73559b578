"""Turning what a caller asks for into a job record: validation, defaults, keys, ids.

Everything here runs before anything is written, so a refused job (or a refused batch) leaves no
trace. Pure: the time and the id generator are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tickq.engine.ids import IdGenerator
from tickq.engine.job import Job, new_waiting
from tickq.engine.jsonbytes import dumps_kept
from tickq.engine.queues import QueueConfig
from tickq.engine.registry import PRIORITY_MAX, PRIORITY_MIN, JobType, Registry
from tickq.errors import JobDataError, ValidationError

#: data larger than this is refused at enqueue (the journal is not a blob store)
MAX_DATA_BYTES = 1_000_000


@dataclass(slots=True, kw_only=True)
class JobSpec:
    """One job to enqueue; every field but `type` and `data` is optional.

    Not frozen: a frozen dataclass sets each field through `object.__setattr__`, which doubled
    the cost of making one (a microsecond per job, at tens of thousands of jobs a second).
    Nothing keeps a spec after the job is built."""

    type: str
    data: Any
    priority: int | None = None
    delay_s: float = 0.0
    run_at: float | None = None
    idempotency_key: str | None = None
    tenant_id: str | None = None
    user_id: str | None = None
    max_attempts: int | None = None
    expires_in_s: float | None = None
    callback_url: str | None = None
    ordering_key: str | None = None


class Enqueued(NamedTuple):
    job: Job
    #: False when an idempotency key matched an existing job, which is returned instead
    created: bool


def build_job(registry: Registry, ids: IdGenerator, spec: JobSpec, now: float) -> Job:
    """A new waiting job for `spec`, or a `ValidationError` naming what is wrong."""
    [built] = build_jobs(registry, ids, [spec], now)
    if isinstance(built, ValidationError):
        raise built
    return built


def build_jobs(registry: Registry, ids: IdGenerator, specs: Sequence[JobSpec], now: float
               ) -> list[Job | ValidationError]:
    """`build_job` for each spec, in order, with each one's error in its place.

    The data of all specs of one type is validated in one call (most of the cost of building a
    job, paid per batch instead of per job); ids are still given out in the specs' order, so a
    batch keeps its enqueue order."""
    errors: dict[int, ValidationError] = {}
    data: list[Any] = [None] * len(specs)
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.type, []).append(i)
    types: dict[str, _Defaults] = {}
    for name, members in groups.items():
        try:
            jt = registry.job_type(name)
            types[name] = _Defaults(jt, registry.queue(jt.queue))
        except ValidationError as exc:
            errors.update(dict.fromkeys(members, exc))
            continue
        checked = registry.validate_many(jt, [specs[i].data for i in members])
        for i, value in zip(members, checked, strict=True):
            if isinstance(value, JobDataError):
                errors[i] = value
            else:
                data[i] = value
    out: list[Job | ValidationError] = []
    for i, spec in enumerate(specs):
        error = errors.get(i)
        if error is None:
            try:
                out.append(_assemble(types[spec.type], ids, spec, data[i], now))
                continue
            except ValidationError as exc:
                error = exc
        out.append(error)
    return out


class _Defaults:
    """What a job type and its queue give every job that does not say otherwise, looked up
    once per type and batch rather than once per job."""

    __slots__ = ("expires_in", "key_rule", "max_attempts", "name", "priority", "queue")

    def __init__(self, jt: JobType, cfg: QueueConfig) -> None:
        self.name = jt.name
        self.queue = jt.queue
        self.priority = jt.priority
        self.max_attempts = jt.max_attempts or cfg.max_attempts
        self.expires_in = cfg.expiry_s
        self.key_rule = jt.key_rule


def _assemble(d: _Defaults, ids: IdGenerator, spec: JobSpec, data: Any, now: float) -> Job:
    """The record for `spec` whose data its type's schema has already checked."""
    priority = spec.priority
    if priority is None:
        priority = d.priority
    elif not (type(priority) is int and PRIORITY_MIN <= priority <= PRIORITY_MAX):
        priority = Registry.validate_priority(priority)  # an int subclass, or refused
    if spec.run_at is not None:
        if not (type(spec.run_at) in _NUMBERS and -_INF < spec.run_at < _INF):
            raise ValidationError("run_at must be a finite time", code="invalid_run_at",
                                  field="run_at")
        run_at = max(now, spec.run_at)
    else:
        # One chained comparison rejects negatives, NaN and infinity alike.
        delay = spec.delay_s
        if not (type(delay) in _NUMBERS and 0 <= delay < _INF):
            raise ValidationError(f"delay must be >= 0 seconds, got {delay!r}",
                                  code="invalid_delay", field="delay")
        run_at = now + delay
    max_attempts = spec.max_attempts
    if max_attempts is None:
        max_attempts = d.max_attempts
    elif not (type(max_attempts) is int and 1 <= max_attempts <= 100):
        raise ValidationError("max_attempts must be 1..100", code="invalid_max_attempts",
                              field="max_attempts")
    expires_in = spec.expires_in_s
    if expires_in is None:
        expires_in = d.expires_in
    elif not (type(expires_in) in _NUMBERS and 0 < expires_in < _INF):
        raise ValidationError("expires_in must be > 0 seconds", code="invalid_expiry",
                              field="expires_in")
    key = spec.idempotency_key
    if key is not None:
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise ValidationError("idempotency key must be 1..255 characters",
                                  code="invalid_idempotency_key", field="idempotency_key")
    elif d.key_rule is not None:
        key = d.key_rule(data, now)
    try:
        data_json = dumps_kept(data)
    except TypeError as exc:
        raise JobDataError(f"data for {d.name} is not JSON: {exc}", field="data") from None
    if len(data_json) > MAX_DATA_BYTES:
        raise JobDataError(f"data for {d.name} is {len(data_json)} bytes; the limit is "
                           f"{MAX_DATA_BYTES}", field="data")
    return new_waiting(ids.new(now), d.queue, d.name, data_json, priority, max_attempts, run_at,
                       now, spec.tenant_id, spec.user_id, key, run_at + expires_in,
                       spec.callback_url, spec.ordering_key)


#: exact types on purpose: bool is an int subclass, and True is not a delay
_NUMBERS = (int, float)
_INF = math.inf
