"""How long finished jobs are kept, as prune rules the store applies."""

from __future__ import annotations

from tickq.engine.registry import Registry
from tickq.engine.states import JobState
from tickq.storage.base import PruneRule


def retention_rules(registry: Registry, now: float) -> list[PruneRule]:
    """Per job type: completed jobs past the type's retention (or its queue's, when the type
    names none), failed and cancelled ones past the queue's. Per type because one queue holds
    types kept for different times (nft-mint 365 days, payments 90)."""
    rules = []
    for jt in registry.types:
        cfg = registry.queue(jt.queue)
        kept = cfg.completed_retention_s if jt.retention_s is None else jt.retention_s
        rules.append(PruneRule(queue=jt.queue, type=jt.name, state=JobState.COMPLETED,
                               before=now - kept))
        for state in (JobState.FAILED, JobState.CANCELLED):
            rules.append(PruneRule(queue=jt.queue, type=jt.name, state=state,
                                   before=now - cfg.failed_retention_s))
    return rules
