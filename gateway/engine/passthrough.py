"""The passthrough lane: a Gemini API request for a Gemini model, sent on as it came.

This lane bypasses the canonical model on purpose. A client of Google's Gemini API already speaks the upstream's
own format (Cloud Code's ``request`` is a GenerateContentRequest), and the canonical model is narrower than it:
a round trip would lose function responses' objects, code execution parts, safety settings, candidate counts,
finish reasons and grounding metadata. So the body goes into the Cloud Code envelope with only what must change
changed (docs/clients.md, "Gemini API"), and the upstream's chunks come back with only the envelope removed.
Thought signatures go both ways untouched, except those another family made, which Gemini would refuse.

The dispatcher drives this lane like the canonical one (accounts, retries, failover, keep-alives); the chunks
are read by the canonical parser on the side, for what the engine needs to know (content yet? usage?) and to
remember the signatures that pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..catalog import GOOGLE, ModelInfo
from ..core.events import KeepAlive, Usage
from ..core.request import Message, Request, Text
from ..schemas.gemini import field, snake
from ..translate.cloudcode import ResponseParser, TOOL_SCHEMAS, session_id
from ..translate.json_schema import SchemaBudget, clean_response_schema
from ..translate.signatures import SKIP_SIGNATURE, SignatureRegistry
from .lane import NO_RESPONSE_TEXT, EventReader

if TYPE_CHECKING:
    from ..dispatch import Dispatcher, Outcome

# Fields of Google's GenerateContentRequest that have no place inside Cloud Code's: the model is the envelope's.
_NOT_UPSTREAM = ("model",)
# A built-in tool whose calls are web searches: the upstream takes it only in a search call of its own.
SEARCH_TOOLS = ("googleSearch", "googleSearchRetrieval")


def serves(model: ModelInfo) -> bool:
    """The models this lane serves: Google's, which take the client's body as it is."""
    return model.vendor == GOOGLE


def searches(body: dict[str, Any]) -> bool:
    """Whether the request asks for Google Search grounding (and so must be a search call upstream)."""
    tools = field(body, "tools")
    return isinstance(tools, list) and any(
        isinstance(tool, dict) and any(field(tool, name) is not None for name in SEARCH_TOOLS) for tool in tools)


class PassthroughLane:
    """A checked GenerateContentRequest (``schemas/gemini.check_passthrough``) for one Gemini model."""

    def __init__(self, body: dict[str, Any], model: ModelInfo, signatures: SignatureRegistry) -> None:
        self.model = model
        self.signatures = signatures
        self.request = upstream_request(body, model, signatures)
        self.session = conversation_key(body)
        self.searching = searches(body)

    def prepare(self, project: str) -> tuple[dict[str, Any], dict[str, str]]:
        body = {
            "project": project,
            "model": self.model.id,
            "userAgent": "antigravity",
            "requestType": "web_search" if self.searching else "agent",
            "requestId": f"agent-{uuid.uuid4()}",
            "request": {**self.request, "sessionId": self.session},
        }
        return body, {}

    def reader(self) -> ChunkReader:
        return ChunkReader(EventReader(ResponseParser(), self.model, self.signatures))

    def nothing(self) -> list[dict[str, Any]]:
        return [{"candidates": [{"content": {"role": "model", "parts": [{"text": NO_RESPONSE_TEXT}]},
                                 "finishReason": "STOP", "index": 0}], "modelVersion": self.model.id}]


class ChunkReader:
    """Hands each chunk on as it is; the canonical reader beside it says when content began and what it used."""

    def __init__(self, events: EventReader) -> None:
        self._events = events

    @property
    def saw_content(self) -> bool:
        return self._events.saw_content

    @property
    def usage(self) -> Usage:
        return self._events.usage

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self._events.feed(chunk)
        return [chunk]

    def finish(self) -> list[dict[str, Any]]:
        return []


def chunks(
    dispatcher: Dispatcher, body: dict[str, Any], model: ModelInfo, outcome: Outcome, *, name: str
) -> Generator[dict[str, Any] | KeepAlive, None, None]:
    """The upstream's chunks for ``body``, with the dispatcher's attempts; KeepAlive while it waits.

    Raises GatewayError before the first chunk if nothing serves it. A GATEWAY_MODEL_FALLBACK to a model of
    another maker is not taken: this lane cannot serve it.
    """
    lane_for = partial(PassthroughLane, body, signatures=dispatcher.signatures)
    relay = yield from dispatcher.begin(lane_for, model, outcome, name=name, searching=searches(body), serves=serves)
    del body, lane_for  # nothing re-sends the request now: let it go while the answer is relayed
    yield from relay


# -- the request ------------------------------------------------------------------------------------------


def conversation_key(body: dict[str, Any]) -> str:
    """The upstream's sessionId, as the canonical lane derives it: from the first user text, so all turns of a
    conversation share it (the prompt cache and the account affinity go by it)."""
    for content in field(body, "contents") or []:
        if field(content, "role", "user") == "user":
            texts = [field(part, "text") for part in field(content, "parts") or []]
            texts = [text for text in texts if isinstance(text, str)]
            if texts:
                return session_id(Request(model="", messages=[Message("user", [Text("\n".join(texts))])]))
    return uuid.uuid4().hex


def upstream_request(body: dict[str, Any], model: ModelInfo, signatures: SignatureRegistry) -> dict[str, Any]:
    """The client's GenerateContentRequest as Cloud Code takes it; only the pieces that change are copied.

    What changes: the model leaves the body (the envelope names it); tool schemas are cleaned into the subset the
    upstream takes, and gemini-cli's ``parametersJsonSchema`` becomes ``parameters``; a response schema is cleaned
    likewise; an output limit above the model's is capped; a thinking level the model lacks becomes the nearest it
    takes (thinking config goes for a model that does not think); signatures another family made are dropped, and
    a function call without one gets Google's skip sentinel (the upstream wants one on every call).
    """
    request = {key: value for key, value in body.items() if key not in _NOT_UPSTREAM}
    budget = SchemaBudget()
    _set(request, "contents", _contents(field(body, "contents"), signatures))
    tools = field(body, "tools")
    if tools:
        _set(request, "tools", [_tool(tool, budget) for tool in tools])
    config = field(body, "generationConfig")
    if config or model.tier is not None:
        _set(request, "generationConfig", _generation_config(config or {}, model, budget))
    return request


def _set(request: dict[str, Any], key: str, value: Any) -> None:
    """``key`` in its camelCase spelling only (the upstream would refuse both spellings as one field set twice)."""
    request.pop(snake(key), None)
    request[key] = value


def _contents(contents: list[dict[str, Any]], signatures: SignatureRegistry) -> list[dict[str, Any]]:
    return [_content(content, signatures) if field(content, "role") == "model" else content for content in contents]


def _content(content: dict[str, Any], signatures: SignatureRegistry) -> dict[str, Any]:
    """A model turn with every signature Gemini's: another family's is dropped (with the thought part it signed,
    which Gemini would not read anyway), and each call carries one (Gemini signs only the first of parallel calls)."""
    parts: list[dict[str, Any]] = []
    changed = False
    for part in field(content, "parts") or []:
        signature = field(part, "thoughtSignature")
        foreign = bool(signature) and signature != SKIP_SIGNATURE and signatures.family_of(signature) not in (
            None, "gemini")
        if foreign and part.get("thought") is True:
            changed = True
            continue
        if foreign:
            part = {k: v for k, v in part.items() if k not in ("thoughtSignature", "thought_signature")}
            signature, changed = None, True
        if not signature and field(part, "functionCall") is not None:
            part = {**part, "thoughtSignature": SKIP_SIGNATURE}
            changed = True
        parts.append(part)
    if not changed:
        return content
    return {**{k: v for k, v in content.items() if k != "parts"}, "parts": parts or [{"text": "."}]}


def _tool(tool: dict[str, Any], budget: SchemaBudget) -> dict[str, Any]:
    declarations = field(tool, "functionDeclarations")
    if not declarations:
        return tool
    out = {k: v for k, v in tool.items() if k not in ("functionDeclarations", "function_declarations")}
    out["functionDeclarations"] = [_declaration(declaration, budget) for declaration in declarations]
    return out


def _declaration(declaration: dict[str, Any], budget: SchemaBudget) -> dict[str, Any]:
    """Parameters in the upstream's schema subset, under the name it reads (gemini-cli sends JSON Schema)."""
    schema = field(declaration, "parametersJsonSchema")
    schema = field(declaration, "parameters") if schema is None else schema
    out = {k: v for k, v in declaration.items()
           if k not in ("parameters", "parametersJsonSchema", "parameters_json_schema")}
    if schema is not None:
        out["parameters"] = TOOL_SCHEMAS.clean(schema, validated=False, budget=budget)
    return out


