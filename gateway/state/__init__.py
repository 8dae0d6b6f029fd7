"""State that more than one process needs: one interface, a local and a Redis implementation, chosen at start.

What lives here (cooldowns, quota snapshots, conversation affinity, signatures and kept thinking, shared access
tokens, locks) is small, keyed, and expires. Without ``GATEWAY_REDIS_URL`` the embedded store serves one machine:
an SQLite file the gunicorn workers share (``GATEWAY_SHARED_STATE_DIR``), or the process's memory. With it, Redis
serves every instance, and the local store stands in whenever Redis cannot be reached, so a request never fails
because Redis is down.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import StateStore
from .local import MemoryStore, SQLiteStore

log = logging.getLogger(__name__)


def open_store(redis_url: str | None, shared_dir: Path | None) -> StateStore:
    """The store the settings ask for: Redis (with the local store as stand-in), else the local store."""
    local: StateStore = SQLiteStore(shared_dir / "state.sqlite3") if shared_dir is not None else MemoryStore()
    if not redis_url:
        return local
    from .redis import FailoverStore, RedisStore

    return FailoverStore(RedisStore(redis_url), local)


__all__ = ["MemoryStore", "SQLiteStore", "StateStore", "open_store"]
