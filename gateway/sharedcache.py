"""A TTL cache kept in an SQLite file that every gunicorn worker opens: what one worker learns, the others read.

The gateway's signature memory (``translate/signatures.py``) must outlive the worker that learned it: a client's
next turn goes to whichever worker accepts its connection. ``gunicorn.conf.py`` gives every worker the same
directory (``GATEWAY_SHARED_STATE_DIR``); without one (``python app.py``, tests) the memory stays in the process.

It is a cache, not a record: writes skip fsync (``synchronous=OFF``), a lost entry costs a replay only what a
missing one costs, and WAL mode lets readers and a writer work at once. SQLite does no I/O that gevent could
switch on, so a call blocks its worker for its duration: tens of microseconds for these small rows.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

V = TypeVar("V")

log = logging.getLogger(__name__)

# Every this many writes, expired rows go and the table is cut back to its bound.
PRUNE_EVERY = 256


class SharedTTLCache(Generic[V]):
    """``put``/``get`` with expiry, in table ``table`` of ``path``; values go through JSON (``decode`` restores
    what JSON cannot say, such as tuples). Bounded to ``max_items`` rows, oldest first."""

    def __init__(self, path: Path, table: str, *, max_items: int, ttl: float,
                 decode: Callable[[Any], V] = lambda value: value) -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.path = path
        self.table = table
        self.max_items = max_items
        self.ttl = ttl
        self.decode = decode
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._writes = 0

    def put(self, key: str, value: V) -> None:
        """Remember ``value``; a failing file (full disk, lost permissions) only loses the entry, with a warning."""
        row = (key, time.time() + self.ttl, json.dumps(value, separators=(",", ":")))
        try:
            with self._lock:
                db = self._db()
                db.execute(f"INSERT OR REPLACE INTO {self.table} (key, expires, value) VALUES (?, ?, ?)", row)
                self._writes += 1
                if self._writes % PRUNE_EVERY == 0:
                    self._prune(db)
        except (sqlite3.Error, OSError) as exc:
            log.warning("shared memory %s: could not write (%s)", self.path, exc)

    def get(self, key: str) -> V | None:
        """The value, or None when absent, expired or unreadable (a miss costs what a lost entry costs)."""
        try:
            with self._lock:
                row = self._db().execute(f"SELECT expires, value FROM {self.table} WHERE key = ?", (key,)).fetchone()
        except (sqlite3.Error, OSError) as exc:
            log.warning("shared memory %s: could not read (%s)", self.path, exc)
            return None
        if row is None or row[0] < time.time():
            return None
        return self.decode(json.loads(row[1]))

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute(f"DELETE FROM {self.table} WHERE expires < ?", (time.time(),))
        db.execute(f"DELETE FROM {self.table} WHERE key IN (SELECT key FROM {self.table} ORDER BY expires DESC "
                   f"LIMIT -1 OFFSET ?)", (self.max_items,))

    def _db(self) -> sqlite3.Connection:
        """This process's connection: opened on first use, again after a fork (a connection must not cross one)."""
        if self._connection is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds reasoning text
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                       "(key TEXT PRIMARY KEY, expires REAL NOT NULL, value TEXT NOT NULL)")
            self._connection, self._pid = db, os.getpid()
        return self._connection
