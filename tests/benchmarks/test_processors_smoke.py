"""The processors benchmark still runs (tiny sizes; the figures themselves are not checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_processors_benchmark_prints_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "processors.py"), "--jobs", "30",
         "--limited-seconds", "0.5"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line.strip() for line in out.splitlines()]
    assert any(line.startswith("PaymentIntent requests alone") and "req/s" in line
               for line in lines), out
    assert any(line.startswith("stripe payments, limits off") and "jobs/s" in line
               and "p99" in line for line in lines), out
    assert any(line.startswith("stripe payments, limited") and "against the limit 25/s" in line
               for line in lines), out
    for program in ("token ", "token-2022"):
        assert any(line.startswith(f"nft-mint, no provider limit, {program}")
                   and "mints/s" in line for line in lines), out
    assert any(line.startswith("nft-mint, solana limit 10/s") for line in lines), out
