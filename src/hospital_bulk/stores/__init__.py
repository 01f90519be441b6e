"""Job stores: every one implements :class:`hospital_bulk.JobStore`.

``open_store(url)`` picks one by URL:

- ``memory://`` — this process's memory: tests and throwaway runs;
- ``sqlite:///path/to/jobs.sqlite3`` — a file: the embedded, durable default
  (``sqlite:///:memory:`` for a private in-memory database);
- ``redis://host:port/db`` — shared by several processes or hosts.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from hospital_bulk._store import JobStore

from .memory import MemoryStore

__all__ = ["MemoryStore", "default_store_url", "open_store"]


def default_store_url() -> str:
    """The SQLite file the service and the command line share unless told otherwise:
    ``$XDG_DATA_HOME/hospital-bulk/jobs.sqlite3`` (``~/.local/share/...`` by default)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(data_home) / 'hospital-bulk' / 'jobs.sqlite3'}"


async def open_store(url: str) -> JobStore:
    """Open the store ``url`` names; raises ValueError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        from .sqlite import SqliteStore  # imported when asked for

        return await SqliteStore.open(url)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisStore  # redis is an optional extra

        return await RedisStore.open(url)
    raise ValueError(f"unknown store URL {url!r}: use memory://, sqlite:///PATH or redis://HOST")
