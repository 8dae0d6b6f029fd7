"""Redis as the state of several instances, and the failover that keeps requests served while it is down."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from .base import StateStore

log = logging.getLogger(__name__)

PREFIX = "gateway:"
# A state call must never hold a request up for long: Redis answers in well under a millisecond when healthy.
SOCKET_TIMEOUT = 0.5
# After a failure, how long the local stand-in serves before Redis is tried again.
RETRY_AFTER = 5.0
# Deletes the lock only if its value is still the owner's (it may have lapsed and been taken by another).
_UNLOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisStore(StateStore):
    """Values as JSON strings under ``gateway:``-prefixed keys; expiry is Redis's own."""

    backend = "redis"

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=30,
        )
        self._unlock = self._redis.register_script(_UNLOCK)

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        if not keys:
            return []
        raw = self._redis.mget([PREFIX + key for key in keys])
        return [None if value is None else json.loads(value) for value in raw]

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        data = json.dumps(value, separators=(",", ":"))
        self._redis.set(PREFIX + key, data, px=max(1, int(ttl * 1000)) if ttl is not None else None)

    def delete(self, key: str) -> None:
        self._redis.delete(PREFIX + key)

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self._redis.set(PREFIX + key, json.dumps(owner), nx=True, px=max(1, int(ttl * 1000))))

    def unlock(self, key: str, owner: str) -> None:
        self._unlock(keys=[PREFIX + key], args=[json.dumps(owner)])

    def ping(self) -> None:
        self._redis.ping()


class FailoverStore(StateStore):
    """Redis while it answers; the local store while it does not, tried again every RETRY_AFTER seconds.

    One log line when Redis goes away and one when it is back; /health says which is serving. What was written
    locally meanwhile stays local (cooldowns and signatures are short-lived; nothing is lost that a replay or a
    429 would not restore).
    """

    backend = "redis"

    def __init__(self, primary: RedisStore, fallback: StateStore) -> None:
        self.primary = primary
        self.fallback = fallback
        self._down_until = 0.0
        self._error: str | None = None
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any) -> Any:
        if time.monotonic() >= self._down_until:
            try:
                result = getattr(self.primary, method)(*args)
            except (redis.RedisError, OSError) as exc:
                self._went_down(exc)
            else:
                if self._error is not None:
                    self._came_back()
                return result
        return getattr(self.fallback, method)(*args)

    def _went_down(self, exc: Exception) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER
            if self._error is None:
                log.error("Redis is unreachable (%s): serving with local state until it is back", type(exc).__name__)
            self._error = type(exc).__name__

    def _came_back(self) -> None:
        with self._lock:
            if self._error is not None:
                log.warning("Redis is reachable again: state is shared again")
                self._error = None

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        return self._call("get_many", keys)

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._call("put", key, value, ttl)

    def delete(self, key: str) -> None:
        self._call("delete", key)

    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        return self._call("try_lock", key, owner, ttl)

    def unlock(self, key: str, owner: str) -> None:
        self._call("unlock", key, owner)

    def health(self) -> dict[str, Any]:
        """Asks Redis (cheaply) so /health tells the truth even when no request has tried it lately."""
        if time.monotonic() >= self._down_until:
            try:
                self.primary.ping()
            except (redis.RedisError, OSError) as exc:
                self._went_down(exc)
            else:
                if self._error is not None:
                    self._came_back()
        if self._error is None:
            return {"backend": "redis", "reachable": True}
        return {"backend": "redis", "reachable": False, "error": f"Redis is unreachable ({self._error}); "
                f"serving with local state ({self.fallback.backend})"}
