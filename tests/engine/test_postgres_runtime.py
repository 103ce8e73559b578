"""The running-engine tests that take a store `url`, once more over PostgreSQL.

`test_engine_runtime` (dispatch, retries, dead-letter retry, cancel, pause, lease expiry and
stall rescue, timeouts, results, idempotency) and `test_providers_runtime` (rate limits,
breakers, emergency stops) run each of their `url` tests over memory and SQLite; here the same
functions run with a `url` of a fresh PostgreSQL schema each. Tests about SQLite files alone
take no `url` and are not repeated.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
import test_engine_runtime
import test_providers_runtime


def _storage_helper(name: str) -> ModuleType:
    """A helper module of tests/storage (the PostgreSQL fixture lives there)."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "storage" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


pg = _storage_helper("pg")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


def _url_tests(module: ModuleType) -> dict[str, object]:
    return {name: fn for name, fn in vars(module).items()
            if name.startswith("test_") and inspect.isfunction(fn)
            and "url" in inspect.signature(fn).parameters}


for _module in (test_engine_runtime, test_providers_runtime):
    globals().update(_url_tests(_module))
