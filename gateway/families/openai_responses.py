"""The OpenAI Responses API: POST /v1/responses, its stored responses, and /v1/responses/compact.

Every path is served with and without the ``/v1`` prefix: Codex builds its URLs from the provider's base URL,
which users write either way. What the gateway keeps between turns:

* ``store`` (OpenAI's default: true) keeps the response, and the input it answered, in the shared response
  store for ``previous_response_id``, retrieval and input items; ``store: false`` keeps nothing there.
* Reasoning items carry sealed ``encrypted_content`` from which the next turn restores what the upstream needs
  (a Claude turn's signed thinking, a Gemini call's signature), so a client keeping no server state (Codex)
  still replays a thinking tool loop on any worker. Tool calls also get the gateway's own ids, under which the
  signature registry keeps the same for clients that send reasoning back without it (``translate/replay.py``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import Schema, ValidationError

from ..api.body import json_body
from ..core.events import Event, TextBlock, collect
from ..core.events import Response as Answer
from ..core.request import Message, Text, Thinking, ToolCall, ToolResult
from ..dispatch import Outcome
from ..errors import InvalidRequest, NotFound
from ..render import responses as render
from ..runtime import current_gateway
from ..schemas.responses import COMPACT_SCHEMA, RESPONSES_SCHEMA, Replayed, ResponsesRequest, conversation
from ..security import presented_key
from ..translate.replay import replayable, restore_thinking
from .handler import generate
from .openai_chat import invalid_request
from .registry import Call, Family, StreamRenderer

if TYPE_CHECKING:
    from ..catalog import ModelInfo
    from ..runtime import Gateway

bp = Blueprint("responses", __name__)

# What sealed blobs are for: a blob sealed for one purpose never opens for another.
SEALED_REASONING = "responses.reasoning"
SEALED_COMPACTION = "responses.compaction"
# Item id prefixes, by type, for input items stored without one.
ITEM_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs",
                 "custom_tool_call": "ctc", "custom_tool_call_output": "ctco", "local_shell_call": "lsh",
                 "local_shell_call_output": "lsho", "compaction": "cmp"}
COMPACT_PROMPT = (
    "Summarize the conversation above so that it can be continued from your summary alone: the user's goals "
    "and constraints, what was decided and done (files, commands, results), and what remains to be done. "
    "Answer with the summary only."
)
MAX_LIST = 100


@dataclass
class Turn:
    """A loaded Responses request, with what the rest of its life needs."""

    loaded: ResponsesRequest
    owner: str
    # The stored conversation it continues (input and output items of ``previous_response_id``), then its own.
    context: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    signer: str | None = None


def load(schema: Schema, body: dict[str, Any]) -> ResponsesRequest:
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def owner() -> str:
    """Whose stored responses a request may see: a digest of its API key (every key sees its own only)."""
    key = presented_key(request.headers, FAMILY.auth_headers) or ""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def stored(gateway: Gateway, response_id: str, who: str) -> dict[str, Any] | None:
    record = gateway.responses.get(response_id)
    return record if record is not None and record.get("owner") == who else None


def with_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as stored: each with an id, as OpenAI lists them."""
    return [item if item.get("id") else {**item, "id": render.new_id(ITEM_PREFIXES.get(item["type"], "item"))}
            for item in items]


