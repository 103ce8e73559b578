"""Kept JSON is stored at its own size, not in the encoder's working buffer."""

from __future__ import annotations

import time
import tracemalloc

import orjson

from tickq.engine.ids import IdGenerator
from tickq.engine.jobtypes import BUILTIN_TYPES
from tickq.engine.jsonbytes import dumps_kept
from tickq.engine.producer import JobSpec, build_job
from tickq.engine.registry import Registry


def _allocated_per_item(make: object, n: int = 2000) -> float:
    assert callable(make)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return (after - before) / n


def test_dumps_kept_equals_orjson_and_is_exact_size() -> None:
    value = {"userId": "u1", "title": "Doors open", "n": [1, 2.5, None, True]}
    assert dumps_kept(value) == orjson.dumps(value)
    per_item = _allocated_per_item(lambda i: dumps_kept({"n": i, "title": "Doors open"}))
    assert per_item < 200, f"{per_item:.0f} bytes kept per 30-byte document"


def test_a_built_job_keeps_its_data_at_its_own_size() -> None:
    registry, ids, now = Registry(types=BUILTIN_TYPES), IdGenerator(), time.time()

    def make(i: int) -> object:
        data = {"userId": f"u{i}", "title": f"Doors open {i}", "body": "Starts in one hour."}
        return build_job(registry, ids, JobSpec(type="send-push", data=data), now).data_json

    assert _allocated_per_item(make) < 300
