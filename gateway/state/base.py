"""The state interface: JSON values under string keys, each with an optional time to live, plus expiring locks."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class StateStore(ABC):
    """Every method is safe to call from any thread or greenlet; none raises for a backend failure."""

    #: "memory", "sqlite" or "redis": what /health reports.
    backend = "memory"

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` in order, None for a missing or expired one: one round trip."""

    @abstractmethod
    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (anything JSON can say) for ``ttl`` seconds, or until deleted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def try_lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``owner`` unless someone else holds it; it lapses after ``ttl`` seconds."""

    @abstractmethod
    def unlock(self, key: str, owner: str) -> None:
        """Release the lock if ``owner`` still holds it (not if it lapsed and another took it)."""

    def get(self, key: str) -> Any:
        return self.get_many([key])[0]

    def health(self) -> dict[str, Any]:
        return {"backend": self.backend}

    @contextmanager
    def lock(self, key: str, owner: str, ttl: float, wait: float, poll: float = 0.05) -> Iterator[bool]:
        """Hold the lock while the block runs; yields False when ``wait`` seconds passed without getting it."""
        deadline = time.monotonic() + wait
        while not (held := self.try_lock(key, owner, ttl)) and time.monotonic() < deadline:
            time.sleep(poll)
        try:
            yield held
        finally:
            if held:
                self.unlock(key, owner)
