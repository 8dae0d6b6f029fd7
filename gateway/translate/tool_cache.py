"""A bounded cache of cleaned tool schemas: Claude Code sends the same tools on every turn.

Cleaning a Claude Code request's tool schemas was over half of its translation time (docs/performance.md),
and a session repeats the same tools turn after turn (sub-agents send subsets of them), so each tool's
cleaned schema is kept, keyed by the exact JSON of its input schema:

* The key is ``orjson.dumps`` of the schema, about 20 times cheaper than cleaning it. For the values JSON
  decoding produces it is exact: orjson writes ``1``, ``1.0`` and ``true`` apart and keeps key order. (It
  would write NaN and the infinities as ``null``, but request bodies holding them are refused as not JSON
  before they get here: ``api/body.py``.) What orjson refuses (integers beyond 64 bits, lone surrogates,
  nesting beyond 255) is cleaned without the cache.
* The cached schema is frozen (``FrozenDict``/``FrozenList``): every request's body shares it, so a later
  step that tried to modify it would corrupt other requests; it fails loudly instead. Freezing costs
  nothing per hit, where a copy would cost a tenth of the translation. A copy (``copy.deepcopy``,
  ``pickle``, ``dict(...)``) is plain and may be modified.
* It is bounded in entries and in bytes (least recently used goes first), and a lock keeps the bookkeeping
  consistent across threads; under gevent no switch can happen inside it. Cleaning runs outside the lock.
  An entry counts the key's bytes plus the cleaned schema's (as the cleaner measured them while building it):
  through ``$ref`` a small input can clean to a much larger output.
* A hit spends the request's ``SchemaBudget`` as the cleaning did, so cached schemas cannot get around it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import orjson

from .json_schema import SchemaBudget, clean_tool_schema

__all__ = ["ToolSchemaCache"]

#: A Claude Code session has about 20 tools and MCP servers add some; several sessions share a worker.
DEFAULT_MAX_ENTRIES = 1024
#: Key plus cleaned JSON. An entry larger than a quarter of this is not cached at all.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class _Entry:
    __slots__ = ("cleaned", "output", "size")

    def __init__(self, cleaned: dict, output: int, size: int) -> None:
        self.cleaned = cleaned
        self.output = output  # bytes of cleaned JSON (the cleaner's estimate), spent again on every hit
        self.size = size


class ToolSchemaCache:
    """``clean_tool_schema`` with memory: the same schema (and mode) gives the same frozen result."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[bool, bytes], _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def clean(self, schema: dict | None, *, validated: bool, budget: SchemaBudget | None = None) -> dict:
        """The cleaned schema: from the cache (frozen) when this exact schema was cleaned before.

        ``budget`` is the request's (see ``json_schema``); SchemaTooLarge when this schema would exceed it.
        """
        budget = budget if budget is not None else SchemaBudget()
        try:
            key = (validated, orjson.dumps(schema))
        except TypeError:  # orjson.JSONEncodeError: not exactly representable as a key.
            return clean_tool_schema(schema, validated=validated, budget=budget)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        if entry is not None:
            if entry.output > budget.left:
                raise budget.exceeded()
            budget.left -= entry.output
            return entry.cleaned
        before = budget.left
        cleaned = clean_tool_schema(schema, validated=validated, frozen=True, budget=budget)
        return self._store(key, cleaned, before - budget.left)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _store(self, key: tuple[bool, bytes], cleaned: dict, output: int) -> dict:
        """Remember a (frozen) cleaning result of ``output`` bytes unless it is too large."""
        # JSON bytes (Python objects take several times more, but in proportion).
        size = len(key[1]) + output
        if size * 4 > self.max_bytes:
            return cleaned
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous.size
            self._entries[key] = _Entry(cleaned, output, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size
        return cleaned
