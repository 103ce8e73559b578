"""On PostgreSQL the audit trail is shared: an action taken through one node's API is listed by
every node's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from httpkit import SECRET, auth
from pgkit import pg

from tickq.engine.engine import Engine
from tickq.http import make_app
from tickq.settings import load_settings
from tickq.storage.postgres import PostgresStore


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


async def test_an_action_through_one_node_is_in_every_nodes_trail(url: str,
                                                                   tmp_path: Path) -> None:
    clients = []
    for n in range(2):
        settings = load_settings({"TICKQ_DATABASE_URL": url, "JWT_SECRET": SECRET,
                                  "TICKQ_DATA_DIR": str(tmp_path / f"node{n}"),
                                  "API_RATE_LIMIT_ENABLED": "false",
                                  "TICKQ_SCHEDULER_ENABLED": "false"})
        engine = Engine(PostgresStore(url), shutdown_grace_s=0.5)
        clients.append(TestClient(TestServer(make_app(settings, engine), host="127.0.0.1")))
    one, two = clients
    async with one, two:
        resp = await one.post("/api/v1/queue/queues/background/pause", headers=auth())
        assert resp.status == 200, await resp.text()
        assert (await two.post("/api/v1/queue/queues/background/pause",
                               headers=auth("user"))).status == 403
        seen = []
        for client in (one, two):
            resp = await client.get("/api/v1/queue/audit?action=queue.pause", headers=auth())
            assert resp.status == 200
            seen.append([(e["outcome"], e["role"], e["target"])
                         for e in (await resp.json())["entries"]])
    # newest first, and the same answer from both nodes
    assert seen[0] == seen[1] == [("denied", "user", "background"), ("ok", "admin", "background")]
    # each node still keeps its own file copy of what passed through it
    assert (tmp_path / "node0" / "audit.log").read_text().count('"queue.pause"') == 1
    assert (tmp_path / "node1" / "audit.log").read_text().count('"queue.pause"') == 1