def _generation_config(config: dict[str, Any], model: ModelInfo, budget: SchemaBudget) -> dict[str, Any]:
    config = dict(config)
    limit = field(config, "maxOutputTokens")
    if isinstance(limit, int) and limit > model.max_output_tokens:
        _set(config, "maxOutputTokens", model.max_output_tokens)
    schema = field(config, "responseSchema")
    if isinstance(schema, dict):
        _set(config, "responseSchema", clean_response_schema(schema, budget=budget))
    thinking = field(config, "thinkingConfig")
    if not model.thinking:  # the upstream refuses any thinking config for a model that does not think
        config.pop("thinkingConfig", None)
        config.pop("thinking_config", None)
        return config
    thinking = dict(thinking or {})
    level = field(thinking, "thinkingLevel")
    if isinstance(level, str) and model.thinking_levels:
        nearest = model.nearest_level(level.lower())
        if nearest != level.lower():
            _set(thinking, "thinkingLevel", nearest.upper() if level.isupper() else nearest)
    elif level is None and model.tier is not None and field(thinking, "thinkingBudget") is None:
        # The tier named in the model name (gemini-3.8-flash-high) is the tiered model's thinking level.
        thinking["thinkingLevel"] = model.tier
    if thinking:
        _set(config, "thinkingConfig", thinking)
    return config


