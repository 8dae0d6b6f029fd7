"""The OpenAI Chat Completions API: POST /v1/chat/completions and GET /v1/models/<id>.

Chat clients send back only standard fields: tool calls get the gateway's own ids, under which it keeps what
a replay needs (``translate/replay.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify
from marshmallow import ValidationError

from ..core.events import collect
from ..dispatch import Outcome
from ..errors import InvalidRequest
from ..render import openai as render
from ..runtime import current_gateway
from ..schemas.common import first_error
from ..schemas.openai import CHAT_COMPLETION_SCHEMA, ChatRequest
from ..translate.replay import replayable, restore_thinking
from .body import json_body
from .ops import STARTED
from .streaming import prime, sse_response

bp = Blueprint("openai", __name__)

def load(body: dict[str, Any]) -> ChatRequest:
    try:
        return CHAT_COMPLETION_SCHEMA.load(body)
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        param = _param(path)
        if message == "Missing data for required field.":
            raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param) from None
        raise InvalidRequest(f"{param}: {message}" if param else message, param=param or None) from None


def _param(path: str) -> str:
    """marshmallow's ``tools.0.function`` in OpenAI's spelling, ``tools[0].function``."""
    return ".".join(f"[{piece}]" if piece.isdigit() else piece for piece in path.split(".")).replace(".[", "[")


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    chat = load(json_body())
    canonical = chat.request
    gateway = current_gateway()
    g.access.model, g.access.stream = canonical.model, canonical.stream
    model = gateway.dispatcher.resolve_model(canonical)
    restore_thinking(canonical, gateway.signatures)
    g.outcome = outcome = Outcome()
    events = replayable(gateway.dispatcher.events(canonical, outcome, model), gateway.signatures, model.signer)
    if canonical.stream:
        events = prime(events)  # the attempts run here: the model that answers is known after it
        renderer = render.StreamRenderer(outcome.model or model.id, include_usage=chat.include_usage)
        response = sse_response(
            events,
            renderer.feed,
            render.error_event,
            ping=render.PING,
            ping_interval=gateway.settings.ping_interval,
            abort=outcome.abort,
            trailer=renderer.trailer,
        )
    else:
        completion = collect(model.id, events)
        response = jsonify(render.completion_body(completion, outcome.model or model.id))
    response.headers.update(outcome.response_headers())
    return response


@bp.get("/v1/models/<path:model_id>")
def retrieve_model(model_id: str) -> Response:
    """One model of GET /v1/models (``client.models.retrieve``); aliases answer with their target."""
    gateway = current_gateway()
    gateway.refresh_model_listing()
    model = gateway.catalog.resolve(model_id)
    return jsonify(
        {"id": model.id, "object": "model", "created": STARTED, "owned_by": model.owned_by,
         "display_name": model.display_name}
    )
