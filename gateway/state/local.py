"""The embedded stores: the process's memory, or an SQLite file that the workers of one machine share."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..security import private_dir, private_file
from .base import StateStore

log = logging.getLogger(__name__)

# Entries either store keeps at most; the oldest go first. Everything here can be lost at the cost of a
# replay's signature or a warm prompt cache, never correctness.
MAX_ITEMS = 200_000
# Every this many writes, the SQLite store drops expired rows and cuts the table back to MAX_ITEMS.
PRUNE_EVERY = 256


class MemoryStore(StateStore):
    """One process: a dict with expiry, bounded, oldest out first."""

    backend = "memory"

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._max = max_items
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        now = time.monotonic()
        with self._lock:
            values = []
            for key in keys:
                item = self._items.get(key)
                if item is not None and item[0] < now:
                    del self._items[key]
                    item = None
                values.append(None if item is None else item[1])
            return values

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = time.monotonic() + ttl if ttl is not None else float("inf")
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] >= now and item[1] != owner:
                return False
            self._items[key] = (now + ttl, owner)
            return True

    def unlock(self, key: str, owner: str) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[1] == owner:
                del self._items[key]


class SQLiteStore(StateStore):
    """The workers of one machine: what one learns, the others read (gunicorn.conf.py gives them one directory).

    It is a cache, not a record: writes skip fsync (``synchronous=OFF``) and WAL mode lets readers and a writer
    work at once. SQLite does no I/O that gevent could switch on, so a call blocks its worker for its duration:
    tens of microseconds for these small rows. A failing file (full disk, lost permissions) loses entries with a
    warning; it never fails a request.
    """

    backend = "sqlite"

    def __init__(self, path: Path, max_items: int = MAX_ITEMS) -> None:
        self.path = path
        self._max = max_items
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._writes = 0

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        try:
            with self._lock:
                marks = ",".join("?" * len(keys))
                rows = self._db().execute(
                    f"SELECT key, value FROM state WHERE key IN ({marks}) AND expires >= ?", (*keys, time.time())
                ).fetchall()
        except (sqlite3.Error, OSError) as exc:
            log.warning("shared state %s: could not read (%s)", self.path, exc)
            return [None] * len(keys)
        found = {key: json.loads(value) for key, value in rows}
        return [found.get(key) for key in keys]

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = time.time() + ttl if ttl is not None else 1e18
        self._write("INSERT OR REPLACE INTO state (key, expires, value) VALUES (?, ?, ?)",
                    (key, expires, json.dumps(value, separators=(",", ":"))))

    def delete(self, key: str) -> None:
        self._write("DELETE FROM state WHERE key = ?", (key,))

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        now, value = time.time(), json.dumps(owner)
        try:
            with self._lock:
                db = self._db()
                db.execute("DELETE FROM state WHERE key = ? AND expires < ?", (key, now))
                cursor = db.execute("INSERT OR IGNORE INTO state (key, expires, value) VALUES (?, ?, ?)",
                                    (key, now + ttl, value))
                if cursor.rowcount == 1:
                    return True
                row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                return row is not None and row[0] == value
        except (sqlite3.Error, OSError) as exc:
            log.warning("shared state %s: could not lock (%s)", self.path, exc)
            return True  # a lock that cannot be kept must not stop the work it guards

    def unlock(self, key: str, owner: str) -> None:
        self._write("DELETE FROM state WHERE key = ? AND value = ?", (key, json.dumps(owner)))

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            with self._lock:
                db = self._db()
                db.execute(sql, params)
                self._writes += 1
                if self._writes % PRUNE_EVERY == 0:
                    db.execute("DELETE FROM state WHERE expires < ?", (time.time(),))
                    db.execute("DELETE FROM state WHERE key IN (SELECT key FROM state ORDER BY expires DESC "
                               "LIMIT -1 OFFSET ?)", (self._max,))
        except (sqlite3.Error, OSError) as exc:
            log.warning("shared state %s: could not write (%s)", self.path, exc)

    def _db(self) -> sqlite3.Connection:
        """This process's connection: opened on first use, again after a fork (a connection must not cross one)."""
        if self._connection is None or self._pid != os.getpid():
            # It holds reasoning text and access tokens: the directory 0700, the file 0600, whatever the umask.
            # SQLite makes a new file 0644 itself, and gives the -wal and -shm files the mode of the database file.
            private_dir(self.path.parent)
            os.close(private_file(self.path))
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, expires REAL NOT NULL, value TEXT NOT NULL)")
            self._connection, self._pid = db, os.getpid()
        return self._connection
