"""Masking credentials in text that leaves the gateway (logs, error messages quoted from the upstream)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Google access tokens, refresh tokens, OAuth codes, bearer headers and key-looking strings.
_SECRET_PATTERNS = [
    re.compile(r"ya29\.[0-9A-Za-z_\-.]+"),
    re.compile(r"1//[0-9A-Za-z_\-]+"),
    re.compile(r"4/0[0-9A-Za-z_\-]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
    re.compile(r"(?i)((?:access_token|refresh_token|api[_-]?key|client_secret)[\"'=:\s]+)[^\s\"',&]+"),
    re.compile(r"GOCSPX-[0-9A-Za-z_\-]+"),
]
# What every pattern above starts with: one search that finds none of them lets a line through unchanged.
_ANY_PREFIX = re.compile(r"ya29\.|1//|4/0|GOCSPX-|(?i:bearer|access_token|refresh_token|api[_-]?key|client_secret)")


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Mask anything that looks like a credential (and the given literal secrets) in ``text``."""
    for secret in extra:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[redacted]")
    if _ANY_PREFIX.search(text) is None:  # the common case: one scan instead of six (every access line)
        return text
    return mask_patterns(text)


def mask_patterns(text: str) -> str:
    """Every credential pattern applied in turn: what ``redact`` does when the shortcut finds a candidate."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "[redacted]", text)
        else:
            text = pattern.sub("[redacted]", text)
    return text