def count_request(body: dict[str, Any], model: ModelInfo, signatures: SignatureRegistry) -> dict[str, Any]:
    """What countTokens counts for a Gemini model: contents, system instruction and tools, as a generation sends
    them (the upstream refuses the envelope's fields beside ``request`` in this call)."""
    request = upstream_request(body, model, signatures)
    return {key: request[key] for key in ("contents", "systemInstruction", "system_instruction", "tools")
            if key in request}


# -- the answer -------------------------------------------------------------------------------------------


def whole(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A streamed answer as the upstream's unary call gives it: one GenerateContentResponse whose candidates hold
    all parts, consecutive text (and thought) parts merged into one, and the last value of every other field."""
    answer: dict[str, Any] = {}
    candidates: dict[Any, dict[str, Any]] = {}
    for chunk in chunks:
        for key, value in chunk.items():
            if key != "candidates":
                answer[key] = value
        for position, candidate in enumerate(chunk.get("candidates") or []):
            if not isinstance(candidate, dict):
                continue
            into = candidates.setdefault(candidate.get("index", position), {})
            for key, value in candidate.items():
                if key == "content" and isinstance(value, dict):
                    _merge_content(into.setdefault("content", {"role": value.get("role", "model"), "parts": []}),
                                   value)
                else:
                    into[key] = value
    if candidates:
        answer = {"candidates": [candidates[key] for key in candidates], **answer}
    return answer


def _merge_content(into: dict[str, Any], content: dict[str, Any]) -> None:
    parts = into["parts"]
    for part in content.get("parts") or []:
        last = parts[-1] if parts else None
        if isinstance(part, dict) and isinstance(last, dict) and _joins(last, part):
            parts[-1] = {**last, "text": last["text"] + part["text"]}
            if field(part, "thoughtSignature") and not field(last, "thoughtSignature"):
                parts[-1]["thoughtSignature"] = field(part, "thoughtSignature")
        else:
            parts.append(part)


def _joins(last: dict[str, Any], part: dict[str, Any]) -> bool:
    """Two pieces of one text (or one thought): nothing but text (and a signature, on at most one of them)."""
    plain = {"text", "thought", "thoughtSignature", "thought_signature"}
    return (isinstance(last.get("text"), str) and isinstance(part.get("text"), str)
            and set(last) <= plain and set(part) <= plain
            and bool(last.get("thought")) == bool(part.get("thought"))
            and not (field(last, "thoughtSignature") and field(part, "thoughtSignature")))
