"""Thought-signature bookkeeping.

Claude and Gemini signatures are mutually invalid, and clients echo signatures without saying which model
made them. The registry remembers the family of every signature the gateway handed out, and the
signature Gemini attached to each function call (clients drop non-standard fields on tool_use blocks),
so replays can send each signature only to the family that issued it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Generic, TypeVar

# Tells Gemini to skip validation of a function call whose signature was lost.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Shorter "signatures" are placeholders some clients invent; never worth replaying (ACP's rule).
MIN_SIGNATURE_LENGTH = 50

V = TypeVar("V")


class TTLCache(Generic[V]):
    """A small thread-safe LRU with expiry; bounded so a long-running server does not grow."""

    def __init__(self, max_items: int = 50_000, ttl: float = 2 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._max = max_items
        self._ttl = ttl
        self._lock = threading.Lock()

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._items[key]
                return None
            return value


def _key(signature: str) -> str:
    return hashlib.sha256(signature.encode("utf-8")).hexdigest()[:32]


class SignatureRegistry:
    def __init__(self) -> None:
        self._families: TTLCache[str] = TTLCache()
        self._tool_signatures: TTLCache[tuple[str, str]] = TTLCache()

    def remember(self, signature: str, family: str) -> None:
        if signature and signature != SKIP_SIGNATURE:
            self._families.put(_key(signature), family)

    def remember_tool_call(self, tool_call_id: str, signature: str, family: str) -> None:
        self.remember(signature, family)
        self._tool_signatures.put(tool_call_id, (signature, family))

    def family_of(self, signature: str) -> str | None:
        return self._families.get(_key(signature))

    def tool_call_signature(self, tool_call_id: str) -> tuple[str, str] | None:
        return self._tool_signatures.get(tool_call_id)
