"""Backends for the job journal, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from tickq.errors import ConfigError
from tickq.storage.base import Store


def open_store(url: str) -> Store:
    """`memory://`, `sqlite:///relative/or//absolute/path.db`, or `postgresql://...`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from tickq.storage.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from tickq.storage.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        try:
            from tickq.storage.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError("the PostgreSQL backend needs asyncpg: install tickq[postgres] "
                              f"({exc})") from exc

        return PostgresStore(url)
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db, "
                      "memory:// or postgresql://...")


def sqlite_path(url: str) -> str:
    """`sqlite:///data/x.db` is relative (data/x.db); `sqlite:////abs/x.db` is absolute."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise ConfigError(f"database URL {url!r} names no file")
    return path


__all__ = ["Store", "open_store", "sqlite_path"]
