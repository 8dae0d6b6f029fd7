"""Stored Responses API responses (``store: true``): for ``previous_response_id``, retrieval and input items.

Three calls (``put``, ``get``, ``delete``) over one of three places. Stored responses are large (a response
holds the whole conversation it answered), unlike what the state store keeps, so on one machine they get a
store of their own, bounded in bytes: the process's memory, or an SQLite file gunicorn's workers share (the
state store's SQLite kind, in a file of its own), since a client's next turn reaches whichever worker takes its
connection. With Redis
(``GATEWAY_REDIS_URL``) they go to the state store every instance shares, where each expires on its own and
Redis's memory policy is the bound; a record larger than the whole bound is not kept.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from .base import StateStore
from .local import SQLiteStore

log = logging.getLogger(__name__)

# A bound on the number of records as well, so a flood of tiny ones cannot make pruning slow.
MAX_RECORDS = 100_000
# How many writes pass between two prunes of the shared file (records are large; keep the overshoot small).
PRUNE_EVERY = 16


class ResponseStore(Protocol):
    def put(self, response_id: str, record: dict[str, Any]) -> None: ...

    def get(self, response_id: str) -> dict[str, Any] | None: ...

    def delete(self, response_id: str) -> bool: ...


class LocalResponses:
    """In this process: an LRU bounded by the size of its records' JSON, with expiry."""

    def __init__(self, *, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._records: OrderedDict[str, tuple[float, int, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, response_id: str, record: dict[str, Any]) -> None:
        text = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._drop(response_id)
            self._records[response_id] = (time.monotonic() + self.ttl, len(text), text)
            self._bytes += len(text)
            while self._records and (self._bytes > self.max_bytes or len(self._records) > MAX_RECORDS):
                self._drop(next(iter(self._records)))

    def get(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._records.get(response_id)
            if found is None:
                return None
            if found[0] < time.monotonic():
                self._drop(response_id)
                return None
        return json.loads(found[2])

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._drop(response_id)

    def _drop(self, response_id: str) -> bool:
        found = self._records.pop(response_id, None)
        if found is not None:
            self._bytes -= found[1]
        return found is not None


class ResponsesFile(SQLiteStore):
    """An SQLite store of their own for the workers of one machine, cut back to ``max_bytes`` of records, oldest
    first, every few writes (the shared state store bounds its rows by number: these are large)."""

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        super().__init__(path, MAX_RECORDS)
        self.max_bytes = max_bytes
        self._puts = 0

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        super().put(key, value, ttl)
        self._puts += 1
        if self._puts % PRUNE_EVERY == 0:
            self._cut()

    def _cut(self) -> None:
        try:
            with self._lock:  # the values are ASCII JSON: characters are bytes
                self._db().execute(
                    "DELETE FROM state WHERE key IN (SELECT key FROM (SELECT key, SUM(LENGTH(value)) OVER "
                    "(ORDER BY expires DESC) AS total FROM state) WHERE total > ?)", (self.max_bytes,))
        except (sqlite3.Error, OSError) as exc:
            log.warning("stored responses %s: could not prune (%s)", self.path, exc)


class StateResponses:
    """In the state store several instances share (Redis), under ``response:<id>``."""

    def __init__(self, state: StateStore, *, ttl: float, max_bytes: int) -> None:
        self.state = state
        self.ttl = ttl
        self.max_bytes = max_bytes

    def put(self, response_id: str, record: dict[str, Any]) -> None:
        size = len(json.dumps(record, separators=(",", ":")))
        if size > self.max_bytes:
            log.warning("response %s not stored: %d bytes, more than GATEWAY_RESPONSES_MAX_MB", response_id, size)
            return
        self.state.put(f"response:{response_id}", record, self.ttl)

    def get(self, response_id: str) -> dict[str, Any] | None:
        return self.state.get(f"response:{response_id}")

    def delete(self, response_id: str) -> bool:
        key = f"response:{response_id}"
        found = self.state.get(key) is not None
        self.state.delete(key)
        return found


def response_store(state: StateStore, directory: Path | None, *, shared: bool, ttl: float,
                   max_bytes: int) -> ResponseStore:
    """Where the settings put stored responses: ``shared`` (Redis) in the state store, else on this machine."""
    if shared:
        return StateResponses(state, ttl=ttl, max_bytes=max_bytes)
    if directory is not None:
        return StateResponses(ResponsesFile(directory / "responses.sqlite3", max_bytes=max_bytes), ttl=ttl,
                              max_bytes=max_bytes)
    return LocalResponses(ttl=ttl, max_bytes=max_bytes)
