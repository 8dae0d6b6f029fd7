"""The OpenAI Chat Completions API: POST /v1/chat/completions and GET /v1/models/<id>.

Chat clients send back only standard fields: tool calls get the gateway's own ids, under which it keeps what
a replay needs (``translate/replay.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify
from marshmallow import ValidationError

from ..api.body import json_body
from ..api.ops import STARTED
from ..core.events import Event
from ..core.events import Response as Answer
from ..errors import InvalidRequest
from ..render import openai as render
from ..runtime import current_gateway
from ..schemas.common import first_error
from ..schemas.openai import CHAT_COMPLETION_SCHEMA, ChatRequest
from ..translate.replay import replayable, restore_thinking
from .handler import generate
from .registry import Call, Family, StreamRenderer

if TYPE_CHECKING:
    from ..catalog import ModelInfo
    from ..runtime import Gateway

bp = Blueprint("openai", __name__)


def load(body: dict[str, Any]) -> ChatRequest:
    try:
        return CHAT_COMPLETION_SCHEMA.load(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def invalid_request(exc: ValidationError) -> InvalidRequest:
    """marshmallow's complaint as OpenAI words it, with the ``param`` it points at (both OpenAI families)."""
    path, message = first_error(exc.messages)
    param = param_path(path)
    if message == "Missing data for required field.":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return InvalidRequest(f"{param}: {message}" if param else message, param=param or None)


def param_path(path: str) -> str:
    """marshmallow's ``tools.0.function`` in OpenAI's spelling, ``tools[0].function``."""
    return ".".join(f"[{piece}]" if piece.isdigit() else piece for piece in path.split(".")).replace(".[", "[")


class OpenAIChat(Family):
    # The metrics and the access log have always called this family "openai".
    name = "openai"
    prefixes = ("/v1/chat/completions", "/v1/models")
    blueprint = bp

    def load(self, body: dict[str, Any], gateway: Gateway) -> Call:
        chat = load(body)
        restore_thinking(chat.request, gateway.signatures)
        return Call(chat.request, chat)

    def relay(self, events: Iterator[Event], call: Call, gateway: Gateway, model: ModelInfo) -> Iterator[Event]:
        return replayable(events, gateway.signatures, model.signer)

    def stream(self, call: Call, model: str) -> StreamRenderer:
        return render.StreamRenderer(model, include_usage=call.options.include_usage)

    def answer(self, call: Call, response: Answer, model: str) -> dict[str, Any]:
        return render.completion_body(response, model)


FAMILY = OpenAIChat()


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    return generate(FAMILY, json_body())


@bp.get("/v1/models/<path:model_id>")
def retrieve_model(model_id: str) -> Response:
    """One model of GET /v1/models (``client.models.retrieve``); aliases answer with their target."""
    gateway = current_gateway()
    gateway.listing.refresh()
    model = gateway.catalog.resolve(model_id)
    return jsonify(
        {"id": model.id, "object": "model", "created": STARTED, "owned_by": model.owned_by,
         "display_name": model.display_name}
    )
