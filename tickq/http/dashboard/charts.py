"""The overview's two charts, throughput and failure rate over the last hour, as SVG polylines.

The numbers are the ones `GET /api/v1/queue/metrics/throughput` serves (`Metrics.recent`,
counted from engine events per queue and minute). The points are computed here, so a page is
drawn without JavaScript and the live stream can send new points for the script to swap in; no
chart library is involved.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickq.metrics import Metrics
from tickq.metrics_recent import KEEP_MINUTES

#: the drawing area of a chart, in SVG user units (the element scales to its box)
WIDTH, HEIGHT, PAD = 600.0, 160.0, 8.0


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    #: the polyline's `points` attribute
    points: str
    #: the newest minute's value, as shown beside the chart
    latest: float


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    unit: str
    #: the value the top of the chart stands for
    top: float
    series: tuple[Series, ...]


def _points(values: list[float], top: float) -> str:
    """`values` oldest first, spread across the width, scaled so `top` is the top edge."""
    step = WIDTH / max(1, len(values) - 1)
    span = HEIGHT - 2 * PAD
    return " ".join(f"{i * step:.1f},{HEIGHT - PAD - (v / top) * span:.1f}"
                    for i, v in enumerate(values))


def charts(metrics: Metrics, queues: list[str], now: float,
           minutes: int = KEEP_MINUTES) -> tuple[Chart, Chart]:
    """Completed jobs per minute for each queue, and the share of finished runs that failed
    (all queues together) per minute, over the last `minutes`."""
    rows = metrics.recent.window(now, minutes, queues)
    done: dict[str, list[float]] = {q: [] for q in queues}
    completed_all: dict[float, int] = {}
    failed_all: dict[float, int] = {}
    for row in reversed(rows):  # oldest minute first
        done[row.queue].append(float(row.completed))
        completed_all[row.minute] = completed_all.get(row.minute, 0) + row.completed
        failed_all[row.minute] = failed_all.get(row.minute, 0) + row.failed
    top = max([1.0, *(v for values in done.values() for v in values)])
    throughput = Chart("throughput", "Throughput", "jobs/min", top,
                       tuple(Series(q, _points(done[q], top), done[q][-1] if done[q] else 0.0)
                             for q in queues))
    rates = [100.0 * failed_all[m] / (completed_all[m] + failed_all[m])
             if completed_all[m] + failed_all[m] else 0.0 for m in sorted(completed_all)]
    failure = Chart("failure", "Failure rate", "%", 100.0,
                    (Series("all queues", _points(rates, 100.0),
                            round(rates[-1], 1) if rates else 0.0),))
    return throughput, failure


def chart_points(found: tuple[Chart, Chart]) -> dict[str, dict[str, str]]:
    """Chart key -> series name -> points, for the live stream."""
    return {c.key: {s.name: s.points for s in c.series} for c in found}
