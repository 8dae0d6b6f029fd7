"""Reading a JSON request body within the size limit, for every API family."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request

from ..errors import InvalidRequest, RequestTooLarge


def too_large() -> RequestTooLarge:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return RequestTooLarge(f"request body larger than {limit / (1024 * 1024):g} MB (GATEWAY_MAX_BODY_MB)")


def json_body() -> dict[str, Any]:
    """The body as a JSON object, or a 4xx naming what is wrong with it.

    Werkzeug rejects a too-large Content-Length before reading anything; a chunked body is cut at the limit
    without an error, so reaching the limit is treated as too large here.
    """
    if not request.is_json:
        raise InvalidRequest("the request body must be JSON sent with Content-Type: application/json")
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and len(data) >= limit:
        raise too_large()
    try:
        body = json.loads(data, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def _not_json(constant: str) -> None:
    """NaN and the infinities: the ``json`` module takes them, JSON (and the upstream) does not."""
    raise ValueError(f"{constant} is not a JSON value")
