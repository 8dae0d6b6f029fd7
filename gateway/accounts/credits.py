"""Google One AI credits: when an account out of quota may pay for a request, and what the gateway remembers.

Off unless GATEWAY_AI_CREDITS=on: credits cost the user money. With it on, a 429 QUOTA_EXHAUSTED is sent once
more to the same account with the credit type enabled in the envelope (docs/upstream.md, "AI credits") before
the request moves on. An account whose credits failed is not asked to use them again for FAILED_PAUSE seconds,
so an empty balance costs one extra call per hour, not one per request.
"""

from __future__ import annotations

import logging
from typing import Any

from ..upstream.client import CloudCodeClient, UpstreamStream
from ..upstream.errors import UpstreamHTTPError
from .pool import Account

log = logging.getLogger(__name__)

CREDIT_TYPES = ("GOOGLE_ONE_AI",)
QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"
# After credits failed on an account, how long before it may try them again.
FAILED_PAUSE = 3600.0
# How long a model counts as served from credits when the 429 did not say when its quota resets.
SERVING_UNKNOWN = 3600.0


def with_credits(body: dict[str, Any]) -> dict[str, Any]:
    """The request envelope with credits enabled: a top-level field beside project, model and request."""
    return {**body, "enabledCreditTypes": list(CREDIT_TYPES)}


def worth_trying(account: Account, error: UpstreamHTTPError, *, enabled: bool, now: float) -> bool:
    """Whether this answer should be retried from the account's credits: quota used up (not a short rate
    limit, which credits do not lift), credits allowed, and not failed on this account lately."""
    if not enabled or error.status != 429 or not failed_long_ago(account, now):
        return False
    details = error.error.get("details") or []
    return any(isinstance(d, dict) and d.get("reason") == QUOTA_EXHAUSTED for d in details)


def failed_long_ago(account: Account, now: float) -> bool:
    return account.credits_failed_at is None or now - account.credits_failed_at >= FAILED_PAUSE


def served(account: Account, model: str, reset_in: float | None, now: float) -> None:
    """Credits paid for ``model``: so until its quota resets, as far as the 429 said."""
    if model not in serving(account, now):
        log.warning("account %s is out of quota on %s: serving it from Google One AI credits", account.label, model)
    account.credits_until[model] = now + (reset_in if reset_in is not None else SERVING_UNKNOWN)
    account.credits_failed_at = account.credits_error = None


def failed(account: Account, error: UpstreamHTTPError, now: float) -> None:
    account.credits_failed_at, account.credits_error = now, error.message
    log.warning("Google One AI credits of %s failed (%s); not tried again for %.0f min", account.label,
                error.message, FAILED_PAUSE / 60)


def serving(account: Account, now: float) -> dict[str, float]:
    """model -> until when it is served from credits."""
    return {model: until for model, until in list(account.credits_until.items()) if until > now}


def open_stream(
    client: CloudCodeClient,
    account: Account,
    model: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    enabled: bool,
    now: float,
) -> UpstreamStream:
    """``client.stream_generate``, retried once from the account's credits when it is out of quota and may use
    them. When the credits fail too, the quota's 429 is what the caller sees (its reset time sets the cooldown)."""
    try:
        stream = client.stream_generate(account, body, extra_headers=headers)
    except UpstreamHTTPError as exc:
        if not worth_trying(account, exc, enabled=enabled, now=now):
            raise
        try:
            stream = client.stream_generate(account, with_credits(body), extra_headers=headers)
        except UpstreamHTTPError as again:
            if again.retryable:  # the upstream's trouble, not the credits': back off as for any 5xx
                raise
            failed(account, again, now)
            raise exc from None
        served(account, model, exc.retry_delay(now=now), now)
        return stream
    account.credits_until.pop(model, None)  # its quota serves again
    return stream
