"""JSON encoding for values that stay in memory (a job's data, result and error history).

orjson returns its working buffer as the `bytes` object without shrinking it: since 3.12 that is
at least ~4 KB however short the JSON, and the allocation lasts as long as the object does. A
waiting job keeps its data for its whole wait, so a backlog of short jobs held 4 KB apiece (a
million 80-byte payloads: 4 GB), and allocating those fresh large blocks made an enqueue several
times slower than the encoding itself. Copying into an exact-size object costs a fraction of a
microsecond and lets the big buffer be reused at once. Bodies that are written out and dropped
(HTTP responses, log lines) do not need this.
"""

from __future__ import annotations

from typing import Any

import orjson


def dumps_kept(value: Any) -> bytes:
    """`orjson.dumps(value)` in an exact-size `bytes`, for values that are kept."""
    return bytes(memoryview(orjson.dumps(value)))