def resolve_references(items: list[dict[str, Any]], context: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``item_reference`` items replaced by the items of the continued conversation they name."""
    if not any(item["type"] == "item_reference" for item in items):
        return items
    known = {item.get("id"): item for item in context if item.get("id")}
    return [known.get(item.get("id"), item) if item["type"] == "item_reference" else item for item in items]


class Opener:
    """Opens what the gateway sealed into reasoning and compaction items; anything else opens to nothing."""

    def __init__(self, gateway: Gateway) -> None:
        self.sealer = gateway.sealer

    def reasoning(self, sealed: Any) -> Replayed | None:
        payload = self.sealer.unseal(sealed, SEALED_REASONING)
        if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
            return None
        if payload.get("f") == "claude" and isinstance(payload.get("t"), str):
            return Replayed(thinking=[Thinking(payload["t"], payload["s"])])
        if payload.get("f") == "gemini":
            return Replayed(call_signature=payload["s"])
        return None

    def compaction(self, sealed: Any) -> str | None:
        payload = self.sealer.unseal(sealed, SEALED_COMPACTION)
        return payload.get("summary") if isinstance(payload, dict) else None


def seal_reasoning(gateway: Gateway, signer: str | None):  # noqa: ANN201 - the builder's seal callable
    """What a reasoning item's ``encrypted_content`` holds: for Claude the signed thinking (the signature binds
    its exact text), for Gemini the signature its next call needs; nothing for models that sign nothing."""

    def seal(text: str, signature: str) -> str | None:
        if signer == "claude":
            return gateway.sealer.seal({"f": signer, "t": text, "s": signature}, SEALED_REASONING)
        if signer == "gemini":
            return gateway.sealer.seal({"f": signer, "s": signature}, SEALED_REASONING)
        return None

    return seal


def continued(gateway: Gateway, loaded: ResponsesRequest, who: str) -> list[dict[str, Any]]:
    """The stored conversation ``previous_response_id`` names: its input, then its output."""
    previous = loaded.previous_response_id
    if not previous:
        return []
    record = stored(gateway, previous, who)
    if record is None:
        raise InvalidRequest(f"Previous response with id '{previous}' not found.", param="previous_response_id",
                             code="previous_response_not_found")
    return record["context"] + record["response"]["output"]


def begin(loaded: ResponsesRequest, gateway: Gateway) -> Turn:
    """The canonical conversation: the stored one continued, then this request's input."""
    who = owner()
    context = continued(gateway, loaded, who)
    items = resolve_references(loaded.items, context)
    opener = Opener(gateway)
    try:
        messages, system = conversation(context + items, open_reasoning=opener.reasoning,
                                        open_compaction=opener.compaction, first_index=len(context))
    except ValidationError as exc:
        raise invalid_request(exc) from None
    loaded.request.messages = messages
    loaded.request.system += system
    restore_thinking(loaded.request, gateway.signatures)
    return Turn(loaded, who, context, with_ids(items) if loaded.store else items)


class OpenAIResponses(Family):
    name = "responses"
    prefixes = ("/v1/responses", "/responses")
    blueprint = bp
    ping = render.PING

    def load(self, body: dict[str, Any], gateway: Gateway) -> Call:
        loaded = load(RESPONSES_SCHEMA, body)
        return Call(loaded.request, begin(loaded, gateway))

    def relay(self, events: Iterator[Event], call: Call, gateway: Gateway, model: ModelInfo) -> Iterator[Event]:
        call.options.signer = model.signer
        return replayable(events, gateway.signatures, model.signer)

    def stream(self, call: Call, model: str) -> StreamRenderer:
        return render.StreamRenderer(self.builder(call, model))

    def answer(self, call: Call, response: Answer, model: str) -> dict[str, Any]:
        builder = self.builder(call, model)
        for event in render.events_of(response):
            builder.feed(event)
        return builder.result()

    def builder(self, call: Call, model: str) -> render.ResponseBuilder:
        turn: Turn = call.options
        gateway = current_gateway()
        loaded = turn.loaded
        signer = turn.signer
        answering = next((info for info in gateway.catalog.models() if info.id == model), None)
        if answering is not None:
            signer = answering.signer  # a fallback model may have answered, of another vendor
        response_id = render.new_id("resp")

        def keep(response: dict[str, Any]) -> None:
            if loaded.store:
                gateway.responses.put(response_id, {"owner": turn.owner, "response": response,
                                                    "context": turn.context + turn.items,
                                                    "input_from": len(turn.context)})

        return render.ResponseBuilder(
            echo(loaded, response_id, model),
            tools=loaded.tools,
            seal=seal_reasoning(gateway, signer),
            summary=loaded.summary,
            include_encrypted=loaded.include_encrypted,
            parallel_tool_calls=loaded.parallel_tool_calls,
            on_finish=keep,
        )


