"""This process's memory and CPU use, for `service_memory_usage_bytes`,
`service_cpu_usage_percent` and `GET /metrics/system`.

Memory is read from `/proc/self/statm` where there is one (Linux: resident and virtual size as
they are now); elsewhere only the peak resident size that `getrusage` reports is known. CPU use
is this process's CPU time (every thread, user and system) over the wall time since the previous
reading, as `top` shows it: 100 is one core busy, so a process using two cores reads 200. The
journal's writer process is a process of its own and is not included.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass

#: a CPU reading covers at least this much wall time; an earlier reading repeats the last one,
#: so two scrapes a millisecond apart do not report the noise of that millisecond
MIN_CPU_WINDOW_S = 1.0
_STATM = "/proc/self/statm"


def memory_bytes() -> dict[str, int]:
    """`rss` and `virtual` (when the OS tells) and `peak_rss`, in bytes."""
    out: dict[str, int] = {}
    # Without /proc (not Linux) only the peak is known.
    with contextlib.suppress(OSError, ValueError):
        with open(_STATM, encoding="ascii") as f:
            size, resident = f.read().split()[:2]
        page = os.sysconf("SC_PAGE_SIZE")
        out["rss"] = int(resident) * page
        out["virtual"] = int(size) * page
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    out["peak_rss"] = peak if sys.platform == "darwin" else peak * 1024
    return out


@dataclass(frozen=True, slots=True)
class CpuReading:
    percent: float
    user_s: float
    system_s: float


class CpuMeter:
    """CPU percent over the window since the previous reading (at least MIN_CPU_WINDOW_S)."""

    def __init__(self, min_window_s: float = MIN_CPU_WINDOW_S) -> None:
        self._min = min_window_s
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self._last: float | None = None

    def read(self) -> CpuReading:
        wall, cpu = time.monotonic(), time.process_time()
        elapsed = wall - self._wall
        if self._last is None or elapsed >= self._min:
            # The very first reading uses whatever window there is since the meter started.
            self._last = max(0.0, 100.0 * (cpu - self._cpu) / elapsed) if elapsed > 0 else 0.0
            if elapsed >= self._min:
                self._wall, self._cpu = wall, cpu
        times = os.times()
        return CpuReading(self._last, times.user, times.system)
