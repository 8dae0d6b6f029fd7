"""Operational endpoints: health, the model list, account quotas and forced token refreshes."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..accounts.credentials import InvalidGrant, TokenRefreshFailed
from ..accounts.limits import account_limits, in_parallel, limits_table
from ..accounts.pool import Account
from ..accounts.refusals import recheck
from ..errors import InvalidRequest, NotFound
from ..redact import redact
from ..runtime import current_gateway

bp = Blueprint("ops", __name__)

STARTED = int(time.time())


@bp.get("/health")
def health() -> Response:
    gateway = current_gateway()
    pool = gateway.pool
    active = pool.active_count()
    body: dict[str, object] = {"status": "ok", "accounts": len(pool.accounts), "activeAccounts": active}
    body.update(pool.refused_counts())  # needsVerification, suspended: when there are any
    if pool.error or active == 0:
        body["error"] = pool.no_account_message(public=True)
    if gateway.state.backend == "redis":  # requests are served either way; sharing stops while it is down
        state = gateway.state.health()
        body["redis"] = "reachable" if state["reachable"] else "unreachable"
        if not state["reachable"]:
            body["redisError"] = state["error"]
    return jsonify(body)


@bp.get("/v1/models")
def list_models() -> Response:
    gateway = current_gateway()
    gateway.listing.refresh()
    data = [
        {
            "id": model.id,
            "object": "model",
            "created": STARTED,
            "owned_by": model.owned_by,
            "display_name": model.display_name,
        }
        for model in gateway.catalog.models()
    ]
    return jsonify({"object": "list", "data": data})


@bp.get("/account-limits")
def limits() -> Response:
    """Quota per account and model; ``?format=table`` for a terminal."""
    form = request.args.get("format", "json")
    if form not in ("json", "table"):
        raise InvalidRequest("format must be json or table", param="format")
    gateway = current_gateway()
    report = _redacted(account_limits(gateway.pool, gateway.client), _secrets())
    if form == "table":
        return Response(limits_table(report), content_type="text/plain; charset=utf-8")
    return jsonify(report)


def _secrets() -> tuple[str, ...]:
    settings = current_gateway().settings
    return (*settings.api_keys, *((settings.admin_key,) if settings.admin_key else ()))


def _redacted(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with credentials masked in every string: errors quote the upstream and the token endpoint."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {key: _redacted(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, secrets) for item in value]
    return value


@bp.post("/refresh-token")
def refresh_token() -> tuple[Response, int]:
    """Refresh every account's token now (or ``?email=``'s) and say how each went; never shows a token.

    An account waiting for verification is asked again whether it can serve (a success clears the mark)."""
    gateway = current_gateway()
    pool = gateway.pool
    email = request.args.get("email")
    if email:
        account = pool.find(email)
        if account is None:
            raise NotFound(f"no account {email} in the accounts file", param="email")
        accounts = [account]
    else:
        pool.reload_if_changed()
        accounts = list(pool.accounts)
    results: dict[str, dict[str, Any]] = {}
    secrets = _secrets()

    def refresh(account: Account) -> None:
        try:
            account.tokens.force_refresh()
        except InvalidGrant as exc:
            reason = redact(f"refresh token rejected: {exc}", secrets)
            pool.mark_invalid(account, reason)
            results[account.email] = {"status": "invalid", "error": reason}
        except TokenRefreshFailed as exc:
            results[account.email] = {"status": "error", "error": redact(str(exc), secrets)}
        else:
            pool.clear_invalid(account)
            problem = recheck(pool, gateway.client, account)
            results[account.email] = problem or {"status": "ok", "expiresAt": account.tokens.expiry_iso}

    in_parallel(accounts, refresh)
    entries = [{"email": account.email, **results[account.email]} for account in accounts]
    failed = sum(1 for entry in entries if entry["status"] != "ok")
    body = {
        "status": "error" if failed else "ok",
        "refreshed": len(entries) - failed,
        "failed": failed,
        "accounts": entries,
    }
    return jsonify(body), 502 if failed else 200
