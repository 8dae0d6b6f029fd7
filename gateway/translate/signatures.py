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
from collections.abc import Iterable

from ..core.request import Thinking
from ..state import MemoryStore, StateStore

# Tells Gemini to skip validation of a function call whose signature was lost.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# Shorter "signatures" are placeholders some clients invent; never worth replaying (ACP's rule).
MIN_SIGNATURE_LENGTH = 50
# Thinking texts are large (up to the thinking budget); only the turns of live tool loops need keeping.
MAX_THINKING_TURNS = 2048
# How long signatures and calls are remembered (seconds).
TTL = 2 * 3600.0


# A signature is base64 of bytes: clients may send it back in the other alphabet (the google-genai SDK re-encodes
# it URL-safe), and the upstream takes either. Both spellings are one signature here.
_ONE_ALPHABET = str.maketrans("-_", "+/", "=")


def _key(signature: str) -> str:
    return hashlib.sha256(signature.translate(_ONE_ALPHABET).encode("utf-8")).hexdigest()[:32]


class SignatureRegistry:
    """Kept in the gateway's state store: a client's next turn reaches whichever worker, or instance, takes it."""

    def __init__(self, store: StateStore | None = None) -> None:
        self._store = store if store is not None else MemoryStore()
        # Thinking texts are large: in the process's memory they get a bound of their own.
        self._turns = MemoryStore(MAX_THINKING_TURNS) if isinstance(self._store, MemoryStore) else self._store

    def remember(self, signature: str, family: str) -> None:
        if signature and signature != SKIP_SIGNATURE:
            self._store.put(f"sig:{_key(signature)}", family, TTL)

    def remember_tool_call(self, tool_call_id: str, signature: str, family: str) -> None:
        self.remember(signature, family)
        self._store.put(f"call:{tool_call_id}", [signature, family], TTL)

    def family_of(self, signature: str) -> str | None:
        return self._store.get(f"sig:{_key(signature)}")

    def tool_call_signature(self, tool_call_id: str) -> tuple[str, str] | None:
        value = self._store.get(f"call:{tool_call_id}")
        return (value[0], value[1]) if value else None

    def remember_turn_thinking(self, tool_call_id: str, blocks: Iterable[Thinking]) -> None:
        """Keep a turn's signed thinking under its first tool-call id (random, so no other caller can ask)."""
        signed = [[block.text, block.signature] for block in blocks if block.signature]
        if signed:
            self._turns.put(f"turn:{tool_call_id}", signed, TTL)

    def turn_thinking(self, tool_call_id: str) -> list[Thinking]:
        """Fresh copies of the thinking remembered for the turn that made this call, if any."""
        return [Thinking(text, signature) for text, signature in self._turns.get(f"turn:{tool_call_id}") or ()]
