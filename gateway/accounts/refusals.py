"""403s about the account rather than the request: Google wants it verified in a browser, or has banned it.

Either takes the account out of rotation (the request goes on to the next account) and is kept in the accounts
file, so a restart does not send requests to it again. What the answers look like: docs/upstream.md, "Account
errors".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..upstream.client import CloudCodeClient
from ..upstream.errors import UpstreamConnectionError, UpstreamHTTPError
from .credentials import InvalidGrant, TokenRefreshFailed
from .pool import Account, AccountPool

NEEDS_VERIFICATION = "needs-verification"
SUSPENDED = "suspended"
VALIDATION_REQUIRED = "VALIDATION_REQUIRED"
# Google's ban message names no reason code; its words are what clients match.
TOS_WORDS = "violation of terms of service"


@dataclass(frozen=True)
class Refusal:
    kind: str  # NEEDS_VERIFICATION or SUSPENDED
    message: str
    url: str | None = None


def account_refusal(exc: UpstreamHTTPError) -> Refusal | None:
    """The account-level refusal an upstream answer is, if it is one."""
    if exc.status != 403:
        return None
    details = [d for d in exc.error.get("details") or [] if isinstance(d, dict)]
    if any(d.get("reason") == VALIDATION_REQUIRED for d in details):
        return Refusal(NEEDS_VERIFICATION, exc.message, validation_url(details))
    if TOS_WORDS in exc.message.lower():
        return Refusal(SUSPENDED, exc.message)
    return None


def validation_url(details: list[dict[str, Any]]) -> str | None:
    """The page the user must open: ErrorInfo.metadata.validation_url, else a google.rpc.Help link."""
    for detail in details:
        metadata = detail.get("metadata")
        for key in ("validation_url", "validationUrl"):
            if isinstance(metadata, dict) and _is_url(metadata.get(key)):
                return metadata[key]
    for detail in details:
        for link in detail.get("links") or []:
            if isinstance(link, dict) and _is_url(link.get("url")):
                return link["url"]
    return None


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def note_refusal(pool: AccountPool, account: Account, exc: UpstreamHTTPError) -> Refusal | None:
    """Mark the account if ``exc`` is an account-level refusal; the refusal, or None if it is not one."""
    refusal = account_refusal(exc)
    if refusal is None:
        return None
    if refusal.kind == SUSPENDED:
        pool.mark_suspended(account, refusal.message)
    else:
        pool.mark_needs_verification(account, refusal.url, refusal.message)
    return refusal


def recheck(pool: AccountPool, client: CloudCodeClient, account: Account) -> dict[str, Any] | None:
    """For an account waiting for verification, ask the upstream something cheap (the model listing): an answer
    means the user verified it, and the mark goes. None when the account can serve; else what is wrong, in
    the shape of a POST /refresh-token result. A suspension is only lifted by `accounts enable`."""
    if account.suspended_reason is not None:
        return {"status": SUSPENDED, "error": account.suspended_reason}
    if not account.needs_verification:
        return None
    try:
        pool.record_quotas(account, client.fetch_available_models(account))
    except UpstreamHTTPError as exc:
        refusal = note_refusal(pool, account, exc)
        if refusal is None:
            return {"status": "error", "error": str(exc)}
        return {"status": refusal.kind, "error": refusal.message, "validationUrl": refusal.url}
    except (InvalidGrant, TokenRefreshFailed, UpstreamConnectionError) as exc:
        return {"status": "error", "error": str(exc)}
    pool.clear_needs_verification(account)
    return None
