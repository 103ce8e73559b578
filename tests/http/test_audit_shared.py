"""On PostgreSQL the audit trail is shared: an action taken through one node's API is listed by
every node's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from httpkit import auth, node_clients
from pgkit import pg


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with pg.pg_schema() as schema_url:
        yield schema_url


async def test_an_action_through_one_node_is_in_every_nodes_trail(url: str,
                                                                   tmp_path: Path) -> None:
    one, two = node_clients(url, tmp_path)
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
