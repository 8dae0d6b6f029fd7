"""The Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError

from ..core.events import collect
from ..core.request import Request
from ..errors import GatewayError, InvalidRequest
from ..render import anthropic as render
from ..runtime import current_gateway
from ..schemas.anthropic import COUNT_TOKENS_SCHEMA, MESSAGES_SCHEMA
from ..schemas.common import first_error
from .streaming import prime, sse_response

bp = Blueprint("anthropic", __name__)


@bp.errorhandler(GatewayError)
def gateway_error(error: GatewayError) -> tuple[Response, int, dict[str, str]]:
    headers = {}
    if error.retry_after is not None:
        headers["retry-after"] = str(max(1, int(error.retry_after + 0.999)))
    return jsonify(render.error_body(error)), error.status, headers


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None:
        if not request.is_json:
            raise InvalidRequest("the request body must be JSON sent with Content-Type: application/json")
        raise InvalidRequest("the request body is not valid JSON")
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def load(schema: Schema, body: dict[str, Any]) -> Request:
    try:
        return schema.load(body)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        raise InvalidRequest(f"{path}: {message}" if path else message, param=path or None) from None


@bp.post("/v1/messages")
def create_message() -> Response:
    canonical = load(MESSAGES_SCHEMA, json_body())
    gateway = current_gateway()
    model = gateway.dispatcher.resolve_model(canonical)
    events = gateway.dispatcher.events(canonical)
    if canonical.stream:
        renderer = render.StreamRenderer(canonical.model)
        return sse_response(prime(events), renderer.feed, render.error_event)
    response = collect(model.id, events)
    return jsonify(render.message_body(response, canonical.model))


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    canonical = load(COUNT_TOKENS_SCHEMA, json_body())
    return jsonify({"input_tokens": current_gateway().dispatcher.count_tokens(canonical)})
