"""Stored Responses API responses (``store: true``): for ``previous_response_id``, retrieval and input items.

The store is an interface of three calls, so that a Redis implementation can replace the two here: in the
process (``python app.py``, tests), or in the SQLite file gunicorn's workers share (``sharedcache``), since a
client's next turn reaches whichever worker takes its connection. Records expire after a time to live, and the
store is bounded in size: the oldest records go first.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from ..sharedcache import SharedTTLCache

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


class SharedResponses:
    """In the SQLite file of the shared-state directory, which every worker opens."""

    def __init__(self, directory: Path, *, ttl: float, max_bytes: int) -> None:
        self._cache: SharedTTLCache[dict[str, Any]] = SharedTTLCache(
            directory / "responses.sqlite3", "responses", max_items=MAX_RECORDS, ttl=ttl, max_bytes=max_bytes,
            prune_every=PRUNE_EVERY)

    def put(self, response_id: str, record: dict[str, Any]) -> None:
        self._cache.put(response_id, record)

    def get(self, response_id: str) -> dict[str, Any] | None:
        return self._cache.get(response_id)

    def delete(self, response_id: str) -> bool:
        return self._cache.delete(response_id)


def response_store(directory: Path | None, *, ttl: float, max_bytes: int) -> ResponseStore:
    if directory is None:
        return LocalResponses(ttl=ttl, max_bytes=max_bytes)
    return SharedResponses(directory, ttl=ttl, max_bytes=max_bytes)
