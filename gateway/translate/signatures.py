"""Thought-signature bookkeeping.

Claude and Gemini signatures are mutually invalid, and clients echo signatures without saying which model
made them. The registry remembers the family of every signature the gateway handed out, and the
signature Gemini attached to each function call (clients drop non-standard fields on tool_use blocks),
so replays can send each signature only to the family that issued it. For APIs that cannot carry
thinking at all (OpenAI's), it also keeps a Claude turn's signed thinking by the turn's first tool-call id:
a thinking Claude model rejects a tool loop whose thinking is missing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from ..core.request import Thinking
from ..sharedcache import SharedTTLCache

# Tells Gemini to skip validation of a function call whose signature was lost.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Shorter "signatures" are placeholders some clients invent; never worth replaying (ACP's rule).
MIN_SIGNATURE_LENGTH = 50
# Thinking texts are large (up to the thinking budget); only the turns of live tool loops need keeping.
MAX_THINKING_TURNS = 2048
# Signatures and calls remembered, and for how long (seconds).
MAX_ITEMS = 50_000
TTL = 2 * 3600.0

V = TypeVar("V")


class Cache(Protocol[V]):
    def put(self, key: str, value: V) -> None: ...

    def get(self, key: str) -> V | None: ...


class TTLCache(Generic[V]):
    """A small thread-safe LRU with expiry; bounded so a long-running server does not grow."""

    def __init__(self, max_items: int = MAX_ITEMS, ttl: float = TTL) -> None:
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
    """In the process, or, given ``directory``, in an SQLite file all gunicorn workers share (``sharedcache``):
    a client's next turn reaches whichever worker takes its connection."""

    def __init__(self, directory: Path | None = None) -> None:
        self._families: Cache[str]
        self._tool_signatures: Cache[tuple[str, str]]
        self._turn_thinking: Cache[tuple[tuple[str, str], ...]]
        if directory is None:
            self._families = TTLCache()
            self._tool_signatures = TTLCache()
            self._turn_thinking = TTLCache(max_items=MAX_THINKING_TURNS)
            return
        path, ttl = directory / "signatures.sqlite3", TTL
        self._families = SharedTTLCache(path, "families", max_items=MAX_ITEMS, ttl=ttl)
        self._tool_signatures = SharedTTLCache(path, "tool_signatures", max_items=MAX_ITEMS, ttl=ttl, decode=tuple)
        self._turn_thinking = SharedTTLCache(path, "turn_thinking", max_items=MAX_THINKING_TURNS, ttl=ttl,
                                             decode=lambda turns: tuple(map(tuple, turns)))

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

    def remember_turn_thinking(self, tool_call_id: str, blocks: Iterable[Thinking]) -> None:
        """Keep a turn's signed thinking under its first tool-call id (random, so no other caller can ask)."""
        signed = tuple((block.text, block.signature) for block in blocks if block.signature)
        if signed:
            self._turn_thinking.put(tool_call_id, signed)

    def turn_thinking(self, tool_call_id: str) -> list[Thinking]:
        """Fresh copies of the thinking remembered for the turn that made this call, if any."""
        return [Thinking(text, signature) for text, signature in self._turn_thinking.get(tool_call_id) or ()]
