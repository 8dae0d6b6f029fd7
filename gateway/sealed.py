"""Sealed blobs: what a client carries for the gateway and can neither read nor forge.

The Responses API hands reasoning back to clients as ``encrypted_content``, so that a client keeping no server
state (Codex sends ``store: false``) still returns, on its next turn, what the upstream needs: a Claude turn's
signed thinking, a Gemini call's signature. The gateway seals that with AES-256-GCM (``cryptography``'s
AESGCM: authenticated, so a changed byte fails to open) under a server key, and binds each blob to its purpose.

The key comes from GATEWAY_SECRET_KEY, else it is generated once and kept in the state store, where every
gunicorn worker (and, with Redis, every instance) finds the same one, and a restart finds it again as long as
the store persists (a GATEWAY_SHARED_STATE_DIR that outlives the server, or Redis). With the process's memory as
the store (``python app.py`` with no settings) blobs open only in the process that sealed them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .state import StateStore

log = logging.getLogger(__name__)

# The first byte of every blob: a later format (or key scheme) gets another, and old blobs stay recognisable.
VERSION = b"\x01"
NONCE_BYTES = 12
KEY_NAME = "secret:sealing-key"


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, value: Any, purpose: str) -> str:
        """``value`` (anything JSON can say) encrypted and authenticated for ``purpose``, as URL-safe text."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        plain = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        sealed = VERSION + nonce + self._aead.encrypt(nonce, plain, purpose.encode())
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def unseal(self, text: Any, purpose: str) -> Any | None:
        """What ``seal`` sealed for ``purpose``; None for anything else (forged, changed, another key or purpose)."""
        if not isinstance(text, str):
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= 1 + NONCE_BYTES or raw[:1] != VERSION:
            return None
        nonce, sealed = raw[1:1 + NONCE_BYTES], raw[1 + NONCE_BYTES:]
        try:
            return json.loads(self._aead.decrypt(nonce, sealed, purpose.encode()))
        except (InvalidTag, ValueError):
            return None


def derive_key(secret: str) -> bytes:
    """A 256-bit key from GATEWAY_SECRET_KEY, whatever its length and alphabet."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"gateway sealed v1").derive(secret.encode())


def shared_key(state: StateStore) -> bytes:
    """The key kept in the state store (``secret:sealing-key``, no expiry), made by whichever worker asks first.

    A lock keeps two workers starting at once from making two keys; the key is read once, at start, so a store
    that later evicts it changes nothing for a running process.
    """
    with state.lock(f"lock:{KEY_NAME}", secrets.token_hex(8), ttl=10.0, wait=5.0):
        stored = state.get(KEY_NAME)
        if not isinstance(stored, str):
            stored = base64.b64encode(secrets.token_bytes(32)).decode()
            state.put(KEY_NAME, stored)
    key = base64.b64decode(stored)
    if len(key) != 32:
        raise ValueError(f"the state store's {KEY_NAME} is not a 256-bit key; delete it to make a new one")
    return key


def server_sealer(secret: str | None, state: StateStore) -> Sealer:
    if secret:
        return Sealer(derive_key(secret))
    if state.backend == "memory":
        log.info("no GATEWAY_SECRET_KEY and no shared state: sealed reasoning opens only in this process")
    return Sealer(shared_key(state))
