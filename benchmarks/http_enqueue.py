"""Enqueue over HTTP: `python -m tickq serve` in one process, an aiohttp client in another.

    python benchmarks/http_enqueue.py                       # 8 s + 5 s + 5 s
    python benchmarks/http_enqueue.py --seconds 0.5 --rate-seconds 0.5 --batch-seconds 0.5

Three runs against a fresh server on 127.0.0.1 (a temporary data directory, so the embedded
SQLite journal, fsync and all, is what is measured):

    (a) POST /api/v1/queue/jobs as fast as `--connections` connections allow (service token)
    (b) the same at a fixed `--rate` requests/s, latency counted from each request's scheduled
        send time, so a stalled server cannot hide its backlog (no coordinated omission)
    (c) POST /api/v1/queue/jobs/batch, `--batch-size` jobs per request (admin token) over
        `--batch-connections` connections (8: each request waits for its group commit, so
        with fewer in flight the server sits idle between commits; with many more, the
        client's share of the two cores starts to cost the server)

The jobs are `send-push` on the `communication` queue, which is paused first: no processor is
registered, and a paused queue keeps the measurement about enqueueing rather than dispatch. The
per-caller API rate limit is switched off: it guards against callers, it is not the workload.
The client is a separate process so that it does not share the server's CPU time slices.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import orjson

from tickq.http.auth import mint_token

SECRET = "http-enqueue-benchmark-secret-0123456789abcdef"
JOBS = "/api/v1/queue/jobs"
#: the client encodes and decodes with orjson: its CPU time comes out of the server's two cores
JSON = {"Content-Type": "application/json"}
#: distinct batch bodies prepared before a batch run
BATCH_BODIES = 200
BATCH = "/api/v1/queue/jobs/batch"
#: hard ceiling on any one run, whatever the arguments say
MAX_RUN_S = 60.0
#: requests the fixed-rate run may have in flight before it counts the rest as errors
MAX_IN_FLIGHT = 512


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def _push(n: int) -> dict[str, Any]:
    """Distinct data per job, so that no automatic idempotency key turns one into a dupe."""
    return {"type": "send-push", "data": {"userId": f"u{n % 1000}", "title": f"Doors open {n}",
                                          "body": "Your event starts in one hour."}}


# --- the client process ---------------------------------------------------------------------


async def _max_throughput(base: str, token: str, connections: int, seconds: float
                          ) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    counter = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = {"queue": "communication", **_push(counter)}
                start = time.perf_counter()
                async with session.post(JOBS, data=orjson.dumps(body), headers=JSON) as resp:
                    await resp.read()
                    if resp.status != 201:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "elapsed": elapsed, "errors": errors,
            "p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)}


async def _fixed_rate(base: str, token: str, rate: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    total = max(1, int(rate * seconds))
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:

        async def one(n: int, scheduled: float) -> None:
            nonlocal errors
            body = {"queue": "communication", **_push(1_000_000 + n)}
            try:
                async with session.post(JOBS, data=orjson.dumps(body), headers=JSON) as resp:
                    await resp.read()
                    if resp.status != 201:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        tasks: list[asyncio.Task[None]] = []
        t0 = time.perf_counter() + 0.05
        for n in range(total):
            scheduled = t0 + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, scheduled)))
        await asyncio.gather(*tasks)
    return {"requests": total, "elapsed": seconds, "errors": errors,
            "p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)}


async def _batches(base: str, token: str, connections: int, size: int, seconds: float
                   ) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = jobs = sent = 0
    # Encoded before the clock starts and sent in turn: the client's CPU time comes out of the
    # server's two cores. send-push has no idempotency-key rule, so a body sent again makes new
    # jobs, as a producer sending the same notifications twice would.
    bodies = [orjson.dumps({"queue": "communication",
                            "jobs": [_push(2_000_000 + b * size + i) for i in range(size)]})
              for b in range(BATCH_BODIES)]
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, jobs, sent
            while time.perf_counter() < deadline:
                body = bodies[sent % BATCH_BODIES]
                sent += 1
                start = time.perf_counter()
                async with session.post(BATCH, data=body, headers=JSON) as resp:
                    raw = await resp.read()
                    answer = orjson.loads(raw) if resp.status in (200, 201) else {}
                    created = sum(1 for j in answer.get("jobs", ()) if j.get("created"))
                    jobs += created
                    if created != size:
                        errors += 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "jobs": jobs, "elapsed": elapsed, "errors": errors,
            "p50": _percentile(latencies, 50), "p99": _percentile(latencies, 99)}


def _client(args: dict[str, Any], out: Any) -> None:
    """Runs in the client process; sends its results back through `out` (a pipe end)."""
    async def run() -> dict[str, Any]:
        base = args["base"]
        return {
            "max": await _max_throughput(base, args["service"], args["connections"],
                                         args["seconds"]),
            "rate": await _fixed_rate(base, args["service"], args["rate"],
                                      args["rate_seconds"]),
            "batch": await _batches(base, args["admin"], args["batch_connections"],
                                    args["batch_size"], args["batch_seconds"]),
        }
    out.send(asyncio.run(run()))
    out.close()


# --- the server process -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _call(method: str, url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _start_server(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TICKQ_DATA_DIR": data_dir, "JWT_SECRET": SECRET,
           "LOG_LEVEL": "WARNING", "API_RATE_LIMIT_ENABLED": "false"}
    env.pop("TICKQ_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "tickq", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL)


def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if _call("GET", base + "/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="max-throughput run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="fixed-rate requests/s")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--batch-seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-connections", type=int, default=8)
    args = parser.parse_args(argv)
    for name in ("seconds", "rate_seconds", "batch_seconds"):
        setattr(args, name, min(MAX_RUN_S, max(0.05, getattr(args, name))))

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    service = mint_token(SECRET, role="service", tenant_id="bench", user_id="bench-svc",
                         ttl_s=600)
    admin = mint_token(SECRET, role="admin", tenant_id="bench", user_id="bench-admin",
                       ttl_s=600)
    with tempfile.TemporaryDirectory(prefix="tickq-http-bench-") as data_dir:
        server = _start_server(data_dir, port)
        try:
            _wait_ready(base, server)
            status, _ = _call("POST", f"{base}/api/v1/queue/queues/communication/pause", admin)
            if status != 200:
                raise SystemExit(f"pausing the communication queue answered {status}")
            ctx = multiprocessing.get_context("spawn")
            receive, send = ctx.Pipe(duplex=False)
            client = ctx.Process(target=_client, args=({
                "base": base, "service": service, "admin": admin, **vars(args)}, send))
            client.start()
            budget = args.seconds + args.rate_seconds + args.batch_seconds + 60
            if not receive.poll(budget):
                client.terminate()
                raise SystemExit("the client did not finish in time")
            results: dict[str, Any] = receive.recv()
            client.join(10)
        finally:
            _stop(server)

    a, b, c = results["max"], results["rate"], results["batch"]
    print(f"enqueue, max throughput ({args.connections} connections, {a['elapsed']:.1f} s): "
          f"{a['requests'] / a['elapsed']:,.0f} req/s (target >= 5,000), "
          f"p50 {a['p50'] * 1000:.2f} ms, p99 {a['p99'] * 1000:.2f} ms, errors {a['errors']}")
    print(f"enqueue, fixed rate ({args.rate:,.0f} req/s for {b['elapsed']:.1f} s, "
          f"{b['requests']:,} requests): p50 {b['p50'] * 1000:.2f} ms, "
          f"p99 {b['p99'] * 1000:.2f} ms (target p99 < 10 ms), errors {b['errors']}")
    print(f"batch enqueue ({args.batch_size} jobs/request, {args.batch_connections} connections,"
          f" {c['elapsed']:.1f} s): {c['jobs'] / c['elapsed']:,.0f} jobs/s "
          f"(target >= 50,000), p50 {c['p50'] * 1000:.2f} ms, p99 {c['p99'] * 1000:.2f} ms "
          f"per request, errors {c['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
