"""The PostgreSQL benchmark still runs (tiny sizes; the figures themselves are not checked) and
leaves no schema behind.

Skipped with the reason when PostgreSQL at 127.0.0.1:5432 is unreachable; with CI=true that
fails instead (the rule of tests/storage/pg.py, which decides it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _pg_helper() -> ModuleType:
    """tests/storage/pg.py, which holds the reachability rule and the server's URL."""
    if "pg" not in sys.modules:
        spec = importlib.util.spec_from_file_location("pg", ROOT / "tests" / "storage" / "pg.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["pg"] = module
        spec.loader.exec_module(module)
    return sys.modules["pg"]


pg = _pg_helper()


def _bench_schemas() -> set[str]:
    rows = asyncio.run(pg.table_rows(
        pg.PG_URL, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tickq_bench_%'"))
    return {r["nspname"] for r in rows}


def test_postgres_benchmark_prints_every_figure_and_drops_its_schemas() -> None:
    asyncio.run(pg.require_postgres())
    before = _bench_schemas()
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "postgres.py"), "--url", pg.PG_URL,
         "--jobs", "600", "--enqueue-jobs", "1500", "--batch", "100", "--concurrency", "16"],
        capture_output=True, text=True, timeout=180, check=True).stdout
    lines = [line.strip() for line in out.splitlines()]
    one = [line for line in lines if line.startswith("end to end, 1 node ")]
    assert len(one) == 1 and "jobs/s" in one[0] and "target >= 10,000" in one[0], out
    three = [line for line in lines if line.startswith("end to end, 3 nodes")]
    assert len(three) == 1 and "jobs/s" in three[0], out
    # every node ran a share of the 600 jobs
    shares = three[0].split("runs per node ")[1].rstrip(")").split(" / ")
    assert len(shares) == 3 and sum(int(s.replace(",", "")) for s in shares) == 600, out
    assert any(line.startswith("batch enqueue (100 per batch)") and "jobs/s" in line
               and "target >= 60,000" in line for line in lines), out
    assert _bench_schemas() - before == set()
