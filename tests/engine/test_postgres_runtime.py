"""The running-engine tests that take a store `url`, once more over PostgreSQL.

`test_engine_runtime` (dispatch, retries, dead-letter retry, cancel, pause, lease expiry and
stall rescue, timeouts, results, idempotency) and `test_providers_runtime` (rate limits,
breakers, emergency stops) run each of their `url` tests over memory and SQLite; here the same
functions run with a `url` of a fresh PostgreSQL schema each. Tests about SQLite files alone
take no `url` and are not repeated.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from types import ModuleType

import pytest
import test_engine_runtime
import test_providers_runtime
from pgkit import pg


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
