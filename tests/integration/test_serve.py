"""`python -m tickq serve` as a real process: probes, the journal lock, SIGTERM, bad config."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

#: variables of the developer's shell that must not leak into the service under test
_OURS = ("PORT", "HOST", "LOG_LEVEL", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER",
         "JWT_AUDIENCE", "JWT_LEEWAY_S")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKQ_") and k not in _OURS}
    env.update(HOST="127.0.0.1", TICKQ_ENV="development", TICKQ_DATA_DIR=str(tmp_path / "data"),
               TICKQ_SHUTDOWN_GRACE_S="5")
    env.update(values)
    return env


class Service:
    """One `python -m tickq ...` process with its output in files (no pipe can fill up)."""

    def __init__(self, tmp_path: Path, name: str, env: dict[str, str], *args: str) -> None:
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tickq", *args], env=env,
                                         cwd=tmp_path, stdout=out, stderr=err)

    def stderr(self) -> str:
        return self.err.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running after {timeout}s:\n{self.stderr()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def get(url: str) -> tuple[int, str, Any]:
    """(status, content type, decoded JSON body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get_content_type(), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), json.loads(exc.read())


def wait_ready(service: Service, base: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert service.proc.poll() is None, f"serve exited early:\n{service.stderr()}"
        try:
            if get(f"{base}/health/ready")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"/health/ready never answered 200 within {timeout}s")


def test_serve_probes_lock_and_graceful_sigterm(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # --port wins over PORT
    first = Service(tmp_path, "first", service_env(tmp_path, PORT=str(free_port())),
                    "serve", "--port", str(port))
    second = None
    try:
        wait_ready(first, base)
        status, ctype, ready = get(f"{base}/health/ready")
        integrations = ready.pop("integrations")
        assert (status, ctype, ready) == (
            200, "application/json",
            {"status": "ready", "checks": {"engine": {"ok": True}, "store": {"ok": True}}})
        # nothing configured: each integration says so (background work needs nothing)
        assert integrations["stripe"]["status"] == "not_configured"
        assert integrations["background"]["status"] == "ready"
        assert get(f"{base}/health/live") == (200, "application/json", {"status": "ok"})
        assert get(f"{base}/health/startup") == (200, "application/json", {"status": "started"})
        status, ctype, body = get(f"{base}/no/such/route")
        assert (status, ctype, body["code"]) == (404, "application/json", "not_found")
        assert "/no/such/route" in body["message"]

        # Development creates the data directory; the journal lives there.
        journal = tmp_path / "data" / "tickq.db"
        assert journal.is_file()
        listening = [json.loads(line) for line in first.stderr().splitlines()
                     if '"listening"' in line]
        assert len(listening) == 1
        assert listening[0]["url"] == base
        assert listening[0]["database"] == f"sqlite:///{journal}"

        # A second process on the same journal refuses to start, naming the lock and its owner.
        second = Service(tmp_path, "second", service_env(tmp_path, PORT=str(free_port())),
                         "serve")
        assert second.wait(20) != 0
        err = second.stderr()
        assert "in use by process" in err and str(first.proc.pid) in err, err
        assert "Traceback" not in err
        # ... and leaves the owner untouched.
        assert get(f"{base}/health/ready")[0] == 200

        first.proc.send_signal(signal.SIGTERM)
        assert first.wait(15) == 0
        log = first.stderr()
        assert '"signal":"SIGTERM"' in log and '"engine_stopped"' in log
        assert "Traceback" not in log
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # The lock went with the process: the journal opens again.
    third = Service(tmp_path, "third", service_env(tmp_path, PORT=str(port)), "serve")
    try:
        wait_ready(third, base)
        third.proc.send_signal(signal.SIGINT)
        assert third.wait(15) == 0
    finally:
        third.stop()


def run_tickq(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tickq", *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def test_serve_with_bad_config_exits_2_naming_every_variable(tmp_path: Path) -> None:
    done = run_tickq(tmp_path, service_env(tmp_path, PORT="abc", LOG_LEVEL="loud"), "serve")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert any(line.startswith("PORT: ") and "'abc'" in line for line in lines), done.stderr
    assert any(line.startswith("LOG_LEVEL: ") for line in lines), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()


def test_serve_refuses_a_database_it_cannot_open(tmp_path: Path) -> None:
    env = service_env(tmp_path, PORT=str(free_port()),
                      TICKQ_DATABASE_URL="postgresql://tickq:secret@127.0.0.1:1/tickq")
    done = run_tickq(tmp_path, env, "serve")
    # configured correctly but unreachable: a failure to start (1), not a configuration error
    assert done.returncode == 1
    assert "TICKQ_DATABASE_URL: cannot connect to postgresql://tickq:***@127.0.0.1:1/tickq" in (
        done.stderr)
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_serve_outside_development_needs_an_existing_data_dir(tmp_path: Path) -> None:
    env = service_env(tmp_path, PORT=str(free_port()), TICKQ_ENV="production")
    done = run_tickq(tmp_path, env, "serve")
    assert done.returncode == 2
    assert "TICKQ_DATA_DIR" in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "data").exists()


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    import tickq

    done = run_tickq(tmp_path, service_env(tmp_path), "version")
    assert (done.returncode, done.stdout) == (0, f"tickq {tickq.__version__}\n")
