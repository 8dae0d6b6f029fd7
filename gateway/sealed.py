"""Sealed blobs: what a client carries for the gateway and can neither read nor forge.

The Responses API hands reasoning back to clients as ``encrypted_content``, so that a client keeping no server
state (Codex sends ``store: false``) still returns, on its next turn, what the upstream needs: a Claude turn's
signed thinking, a Gemini call's signature. The gateway seals that with AES-256-GCM (``cryptography``'s
AESGCM: authenticated, so a changed byte fails to open) under a server key, and binds each blob to its purpose.

The key comes from GATEWAY_SECRET_KEY, else it is generated once and kept in the shared-state directory, where
every gunicorn worker finds the same one and a restart finds it again. Without either (``python app.py`` with
no settings) each process makes its own: blobs then open only in the process that sealed them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

# The first byte of every blob: a later format (or key scheme) gets another, and old blobs stay recognisable.
VERSION = b"\x01"
NONCE_BYTES = 12
KEY_FILE = "secret.key"


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


def shared_key(directory: Path) -> bytes:
    """The key kept in ``directory``, made by whichever worker asks first.

    The file is written under a temporary name and linked into place, so that a worker never reads a
    half-written key, and a link that loses the race reads the winner's.
    """
    path = directory / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    key = base64.b64decode(path.read_text().strip())
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 256-bit key; remove it to make a new one")
    return key


def server_sealer(secret: str | None, directory: Path | None) -> Sealer:
    if secret:
        return Sealer(derive_key(secret))
    if directory is not None:
        return Sealer(shared_key(directory))
    log.info("no GATEWAY_SECRET_KEY and no shared state: sealed reasoning opens only in this process")
    return Sealer(secrets.token_bytes(32))
