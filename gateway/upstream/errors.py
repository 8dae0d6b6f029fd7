"""Upstream failures and what they tell us: the google.rpc.Status envelope, reasons and retry delays."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any


# How Google words a refusal of the client version, whatever the status code it comes with.
_VERSION_REFUSALS = ("no longer supported", "out of date", "update to receive")


class UpstreamHTTPError(Exception):
    """A non-2xx answer from Cloud Code (or the token endpoint), parsed once."""

    def __init__(self, status: int, body: bytes | str, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        self.headers = dict(headers or {})
        self.error: dict[str, Any] = _error_object(self.text)
        super().__init__(f"upstream answered {status}: {self.message}")

    @property
    def message(self) -> str:
        return str(self.error.get("message") or self.text[:300] or f"HTTP {self.status}")

    @property
    def reason(self) -> str | None:
        for detail in self.error.get("details") or []:
            if isinstance(detail, dict) and detail.get("reason"):
                return str(detail["reason"])
        return None

    @property
    def is_rate_limit(self) -> bool:
        return self.status == 429

    @property
    def is_capacity(self) -> bool:
        return self.reason == "MODEL_CAPACITY_EXHAUSTED" or "no capacity available" in self.message.lower()

    @property
    def refuses_client_version(self) -> bool:
        """Google's "This version of Antigravity is no longer supported" and its variants."""
        message = self.message.lower()
        return "version" in message and any(phrase in message for phrase in _VERSION_REFUSALS)

    @property
    def retryable(self) -> bool:
        """Worth another endpoint or account: server faults and capacity, never bad requests."""
        return self.status >= 500 or self.status == 408 or self.is_capacity

    def retry_delay(self, now: float | None = None) -> float | None:
        return parse_retry_delay(self.error, self.headers, self.text, now=now)


class ClientVersionRefused(UpstreamHTTPError):
    """Google refuses the client version the gateway reported: the same answer for every account.

    ``str()`` is ``explanation``, which says which version and how to change it, for whoever shows the error.
    """

    def __init__(self, error: UpstreamHTTPError, version: str, explanation: str) -> None:
        super().__init__(error.status, error.text, error.headers)
        self.version = version
        self.explanation = explanation

    def __str__(self) -> str:
        return self.explanation


class UpstreamConnectionError(Exception):
    """No answer at all: connection refused, reset or timed out."""


def _error_object(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, TypeError):
        return {}
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_MESSAGE_PATTERNS = [
    re.compile(r"reset after ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.I),
    re.compile(r"(?:retry|try again) (?:after|in) ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.I),
    re.compile(r"(?:retry|try again) (?:after|in) (\d+(?:\.\d+)?) ?sec", re.I),
]


def parse_duration(text: str) -> float | None:
    """Go-style durations as Google writes them: ``0.479s``, ``479.4ms``, ``1h12m5.2s``."""
    text = text.strip()
    if not _DURATION.match(text):
        return None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in _DURATION_PART.findall(text))


def _timestamp(text: str, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now)


def _header_delay(headers: Mapping[str, str], now: float) -> float | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    raw = lowered.get("retry-after")
    if raw:
        if raw.strip().replace(".", "", 1).isdigit():
            return float(raw)
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is not None:
            return max(0.0, parsed.timestamp() - now)
    return None


def parse_retry_delay(
    error: Mapping[str, Any], headers: Mapping[str, str], text: str = "", *, now: float | None = None
) -> float | None:
    """Seconds until a rate limit lifts, from every form the upstream uses.

    Order: RetryInfo.retryDelay, ErrorInfo quotaResetDelay, quotaResetTimeStamp, the Retry-After
    header, then phrases in the message ("reset after 2h13m5s").
    """
    now = time.time() if now is None else now
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    for detail in details:
        if str(detail.get("@type", "")).endswith("RetryInfo") and isinstance(detail.get("retryDelay"), str):
            delay = parse_duration(detail["retryDelay"])
            if delay is not None:
                return delay
    for detail in details:
        metadata = detail.get("metadata") if isinstance(detail.get("metadata"), dict) else {}
        if isinstance(metadata.get("quotaResetDelay"), str):
            delay = parse_duration(metadata["quotaResetDelay"])
            if delay is not None:
                return delay
        if isinstance(metadata.get("quotaResetTimeStamp"), str):
            delay = _timestamp(metadata["quotaResetTimeStamp"], now)
            if delay is not None:
                return delay
    delay = _header_delay(headers, now)
    if delay is not None:
        return delay
    message = str(error.get("message") or text)
    for pattern in _MESSAGE_PATTERNS:
        match = pattern.search(message)
        if match:
            value = match.group(1)
            parsed = parse_duration(value) if not value.replace(".", "", 1).isdigit() else float(value)
            if parsed is not None:
                return parsed
    return None
