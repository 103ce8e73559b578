"""The job a cron schedule enqueues at each slot, stored in the API's own shape:
`{"queue", "type", "data", "options": {"priority", "delay" (ms), "attempts", "orderingKey"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tickq.engine.producer import JobSpec
from tickq.engine.registry import Registry
from tickq.errors import ValidationError


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTemplate:
    queue: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    priority: int | None = None
    #: milliseconds after its slot the job may start (the API's unit)
    delay_ms: float = 0
    attempts: int | None = None
    ordering_key: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(self.view())

    def view(self) -> dict[str, Any]:
        options: dict[str, Any] = {"priority": self.priority, "delay": self.delay_ms or None,
                                   "attempts": self.attempts, "orderingKey": self.ordering_key}
        return {"queue": self.queue, "type": self.type, "data": self.data,
                "options": {k: v for k, v in options.items() if v is not None}}

    @classmethod
    def from_json(cls, raw: bytes) -> JobTemplate:
        value = orjson.loads(raw)
        options = value.get("options") or {}
        return cls(queue=value["queue"], type=value["type"], data=value.get("data") or {},
                   priority=options.get("priority"), delay_ms=options.get("delay", 0),
                   attempts=options.get("attempts"), ordering_key=options.get("orderingKey"))

    def spec(self, registry: Registry, *, key: str, tenant_id: str | None,
             user_id: str | None) -> JobSpec:
        """The enqueue of one slot. The type must still run on the template's queue (the
        registry may have changed since the schedule was made)."""
        jt = registry.job_type(self.type)
        if jt.queue != self.queue:
            raise ValidationError(f"job type {jt.name!r} runs on the {jt.queue!r} queue, not "
                                  f"{self.queue!r}", code="queue_mismatch", field="type")
        return JobSpec(type=self.type, data=self.data, priority=self.priority,
                       delay_s=self.delay_ms / 1000, idempotency_key=key, tenant_id=tenant_id,
                       user_id=user_id, max_attempts=self.attempts,
                       ordering_key=self.ordering_key)
