"""`python -m tickq serve` and API tokens: development prints a working admin token; anywhere
else the service refuses to start without a key."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_serve import Service, free_port, run_tickq, service_env, wait_ready

pytestmark = pytest.mark.slow

JOBS = "/api/v1/queue/jobs"


def call(url: str, token: str | None = None, body: Any = None,
         method: str = "GET") -> tuple[int, dict[str, str], Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def printed_token(service: Service, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = service.out.read_text().splitlines()
        tokens = [ln for ln in lines if ln.count(".") == 2 and ln.startswith("ey")]
        if tokens:
            assert len(tokens) == 1, lines
            return tokens[0]
        time.sleep(0.05)
    raise AssertionError(f"no token printed:\n{service.out.read_text()}\n{service.stderr()}")


def test_development_prints_one_admin_token_that_works(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(tmp_path, PORT=str(port))
    env.pop("JWT_SECRET", None)
    env.pop("JWT_PUBLIC_KEY", None)
    service = Service(tmp_path, "dev", env, "serve")
    try:
        wait_ready(service, base)
        token = printed_token(service)
        assert "development mode" in service.out.read_text()
        assert f"dashboard at {base}/dashboard" in service.out.read_text()
        assert token not in service.stderr()  # shown once, on stdout, never logged
        assert call(f"{base}{JOBS}")[0] == 401
        body = {"queue": "background", "type": "analytics-track",
                "data": {"eventType": "page_view", "timestamp": "2025-01-15T10:00:00Z"}}
        status, headers, out = call(f"{base}{JOBS}", token, body, "POST")
        assert status == 201, out
        rid = headers["X-Request-ID"]
        status, _, out = call(f"{base}{JOBS}/{out['jobId']}", token)
        assert status == 200 and out["tenantId"] == "dev"
        service.proc.send_signal(signal.SIGTERM)
        assert service.wait(15) == 0
        # the request's access log line carries its id
        logged = [json.loads(ln) for ln in service.stderr().splitlines() if '"http_request"' in ln]
        assert any(ln.get("request_id") == rid and ln["status"] == 201 for ln in logged)
    finally:
        service.stop()


@pytest.mark.parametrize("tickq_env", ["production", "staging"])
def test_serve_outside_development_without_a_key_exits_2_naming_jwt_secret(
        tmp_path: Path, tickq_env: str) -> None:
    (tmp_path / "data").mkdir()
    env = service_env(tmp_path, PORT=str(free_port()), TICKQ_ENV=tickq_env)
    env.pop("JWT_SECRET", None)
    env.pop("JWT_PUBLIC_KEY", None)
    done = run_tickq(tmp_path, env, "serve")
    assert done.returncode == 2
    assert "JWT_SECRET: required when TICKQ_ENV=" in done.stderr, done.stderr
    assert "JWT_PUBLIC_KEY" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # no token, no port


def test_serve_refuses_a_weak_secret_outside_development(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    env = service_env(tmp_path, PORT=str(free_port()), TICKQ_ENV="production",
                      JWT_SECRET="changeme")
    done = run_tickq(tmp_path, env, "serve")
    assert done.returncode == 2
    assert "JWT_SECRET: must be at least 32 bytes" in done.stderr
    assert "changeme" not in done.stderr
