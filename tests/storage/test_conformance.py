"""Runs the `Store` conformance suite against every backend.

To add a backend, add its name to the fixture's params and build a `StoreFactory` for it: a
callable that returns a new, unopened store over this test's own backing data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from conformance import StoreConformance, StoreFactory
from pg import pg_schema

from tickq.storage.memory import MemoryStore
from tickq.storage.postgres import PostgresStore
from tickq.storage.sqlite import SqliteStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store_factory(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[StoreFactory]:
    backend: str = request.param
    async with AsyncExitStack() as stack:
        if backend == "memory":
            factory = StoreFactory("memory", MemoryStore, survives_restart=False)
        elif backend == "sqlite":
            path = str(tmp_path / "tickq.db")
            factory = StoreFactory("sqlite", lambda: SqliteStore(path), survives_restart=True)
        elif backend == "postgres":
            # A schema of its own per test (dropped afterwards); every store opened in the test
            # uses it, so a second store is a restart or a second node.
            url = await stack.enter_async_context(pg_schema())
            factory = StoreFactory("postgres", lambda: PostgresStore(url),
                                   survives_restart=True)
        else:
            raise AssertionError(f"no factory for backend {backend!r}")
        try:
            yield factory
        finally:
            await factory.close_all()


class TestStoreConformance(StoreConformance):
    """Every test of `StoreConformance`, once per backend."""
