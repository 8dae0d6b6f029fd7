"""The OpenAI Chat Completions API: POST /v1/chat/completions and GET /v1/models/<id>.

OpenAI clients send back no thinking and no signatures (docs/client-apis.md, "Thinking over OpenAI"). So the
gateway gives tool calls its own random ids and keeps, server-side under those ids, what a replay needs:
a Gemini call's signature, and a Claude turn's signed thinking. The ids are unguessable, so one client's
conversation can never pick up another's thinking.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, g, jsonify
from marshmallow import ValidationError

from ..core.events import Event, SignatureDelta, ThinkingDelta, ToolCallEvent, collect
from ..core.request import Request, Thinking, ToolCall
from ..dispatch import Outcome
from ..errors import InvalidRequest
from ..render import openai as render
from ..runtime import current_gateway
from ..schemas.common import first_error
from ..schemas.openai import CHAT_COMPLETION_SCHEMA, ChatRequest
from ..translate.signatures import SignatureRegistry
from .body import json_body
from .ops import STARTED
from .streaming import prime, sse_response

bp = Blueprint("openai", __name__)

_ID_ALPHABET = string.ascii_letters + string.digits


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


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def restore_thinking(request: Request, signatures: SignatureRegistry) -> None:
    """Put back the signed thinking of earlier Claude turns, found by each turn's first tool-call id.

    The translator sends each signature only to the family that made it, so this is safe for any target.
    """
    for message in request.messages:
        if message.role != "assistant" or any(isinstance(part, Thinking) for part in message.parts):
            continue
        first = next((part for part in message.parts if isinstance(part, ToolCall)), None)
        if first is not None:
            message.parts[:0] = signatures.turn_thinking(first.id)


def replayable(
    events: Generator[Event, None, None], signatures: SignatureRegistry, signer: str | None
) -> Generator[Event, None, None]:
    """The events with tool calls renamed to ``call_`` ids, remembering what replays of this turn need."""
    thinking: list[Thinking] = []
    first_call = True
    try:
        for event in events:
            if isinstance(event, ThinkingDelta):
                if not thinking or thinking[-1].signature:
                    thinking.append(Thinking(""))
                thinking[-1].text += event.text
            elif isinstance(event, SignatureDelta) and thinking:
                thinking[-1].signature = event.signature
            elif isinstance(event, ToolCallEvent):
                event = replace(event, id=call_id())
                if event.signature and signer is not None:
                    signatures.remember_tool_call(event.id, event.signature, signer)
                if first_call and signer == "claude":
                    signatures.remember_turn_thinking(event.id, thinking)
                first_call = False
            yield event
    finally:
        events.close()


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    chat = load(json_body())
    canonical = chat.request
    gateway = current_gateway()
    g.access.requested, g.access.stream = canonical.model, canonical.stream
    model = gateway.dispatcher.resolve_model(canonical)
    g.access.model = model.id  # metric labels take listed ids only, never the client's string
    restore_thinking(canonical, gateway.signatures)
    g.outcome = outcome = Outcome()
    events = replayable(gateway.web_search.events(canonical, outcome, model), gateway.signatures, model.signer)
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
