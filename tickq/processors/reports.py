"""`generate-report`: build a report over a tenant's jobs or analytics events, store it, and
hand back where to download it.

Report types (`data.reportType`):

* `jobs`: the tenant's jobs enqueued in the period, counted by type and state; failed jobs are
  further split by their last error (code and message), which is the failure reason.
* `payments`: the tenant's completed `payment-process` and `refund-process` jobs enqueued in the
  period, one row each with the amount, currency, status and Stripe ids from the job's result
  (the amount and currency fall back to the job's data), and totals per currency. Only money
  that moved is totalled: a row whose result reports a status other than succeeded (a payment
  still awaiting 3-D Secure, say) is listed and counted as pending, not added.
* `analytics`: the tenant's analytics events that occurred in the period, counted by type.

The tenant is the job's own; `data.venueId`, when given, keeps only jobs or events that name
that venue. The period is [startDate, endDate): a bare `endDate` date includes that whole day.

Formats: `csv` (the `csv` module; columns as in the JSON rows) and `json` (orjson). `pdf` fails
the job at once: no PDF library is part of the stack, and a job that waits in retries would not
change that.

Work is bounded: jobs are read in pages by id (ids are ordered by creation time, so a period is
a range of ids); at most `MAX_ROWS` jobs or events go into one report, and at most `READ_FACTOR`
times as many jobs of the period are looked at when a filter (venue) drops some. A report that
hit a bound says so (`truncated: true`) in itself and in the job's result.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from tickq.clock import iso
from tickq.engine.job import Job
from tickq.engine.jobtypes import ReportData
from tickq.engine.states import JobState
from tickq.errors import PermanentError
from tickq.processors.background import parse_instant, text_field
from tickq.processors.base import job_data
from tickq.storage.base import JobQuery, Report

if TYPE_CHECKING:
    from tickq.engine.engine import Engine

#: where the HTTP API serves a stored report
DOWNLOAD_PATH = "/api/v1/queue/reports"
REPORT_TYPES = ("analytics", "jobs", "payments")
FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}
#: the most jobs or events one report reads
MAX_ROWS = 100_000
#: jobs read per store call
PAGE = 1_000
#: a report filtered by venue may look at this many times `MAX_ROWS` jobs of its period
READ_FACTOR = 10
#: an id's timestamp can run ahead of the job's created_at when the wall clock stepped back;
#: the scan reads this far past the period's end before it stops
ID_SLACK_S = 3_600.0
#: a failure message longer than this is cut (messages that embed data would split the counts)
MAX_REASON_CHARS = 300
#: statuses of a payment or refund whose money moved; a result without a status counts as one
SETTLED = frozenset({"succeeded", "completed", "paid"})
PAYMENT_TYPES = {"payment-process": "payment", "refund-process": "refund"}
#: keys of a payment's or refund's result that carry a Stripe id, by the column they fill
ID_KEYS = {"paymentIntentId": "paymentIntentId", "paymentIntent": "paymentIntentId",
           "payment_intent": "paymentIntentId", "chargeId": "chargeId", "charge": "chargeId",
           "refundId": "refundId", "refund": "refundId", "transactionId": "transactionId"}
#: a bare `id` in a result, by its Stripe prefix
ID_PREFIXES = {"pi_": "paymentIntentId", "ch_": "chargeId", "re_": "refundId"}


@dataclass(slots=True)
class Table:
    """What a report type produces: rows over `columns`, totals, and how much was read."""

    columns: tuple[str, ...]
    #: the most jobs or events read
    limit: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    #: rows appended after the data rows in CSV only (totals, which JSON has as an object)
    csv_tail: list[dict[str, Any]] = field(default_factory=list)
    #: records that went into the report
    scanned: int = 0
    #: jobs of the period looked at (more than `scanned` when a filter dropped some)
    read: int = 0
    truncated: bool = False


@dataclass(slots=True, frozen=True)
class Request:
    """A validated `generate-report` job."""

    report_type: str
    format: str
    start: float
    end: float
    tenant_id: str | None
    venue_id: str | None


def id_bound(ms: int) -> str:
    """The smallest job id (UUIDv7, see `tickq.engine.ids`) of millisecond `ms`: every id made
    in that millisecond sorts after it, every id of an earlier one before it."""
    h = f"{(max(0, ms) & 0xFFFFFFFFFFFF) << 80:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_request(job: Job) -> Request:
    data = job_data(ReportData, job)
    report_type = data.reportType
    if report_type not in REPORT_TYPES:
        raise PermanentError(f"unknown reportType {report_type!r}"[:200]
                             + f"; one of: {', '.join(REPORT_TYPES)}",
                             code="unknown_report_type")
    fmt = data.format
    if fmt not in FORMATS:
        raise PermanentError(f"format {fmt!r} is not supported"[:200]
                             + f": reports are generated as {' or '.join(FORMATS)}",
                             code="unsupported_format")
    start = parse_instant(data.startDate, "data.startDate")
    end = parse_instant(data.endDate, "data.endDate", end_of_day=True)
    if end <= start:
        raise PermanentError("data.endDate must be after data.startDate", code="invalid_date")
    return Request(report_type, fmt, start, end, job.tenant_id, data.venueId or None)


class ReportMaker:
    """The `generate-report` processor."""

    def __init__(self, engine: Engine, *, max_rows: int = MAX_ROWS) -> None:
        self.engine = engine
        self.max_rows = max_rows

    async def generate(self, job: Job) -> dict[str, Any]:
        req = parse_request(job)
        if req.report_type == "jobs":
            table = await self.jobs_table(req)
        elif req.report_type == "payments":
            table = await self.payments_table(req)
        else:
            table = await self.analytics_table(req)
        now = self.engine.clock.now()
        content = render(req, table, now)
        await self.engine.store.report_put(Report(
            id=job.id, tenant_id=req.tenant_id, user_id=job.user_id, venue_id=req.venue_id,
            report_type=req.report_type, format=req.format, period_start=req.start,
            period_end=req.end, created_at=now, content_type=FORMATS[req.format],
            size=len(content), job_id=job.id, content=content))
        result: dict[str, Any] = {
            "reportId": job.id, "reportType": req.report_type, "format": req.format,
            "size": len(content), "rows": len(table.rows), "scanned": table.scanned,
            "truncated": table.truncated, "downloadUrl": f"{DOWNLOAD_PATH}/{job.id}",
            "period": {"start": iso(req.start), "end": iso(req.end)}}
        if table.truncated:
            result["note"] = (f"the report was cut at its bound of {table.limit} records "
                              f"({table.limit * READ_FACTOR} looked at); narrow the period "
                              "for a complete report")
        return result

    # --- sources ----------------------------------------------------------------------------

    async def scan(self, req: Request, table: Table, *, type: str | None = None,
                   states: frozenset[JobState] | None = None) -> AsyncGenerator[Job, None]:
        """The tenant's jobs enqueued in the period, oldest first, a page at a time; counted
        in `table.read`, and cut (`table.truncated`) past `READ_FACTOR` times its limit."""
        after = id_bound(int(req.start * 1000) - 1)
        stop = id_bound(int((req.end + ID_SLACK_S) * 1000) + 1)
        while True:
            page = await self.engine.list_jobs(JobQuery(
                tenant_id=req.tenant_id, type=type, states=states, after=after, limit=PAGE,
                newest_first=False))
            for job in page:
                if job.id >= stop:
                    return
                # A store reads tenant None as "any tenant"; a job without one reports on
                # jobs without one only.
                if job.tenant_id != req.tenant_id or not req.start <= job.created_at < req.end:
                    continue
                if table.read >= table.limit * READ_FACTOR:
                    table.truncated = True
                    return
                table.read += 1
                yield job
            if len(page) < PAGE:
                return
            after = page[-1].id

    async def jobs_table(self, req: Request) -> Table:
        table = Table(("type", "state", "failureCode", "failureReason", "count"),
                      self.max_rows)
        counts: Counter[tuple[str, str, str, str]] = Counter()
        async with contextlib.aclosing(self.scan(req, table)) as jobs:
            async for job in jobs:
                if req.venue_id is not None and _venue(job.data) != req.venue_id:
                    continue
                if table.scanned >= table.limit:
                    table.truncated = True
                    break
                table.scanned += 1
                code = reason = ""
                if job.state is JobState.FAILED and job.errors:
                    last = job.errors[-1]
                    code, reason = last.code or last.type, last.message[:MAX_REASON_CHARS]
                counts[(job.type, job.state.value, code, reason)] += 1
        by_state: Counter[str] = Counter()
        for (type_name, state, code, reason), n in sorted(counts.items()):
            table.rows.append({"type": type_name, "state": state, "failureCode": code or None,
                               "failureReason": reason or None, "count": n})
            by_state[state] += n
        table.totals = {"jobs": table.scanned, "byState": dict(sorted(by_state.items()))}
        return table

    async def payments_table(self, req: Request) -> Table:
        table = Table(("jobId", "type", "status", "createdAt", "finishedAt", "venueId",
                       "userId", "amount", "currency", "paymentIntentId", "chargeId",
                       "refundId", "transactionId"), self.max_rows)
        totals: dict[str, dict[str, int]] = {}
        completed = frozenset({JobState.COMPLETED})
        for type_name, kind in PAYMENT_TYPES.items():
            async with contextlib.aclosing(self.scan(req, table, type=type_name,
                                                     states=completed)) as jobs:
                async for job in jobs:
                    data = job.data if isinstance(job.data, dict) else {}
                    if req.venue_id is not None and _venue(data) != req.venue_id:
                        continue
                    if table.scanned >= table.limit:
                        table.truncated = True
                        break
                    table.scanned += 1
                    row = payment_row(job, kind, data)
                    table.rows.append(row)
                    add_to_totals(totals, kind, row)
        table.rows.sort(key=lambda row: str(row["jobId"]))
        for bucket in totals.values():
            bucket["net"] = bucket["charged"] - bucket["refunded"]
        table.totals = {"byCurrency": dict(sorted(totals.items()))}
        for currency, bucket in sorted(totals.items()):
            for name in ("charged", "refunded", "net"):
                table.csv_tail.append({"type": f"total-{name}", "currency": currency,
                                       "amount": bucket[name]})
        return table

    async def analytics_table(self, req: Request) -> Table:
        table = Table(("eventType", "count"), self.max_rows)
        events = await self.engine.store.events_query(
            req.tenant_id, req.start, req.end, venue_id=req.venue_id, limit=table.limit + 1)
        if len(events) > table.limit:
            table.truncated = True
            events = events[: table.limit]
        table.scanned = len(events)
        counts = Counter(e.event_type for e in events)
        table.rows = [{"eventType": name, "count": n}
                      for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        table.totals = {"events": len(events), "eventTypes": len(counts)}
        return table


def add_to_totals(totals: dict[str, dict[str, int]], kind: str, row: Mapping[str, Any]) -> None:
    bucket = totals.setdefault(row["currency"] or "unknown", {
        "payments": 0, "charged": 0, "refunds": 0, "refunded": 0, "pending": 0,
        "unknownAmount": 0})
    if row["status"] not in SETTLED:
        bucket["pending"] += 1
    elif row["amount"] is None:
        bucket["unknownAmount"] += 1
    elif kind == "payment":
        bucket["payments"] += 1
        bucket["charged"] += row["amount"]
    else:
        bucket["refunds"] += 1
        bucket["refunded"] += row["amount"]


def payment_row(job: Job, kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """One completed payment or refund: what its result says, else what it was asked to do."""
    result = job.result
    if not isinstance(result, dict):
        result = {}
    inner = result.get("data")
    if not isinstance(inner, dict):
        inner = {}
    sources: tuple[dict[str, Any], ...] = (result, inner)

    def pick(name: str) -> Any:
        return next((s[name] for s in sources if s.get(name) is not None), None)

    amount = pick("amount")
    if not isinstance(amount, int) or isinstance(amount, bool):
        amount = data.get("amount")
        if not isinstance(amount, int) or isinstance(amount, bool):
            amount = None
    currency = pick("currency") or data.get("currency")
    status = pick("status")
    ids: dict[str, str | None] = dict.fromkeys(("paymentIntentId", "chargeId", "refundId",
                                                "transactionId"))
    for source in sources:
        for key, value in source.items():
            if not isinstance(value, str):
                continue
            column = ID_KEYS.get(key) or (ID_PREFIXES.get(value[:3]) if key == "id" else None)
            if column is not None and ids[column] is None:
                ids[column] = value
    if ids["transactionId"] is None:
        ids["transactionId"] = text_field(data, "transactionId")
    return {"jobId": job.id, "type": kind,
            "status": status if isinstance(status, str) else "completed",
            "createdAt": iso(job.created_at),
            "finishedAt": iso(job.finished_at) if job.finished_at is not None else None,
            "venueId": text_field(data, "venueId"), "userId": text_field(data, "userId"),
            "amount": amount,
            "currency": currency.upper() if isinstance(currency, str) and currency else None,
            **ids}


def render(req: Request, table: Table, now: float) -> bytes:
    if req.format == "json":
        return orjson.dumps({
            "reportType": req.report_type, "tenantId": req.tenant_id, "venueId": req.venue_id,
            "period": {"start": iso(req.start), "end": iso(req.end)}, "generatedAt": iso(now),
            "columns": list(table.columns), "rows": table.rows, "totals": table.totals,
            "scanned": table.scanned, "truncated": table.truncated,
            "rowLimit": table.limit}, option=orjson.OPT_INDENT_2)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=table.columns, extrasaction="raise")
    writer.writeheader()
    for row in (*table.rows, *table.csv_tail):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue().encode()


#: a cell starting with one of these is a formula to a spreadsheet
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: failure messages, venue and user ids come
    from callers, and a leading '=' would make them a formula (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _venue(data: Any) -> str | None:
    return text_field(data, "venueId") if isinstance(data, dict) else None
