"""The dashboard on several nodes of one PostgreSQL database: a session made by one node is
good on the others, and an action through one shows on the others' pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpkit import node_clients, token
from pgkit import pg

from tickq.http.dashboard.session import COOKIE

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


async def test_a_session_from_one_node_works_on_another(url: str, tmp_path: Path) -> None:
    one, two = node_clients(url, tmp_path)
    async with one, two:
        signed = await one.post("/dashboard/login", data={"token": token("admin")},
                                allow_redirects=False)
        assert signed.status == 303
        cookie = signed.cookies[COOKIE].value
        page = await two.get("/dashboard", cookies={COOKIE: cookie}, allow_redirects=False)
        assert page.status == 200, await page.text()
        found = _CSRF.search(await page.text())
        assert found is not None
        # the CSRF token node two shows is good on node one too, and the pause is seen by both
        resp = await one.post("/dashboard/queues/background/pause", cookies={COOKIE: cookie},
                              data={"csrf": found.group(1)}, allow_redirects=False)
        assert resp.status == 303, await resp.text()
        listed = await two.get("/api/v1/queue/queues/background/status",
                               headers={"Authorization": f"Bearer {token('admin')}"})
        assert (await listed.json())["paused"] is True
