"""PostgreSQL for tests: a schema of its own per test, on the server at 127.0.0.1:5432.

`pg_schema()` creates a uniquely named schema in the `test` database, yields a URL whose
connections use it (`search_path` in the URL, which asyncpg passes on as a connection setting)
and drops it afterwards, so runs never see each other's tables, locks or notifications.

When the server cannot be reached the test is skipped with the reason, unless `CI=true`: there
an unreachable database fails the test, so a CI run cannot pass without having tested anything.
`TICKQ_TEST_PG_URL` points the tests at another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

PG_URL = os.environ.get("TICKQ_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 3.0

#: why the server could not be reached ("" once it was), decided once per test session
_unreachable: str | None = None


def with_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema`."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _probe() -> str:
    global _unreachable
    if _unreachable is None:
        try:
            conn = await asyncpg.connect(PG_URL, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            _unreachable = f"{type(exc).__name__}: {exc}"
        else:
            await conn.close()
            _unreachable = ""
    return _unreachable


async def require_postgres() -> None:
    """Skip (or, with CI=true, fail) the calling test when PostgreSQL is not there."""
    why = await _probe()
    if not why:
        return
    message = f"PostgreSQL at {PG_URL} is unreachable ({why})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it (start it, or set TICKQ_TEST_PG_URL)",
                    pytrace=False)
    pytest.skip(message)


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema for one test; yields the URL that uses it."""
    await require_postgres()
    schema = f"tickq_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(PG_URL, timeout=CONNECT_TIMEOUT_S)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield with_schema(PG_URL, schema)
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()


async def table_rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of `sql` read through a plain connection on `url` (what another process sees)."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
