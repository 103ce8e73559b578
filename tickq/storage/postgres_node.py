"""One node's own connection to PostgreSQL: who it is, whether the others are still there, and
what they announce.

Each open store is a node with a random id. It holds a session advisory lock on that id over a
connection of its own for as long as it is open; PostgreSQL releases the lock the moment that
session ends, however the process ended. So "the node that claimed this job is gone" is
"its lock can be taken": the claims of such nodes are rescued at once, as stalls, instead of
waiting for their leases to run out. The same connection LISTENs for the notifications other
nodes send when they add work, and can hold the leader lock (`try_lead`), released the same way
when the leader dies.

The schema is migrated here too, under a transaction-scoped advisory lock, so nodes starting
together apply each script once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]

from tickq.errors import ConfigError
from tickq.storage.sql_scripts import numbered_scripts

log = logging.getLogger(__name__)

#: every session's settings. Short statements only: JIT compilation costs far more than it
#: could save on any of them.
SESSION = {"application_name": "tickq", "jit": "off"}

#: how long to wait before connecting again after the node's connection dropped
RECONNECT_S = 1.0

#: the active jobs' owners that are gone; taking their locks is what says so (and keeps any
#: other node from rescuing the same claims meanwhile)
_GONE_SQL = ("SELECT n FROM (SELECT DISTINCT claimed_by AS n FROM jobs WHERE state = 'active' "
             "AND claimed_by IS NOT NULL AND claimed_by <> $1) d WHERE pg_try_advisory_lock(n)")


def migrations() -> list[tuple[int, str]]:
    """The numbered schema scripts, in order."""
    return numbered_scripts("postgres")


def lock_key(purpose: str, schema: str) -> int:
    """A stable 63-bit advisory lock key for `purpose` within `schema` (locks are per
    database; the schema keeps two deployments in one database apart)."""
    digest = hashlib.sha256(f"tickq:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def channel_name(schema: str) -> str:
    """The notification channel of a schema (channel names are at most 63 bytes)."""
    name = f"tickq.{schema}"
    if len(name.encode()) > 63:
        name = "tickq." + hashlib.sha256(schema.encode()).hexdigest()[:32]
    return name


async def migrate(conn: asyncpg.Connection, schema: str) -> int:
    """Bring the schema up to date in one transaction; returns the version it is at."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("migrate", schema))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           "version integer NOT NULL, applied_at timestamptz NOT NULL "
                           "DEFAULT now())")
        version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        scripts = migrations()
        known = scripts[-1][0] if scripts else 0
        if version > known:
            raise ConfigError(
                f"the database schema {schema!r} is at version {version}, newer than this "
                f"tickq knows (up to {known}): upgrade tickq before running it on this database")
        for number, script in scripts:
            if number > version:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
                log.info("schema migrated", extra={"event": "migrated", "version": number})
                version = number
    return int(version)


class NodeLink:
    def __init__(self, dsn: str, schema: str, *,
                 on_notice: Callable[[str, int], None]) -> None:
        self.dsn = dsn
        self.schema = schema
        self.channel = channel_name(schema)
        self.node_id = secrets.randbits(62) + 1
        #: called with (queue, sending node) for every notification of another node
        self._on_notice = on_notice
        self._conn: asyncpg.Connection | None = None
        #: one statement at a time on the node's connection
        self._lock = asyncio.Lock()
        self._leading = False
        self._closed = False
        self._reconnect: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._closed = False
        await self._connect()

    async def _connect(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self.dsn, server_settings=SESSION)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", self.node_id)
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._leading = False

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        queue, _, sender = payload.partition(" ")
        try:
            node = int(sender)
        except ValueError:
            node = 0
        if node != self.node_id:
            self._on_notice(queue, node)

    def _terminated(self, conn: object) -> None:
        if self._closed or conn is not self._conn:
            return
        self._conn = None
        self._leading = False
        log.warning("the node's connection to PostgreSQL dropped; reconnecting",
                    extra={"event": "node_link_lost", "node": self.node_id})
        self._reconnect = asyncio.get_running_loop().create_task(self._keep_trying())

    async def _keep_trying(self) -> None:
        while not self._closed and self._conn is None:
            await asyncio.sleep(RECONNECT_S)
            try:
                await self._connect()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("reconnecting to PostgreSQL failed",
                            extra={"event": "node_link_retry", "error": str(exc)})

    @property
    def server_pid(self) -> int | None:
        """The backend process of the node's session (as pg_stat_activity shows it)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _require(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("the node's connection to PostgreSQL is down")
        return self._conn

    async def gone_nodes(self) -> list[int]:
        """Owners of active jobs whose sessions have ended; their locks are now held here
        until `let_go`."""
        async with self._lock:
            rows = await self._require().fetch(_GONE_SQL, self.node_id)
        return [int(r[0]) for r in rows]

    async def let_go(self, nodes: list[int]) -> None:
        if not nodes:
            return
        async with self._lock:
            await self._require().execute(
                "SELECT pg_advisory_unlock(n) FROM unnest($1::int8[]) AS n", nodes)

    async def try_lead(self) -> bool:
        """Take (or keep) the leader lock of this schema; True while this node holds it. It
        goes with the node's session: a leader that dies or loses its connection leaves it to
        the next node that asks. Every answer is a round trip on that session, so a session
        that ended unnoticed is not taken for a lock still held."""
        if not self.connected:
            self._leading = False
            return False
        try:
            async with self._lock:
                conn = self._require()
                if self._leading:
                    await conn.fetchval("SELECT 1")
                else:
                    self._leading = bool(await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", lock_key("leader", self.schema)))
        except (OSError, ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError,
                asyncpg.InternalClientError):
            # The last includes a session the server ended while asyncpg was still tearing it
            # down ("another operation is in progress"): whatever the cause, not leading.
            self._leading = False
        return self._leading

    @property
    def leading(self) -> bool:
        return self._leading and self.connected

    async def close(self) -> None:
        self._closed = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
            self._reconnect = None
        conn, self._conn = self._conn, None
        self._leading = False
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError):
                conn.terminate()
