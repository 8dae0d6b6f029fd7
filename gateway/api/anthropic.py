"""The Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify
from marshmallow import Schema, ValidationError

from ..core.events import collect
from ..core.request import Request
from ..dispatch import Outcome
from ..errors import InvalidRequest
from ..render import anthropic as render
from ..runtime import current_gateway
from ..schemas.anthropic import COUNT_TOKENS_SCHEMA, MESSAGES_SCHEMA
from ..schemas.common import first_error
from .body import json_body
from .streaming import prime, sse_response

bp = Blueprint("anthropic", __name__)

# The anthropic SDK's tool runner (2.x) threads its turns by default: a ``continue`` names the previous reply and
# sends only the new messages. The gateway keeps no conversations; ``thread_not_found`` is the rejection the SDK
# recovers from by resending the whole history under a new thread, so the runner works (one short 404 a turn).
THREAD_NOT_FOUND = {"type": "not_found_error", "details": {"error_code": "thread_not_found"},
                    "message": "this gateway keeps no message threads; send the full history"}


def load(schema: Schema, body: dict[str, Any]) -> Request:
    try:
        return schema.load(body)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        raise InvalidRequest(f"{path}: {message}" if path else message, param=path or None) from None


def continues_thread(body: dict[str, Any]) -> bool:
    """Whether the request continues a server-held message thread (only the new messages are in it)."""
    thread = body.get("thread")
    return isinstance(thread, dict) and thread.get("type") == "continue"


@bp.post("/v1/messages")
def create_message() -> Response | tuple[Response, int]:
    body = json_body()
    if continues_thread(body):
        return jsonify({"type": "error", "error": THREAD_NOT_FOUND}), 404
    canonical = load(MESSAGES_SCHEMA, body)
    gateway = current_gateway()
    g.access.requested, g.access.stream = canonical.model, canonical.stream
    model = gateway.dispatcher.resolve_model(canonical)
    g.access.model = model.id  # metric labels take listed ids only, never the client's string
    g.outcome = outcome = Outcome()
    events = gateway.web_search.events(canonical, outcome, model)
    if canonical.stream:
        events = prime(events)  # the attempts run here: the model that answers is known after it
        renderer = render.StreamRenderer(outcome.model or model.id)
        response = sse_response(
            events,
            renderer.feed,
            render.error_event,
            ping=render.PING,
            ping_interval=gateway.settings.ping_interval,
            abort=outcome.abort,
        )
    else:
        message = collect(model.id, events)
        response = jsonify(render.message_body(message, outcome.model or model.id))
    response.headers.update(outcome.response_headers())
    return response


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    canonical = load(COUNT_TOKENS_SCHEMA, json_body())
    return jsonify({"input_tokens": current_gateway().dispatcher.count_tokens(canonical)})
