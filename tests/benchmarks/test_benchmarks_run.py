"""The benchmarks still run (tiny sizes; the figures themselves are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_throughput_benchmark_runs_every_scenario() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine_throughput.py"), "--jobs", "400",
         "--batch", "100", "--concurrency", "16", "--producers", "10",
         "--restart-jobs", "2000"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    for scenario in ("money (", "money-single", "communication", "background"):
        assert any(line.startswith(scenario) and "jobs/s" in line for line in lines), out
    assert any("restart with 2,000 waiting jobs" in line and "ready in" in line
               for line in lines), out


def test_limiter_benchmark_runs_micro_and_end_to_end_scenarios() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "limiter.py"), "--seconds", "0.02",
         "--e2e-seconds", "1"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    assert sum("decisions/s" in line for line in lines) == 5, out
    for provider in ("stripe", "solana", "twilio"):
        assert sum(line.strip().startswith(provider) for line in lines) == 2, out
    assert any("stopped" in line and "parked as stopped" in line for line in lines), out
    assert sum("jobs/s" in line for line in lines) == 4, out


def test_http_enqueue_benchmark_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "http_enqueue.py"), "--seconds", "0.5",
         "--rate-seconds", "0.5", "--batch-seconds", "0.5", "--connections", "8"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.splitlines()
    assert any(line.startswith("enqueue, max throughput") and "req/s" in line
               and "p99" in line and "errors 0" in line for line in lines), out
    assert any(line.startswith("enqueue, fixed rate") and "p50" in line and "p99" in line
               and "errors 0" in line for line in lines), out
    assert any(line.startswith("batch enqueue") and "jobs/s" in line and "errors 0" in line
               for line in lines), out


def test_enqueue_path_benchmark_prints_cpu_per_job_for_each_stage() -> None:
    for stage in ("parse", "prepare", "all"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "enqueue_path.py"), "--batches", "5",
             "--repeat", "1", "--stage", stage],
            capture_output=True, text=True, timeout=120, check=True).stdout
        assert f"batch path up to {stage!r}:" in out and "us CPU/job" in out, out
