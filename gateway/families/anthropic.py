"""The Anthropic Messages API: POST /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, ValidationError

from ..api.body import json_body
from ..core.events import Response as Answer
from ..core.request import Request
from ..errors import GatewayError, InvalidRequest, NotFound
from ..render import anthropic as render
from ..runtime import current_gateway
from ..schemas.anthropic import COUNT_TOKENS_SCHEMA, MESSAGES_SCHEMA
from ..schemas.common import first_error
from .handler import generate
from .registry import Call, Family, StreamRenderer

if TYPE_CHECKING:
    from ..runtime import Gateway

bp = Blueprint("anthropic", __name__)

# The anthropic SDK's tool runner (2.x) threads its turns by default: a ``continue`` names the previous reply and
# sends only the new messages. The gateway keeps no conversations; ``thread_not_found`` is the rejection the SDK
# recovers from by resending the whole history under a new thread, so the runner works (one short 404 a turn).
THREAD_NOT_FOUND = "this gateway keeps no message threads; send the full history"


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


class Anthropic(Family):
    name = "anthropic"
    prefixes = ("/v1/messages",)
    blueprint = bp
    ping = render.PING

    def error_response(self, error: GatewayError) -> tuple[dict[str, Any], int, dict[str, str]]:
        return render.error_body(error), error.status, render.error_headers(error)

    def load(self, body: dict[str, Any], gateway: Gateway) -> Call:
        if continues_thread(body):
            raise NotFound(THREAD_NOT_FOUND, code="thread_not_found")
        return Call(load(MESSAGES_SCHEMA, body))

    def stream(self, call: Call, model: str) -> StreamRenderer:
        return render.StreamRenderer(model)

    def answer(self, call: Call, response: Answer, model: str) -> dict[str, Any]:
        return render.message_body(response, model)


FAMILY = Anthropic()


@bp.post("/v1/messages")
def create_message() -> Response:
    return generate(FAMILY, json_body())


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    canonical = load(COUNT_TOKENS_SCHEMA, json_body())
    return jsonify({"input_tokens": current_gateway().dispatcher.count_tokens(canonical)})