def echo(loaded: ResponsesRequest, response_id: str, model: str) -> dict[str, Any]:
    """The response object's fields that repeat the request (required by the SDK even in response.created)."""
    fields = loaded.body
    reasoning = fields.get("reasoning") or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "model": model,
        "instructions": loaded.instructions,
        "max_output_tokens": fields.get("max_output_tokens"),
        "previous_response_id": loaded.previous_response_id,
        "parallel_tool_calls": loaded.parallel_tool_calls,
        "tool_choice": fields.get("tool_choice") or "auto",
        "tools": fields.get("tools") or [],
        "store": loaded.store,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "text": fields.get("text") or {"format": {"type": "text"}},
        "temperature": fields["temperature"] if fields.get("temperature") is not None else 1.0,
        "top_p": fields["top_p"] if fields.get("top_p") is not None else 1.0,
        "truncation": fields.get("truncation") or "disabled",
        "metadata": fields.get("metadata") or {},
        "user": fields.get("user"),
        "prompt_cache_key": fields.get("prompt_cache_key"),
        "background": False,
    }


FAMILY = OpenAIResponses()


def _include_encrypted() -> bool:
    included = request.args.getlist("include[]") + request.args.getlist("include")
    return "reasoning.encrypted_content" in included


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", code="response_not_found")


@bp.post("/v1/responses")
@bp.post("/responses")
def create_response() -> Response:
    return generate(FAMILY, json_body())


@bp.get("/v1/responses/<response_id>")
@bp.get("/responses/<response_id>")
def retrieve_response(response_id: str) -> Response:
    record = stored(current_gateway(), response_id, owner())
    if record is None:
        raise _not_found(response_id)
    return jsonify(render.public_response(record["response"], _include_encrypted()))


@bp.delete("/v1/responses/<response_id>")
@bp.delete("/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    gateway = current_gateway()
    if stored(gateway, response_id, owner()) is None or not gateway.responses.delete(response_id):
        raise _not_found(response_id)
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})


@bp.get("/v1/responses/<response_id>/input_items")
@bp.get("/responses/<response_id>/input_items")
def input_items(response_id: str) -> Response:
    record = stored(current_gateway(), response_id, owner())
    if record is None:
        raise _not_found(response_id)
    items = record["context"][record.get("input_from", 0):]
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIST:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIST}", param="limit")
    if order == "desc":
        items = items[::-1]
    after = request.args.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:int(limit)]
    include = _include_encrypted()
    data = [render.public(item, include) for item in page]
    return jsonify({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None, "has_more": len(items) > len(page)})


@bp.post("/v1/responses/compact")
@bp.post("/responses/compact")
def compact() -> Response:
    """Codex's remote compaction: the conversation's user messages, then one sealed summary of all of it."""
    gateway = current_gateway()
    loaded = load(COMPACT_SCHEMA, json_body())
    loaded.items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": COMPACT_PROMPT}]})
    turn = begin(loaded, gateway)
    canonical = turn.loaded.request
    canonical.messages = transcript(canonical.messages)
    g.access.requested = canonical.model
    model = gateway.dispatcher.resolve_model(canonical)
    g.access.model = model.id
    g.outcome = outcome = Outcome()
    answer = collect(model.id, gateway.dispatcher.events(canonical, outcome, model))
    summary = "".join(block.text for block in answer.content if isinstance(block, TextBlock))
    kept = [item for item in turn.context + turn.items[:-1] if item["type"] == "message" and item["role"] == "user"]
    compaction = {"id": render.new_id("cmp"), "type": "compaction",
                  "encrypted_content": gateway.sealer.seal({"summary": summary}, SEALED_COMPACTION)}
    response = jsonify({"id": render.new_id("resp"), "object": "response.compaction", "created_at": int(time.time()),
                        "output": [*kept, compaction], "usage": render.usage_body(answer.usage)})
    response.headers.update(outcome.response_headers())
    return response


def transcript(messages: list[Message]) -> list[Message]:
    """The conversation with its tool calls and results told as text, and no thinking: a compaction request
    declares no tools, and an upstream refuses calls to undeclared ones."""
    told = []
    for message in messages:
        parts = []
        for part in message.parts:
            if isinstance(part, ToolCall):
                parts.append(Text(f"[called {part.name} with {part.arguments}]"))
            elif isinstance(part, ToolResult):
                output = "\n".join(p.text for p in part.content if isinstance(p, Text))
                parts.append(Text(f"[result of {part.tool_call_id}: {output}]"))
            elif not isinstance(part, Thinking):
                parts.append(part)
        told.append(Message(role=message.role, parts=parts or [Text(".")]))
    return told
