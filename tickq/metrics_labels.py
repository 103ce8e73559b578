"""Label handling shared by the metrics: capping the values callers choose, and looking a
labelled metric's child up once per label values.

prometheus_client's `labels(...)` validates and locks on every call, which made it the largest
cost of counting one job event; the children never change once made, so each is kept.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

#: distinct values one label of one metric may take before the rest are counted as OTHER
MAX_LABEL_VALUES = 100
#: longest label value kept; longer ones are cut
MAX_LABEL_LENGTH = 64
OTHER = "other"
UNKNOWN = "unknown"

M = TypeVar("M", bound=MetricWrapperBase)


class LabelGuard:
    """Label values as given until `limit` distinct ones were seen, then OTHER for new ones."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: object) -> str:
        if not isinstance(value, str) or not value.strip():
            return UNKNOWN
        text = value.strip()[:MAX_LABEL_LENGTH]
        if text in self._seen:
            return text
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(text)
        return text


class Children(Generic[M]):
    """`children(*values)` is `metric.labels(*values)`, made once per distinct values. Only for
    label values from a bounded set (queues, job types, outcomes, or a `LabelGuard`'s output)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
