"""Operational endpoints: health and the model list."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify

from ..runtime import current_gateway

bp = Blueprint("ops", __name__)

STARTED = int(time.time())


@bp.get("/health")
def health() -> Response:
    gateway = current_gateway()
    pool = gateway.pool
    active = pool.active_count()
    body: dict[str, object] = {"status": "ok", "accounts": len(pool.accounts), "activeAccounts": active}
    if gateway.accounts_error:
        body["error"] = gateway.accounts_error
    elif active == 0:
        body["error"] = pool.no_account_message()
    return jsonify(body)


@bp.get("/v1/models")
def list_models() -> Response:
    gateway = current_gateway()
    gateway.refresh_model_listing()
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
