"""API keys.

Keys are compared in constant time against every configured key (hashed first so lengths match), so
neither which key matched nor how much of it did leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from .errors import AuthenticationFailed

PUBLIC_PATHS = frozenset({"/health"})
ADMIN_PATHS = frozenset({"/refresh-token", "/account-limits"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


# Where clients put the key unless their API family says otherwise: ``x-api-key`` (Anthropic style) or
# ``Authorization: Bearer`` (both SDKs).
KEY_HEADERS = ("x-api-key", "authorization")


def presented_key(headers: Mapping[str, str], names: Iterable[str] = KEY_HEADERS) -> str | None:
    """The key a client sent in the first of the headers ``names`` it set (``authorization`` as a Bearer token)."""
    for name in names:
        value = headers.get(name, "")
        if name.lower() == "authorization":
            scheme, _, value = value.partition(" ")
            if scheme.lower() != "bearer":
                continue
        if value.strip():
            return value.strip()
    return None


def key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """Constant-time membership: every key is compared, whatever the outcome."""
    if presented is None:
        return False
    candidate = _digest(presented)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, _digest(key))
    return matched


class KeyChecker:
    def __init__(self, api_keys: frozenset[str], admin_key: str | None) -> None:
        self.api_keys = api_keys
        self.admin_key = admin_key

    @property
    def enforcing(self) -> bool:
        return bool(self.api_keys or self.admin_key)

    def check(self, path: str, headers: Mapping[str, str], names: Iterable[str] = KEY_HEADERS) -> None:
        """Raise AuthenticationFailed unless the request may reach ``path`` (with a key in one of ``names``)."""
        if path in PUBLIC_PATHS:
            return
        presented = presented_key(headers, names)
        if path in ADMIN_PATHS and self.admin_key:
            if not key_matches(presented, [self.admin_key]):
                raise AuthenticationFailed("this endpoint needs the admin key (GATEWAY_ADMIN_KEY)")
            return
        if not self.api_keys:
            return
        if presented is None:
            raise AuthenticationFailed("missing API key: send it as x-api-key or Authorization: Bearer")
        if not key_matches(presented, self.api_keys):
            raise AuthenticationFailed("invalid API key")
