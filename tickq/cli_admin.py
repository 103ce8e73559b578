"""Operator commands that talk to a running server over its HTTP API: `jobs`, `queues`, `dlq`
and `limits`.

They go through the API rather than opening the journal so that they work against any
deployment (SQLite or PostgreSQL, local or remote), obey the same roles, and leave the same audit
trail as any other client. The standard library's urllib is enough for one request per command
and keeps the CLI free of an event loop.

Output is an aligned table by default and the server's JSON with `--json`. Exit codes: 0 done,
1 the server refused (its error message is printed) or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

DEFAULT_URL = "http://127.0.0.1:3011"
API = "/api/v1/queue"
TIMEOUT_S = 30.0

EXIT_OK, EXIT_FAILED = 0, 1

Row = Sequence[Any]
Show = Callable[[Any], None]


class ApiError(Exception):
    """A request that did not succeed, with the message to show."""


def add_commands(commands: Any) -> None:
    """Add the admin subcommands to `tickq`'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the action must survive the action's own parser (the
    # parsers share these actions, so no parser may set a default for them: read with getattr)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"server base URL (default: $TICKQ_URL or {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help="bearer token (default: $TICKQ_TOKEN)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the server's JSON")

    jobs = commands.add_parser("jobs", parents=[common], help="list, show, retry, cancel jobs")
    sub = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", parents=[common], help="newest jobs first")
    listing.add_argument("--queue")
    listing.add_argument("--state", help="comma-separated states")
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (("get", "show one job"), ("retry", "retry a failed job"),
                       ("cancel", "cancel a job")):
        one = sub.add_parser(name, parents=[common], help=text)
        one.add_argument("id")
    jobs.set_defaults(run=cmd_jobs)

    queues = commands.add_parser("queues", parents=[common], help="list, pause, resume queues")
    sub = queues.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", parents=[common], help="every queue with its counts (default)")
    for name in ("pause", "resume"):
        sub.add_parser(name, parents=[common], help=f"{name} a queue").add_argument("name")
    queues.set_defaults(run=cmd_queues)

    dlq = commands.add_parser("dlq", parents=[common], help="dead-letter jobs: list, retry")
    sub = dlq.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", parents=[common], help="failed jobs, newest first (default)")
    sub.add_parser("retry", parents=[common], help="retry failed jobs").add_argument(
        "ids", nargs="+", metavar="ID")
    dlq.set_defaults(run=cmd_dlq)

    limits = commands.add_parser("limits", parents=[common],
                                 help="provider rate limits: status, emergency stop, resume")
    sub = limits.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("status", parents=[common], help="every provider bucket (default)")
    for name in ("stop", "resume"):
        sub.add_parser(name, parents=[common], help=f"{name} one provider, or all").add_argument(
            "service", nargs="?")
    limits.set_defaults(run=cmd_limits)


# --- commands -----------------------------------------------------------------------------


def cmd_jobs(args: argparse.Namespace) -> int:
    if args.action == "list":
        query = {"limit": str(args.limit), "queue": args.queue, "state": args.state}
        qs = "&".join(f"{k}={quote(v)}" for k, v in query.items() if v)
        return run(args, "GET", f"{API}/jobs?{qs}", show=lambda d: table(
            ("ID", "QUEUE", "TYPE", "STATUS", "ATTEMPTS", "CREATED"),
            [(j["id"], j["queue"], j["type"], j["status"], f"{j['attempts']}/{j['maxAttempts']}",
              j["createdAt"]) for j in d["jobs"]]))
    path = f"{API}/jobs/{quote(args.id, safe='')}"
    if args.action == "get":
        return run(args, "GET", path, show=show_job)
    if args.action == "retry":
        return run(args, "POST", f"{path}/retry", show=message)
    return run(args, "DELETE", path, show=message)


def cmd_queues(args: argparse.Namespace) -> int:
    if args.action in ("pause", "resume"):
        name = quote(args.name, safe="")
        return run(args, "POST", f"{API}/queues/{name}/{args.action}", show=message)
    return run(args, "GET", f"{API}/queues", show=lambda d: table(
        ("QUEUE", "TIER", "WAITING", "DELAYED", "ACTIVE", "COMPLETED", "FAILED", "PAUSED"),
        [(q["name"], q["tier"], q["waiting"], q["delayed"], q["active"], q["completed"],
          q["failed"], "yes" if q["paused"] else "no") for q in d]))


def cmd_dlq(args: argparse.Namespace) -> int:
    if args.action == "retry":
        return run(args, "POST", f"{API}/dlq/retry", {"jobIds": args.ids}, show=lambda d: table(
            ("ID", "RESULT"),
            [(r["jobId"], r["status"] if r["status"] == "retrying" else r["message"])
             for r in d["results"]]))
    return run(args, "GET", f"{API}/dlq", show=lambda d: table(
        ("ID", "QUEUE", "TYPE", "ATTEMPTS", "FAILED AT", "REASON"),
        [(j["id"], j["queue"], j["type"], j["attempts"], j["finishedAt"], j["failedReason"])
         for j in d["jobs"]]))


def cmd_limits(args: argparse.Namespace) -> int:
    if args.action in ("stop", "resume"):
        path = f"{API}/rate-limits/{'emergency-stop' if args.action == 'stop' else 'resume'}"
        body = None if args.service is None else {"service": args.service}
        return run(args, "POST", path, body, show=message)
    return run(args, "GET", f"{API}/rate-limits/status", show=lambda d: table(
        ("BUCKET", "TOKENS", "IN FLIGHT", "MAX", "STOPPED", "LIMITED"),
        [(name, b["tokensAvailable"], b["concurrent"], b["maxConcurrent"],
          "yes" if b["stopped"] else "no", "yes" if b["rateLimited"] else "no")
         for name, b in d.items()]))


# --- output -------------------------------------------------------------------------------


def show_job(job: dict[str, Any]) -> None:
    table(("FIELD", "VALUE"), [(k, json.dumps(v) if isinstance(v, dict | list) else v)
                               for k, v in job.items() if k != "errors"])


def message(data: dict[str, Any]) -> None:
    print(data.get("message") or json.dumps(data))


def table(headers: Row, rows: Sequence[Row]) -> None:
    """Columns padded to their widest cell; `-` for a missing value."""
    cells = [[cell(v) for v in headers]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


def cell(value: Any) -> str:
    return "-" if value is None else str(value)


# --- HTTP ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, method: str, path: str, body: Any = None, *,
        show: Show) -> int:
    try:
        data = request(args, method, path, body)
    except ApiError as exc:
        print(f"tickq: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        show(data)
    return EXIT_OK


def request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """The decoded JSON answer, or `ApiError` with the server's message (4xx/5xx) or why the
    server could not be reached."""
    base = (getattr(args, "url", None) or os.environ.get("TICKQ_URL") or DEFAULT_URL).rstrip("/")
    token = getattr(args, "token", None) or os.environ.get("TICKQ_TOKEN")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{exc.code} {error_text(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"cannot reach the server at {base} ({reason}); is `tickq serve` "
                       "running? Set --url or TICKQ_URL.") from None
    except ValueError:
        raise ApiError(f"the server at {base} did not answer with JSON") from None


def error_text(raw: bytes) -> str:
    """The `message` (and `code`) of the standard error body, else the raw text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()[:500] or "(empty response)"
    if isinstance(body, dict) and "message" in body:
        code = f" [{body['code']}]" if body.get("code") else ""
        return f"{body['message']}{code}"
    return json.dumps(body)[:500]
