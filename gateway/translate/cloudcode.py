"""Canonical request -> Cloud Code request body; Cloud Code chunks -> canonical events.

Pure functions over plain data: no sockets, no Flask. docs/upstream.md ("Request envelope" to "Streaming
responses") is the reference for every rule here.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..catalog import ANTHROPIC, GOOGLE, ModelInfo
from ..core.events import (
    Event,
    Finish,
    SignatureDelta,
    StopReason,
    TextDelta,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
    UsageEvent,
)
from ..core.request import (
    Image,
    Message,
    RedactedThinking,
    Request,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    WebSearchCall,
)
from .grounding import findings_text, parse_grounding
from .json_schema import SchemaBudget, clean_response_schema
from .signatures import MIN_SIGNATURE_LENGTH, SKIP_SIGNATURE, SignatureRegistry
from .tool_cache import ToolSchemaCache

INTERLEAVED_HINT = (
    "Interleaved thinking is enabled. You may think between tool calls and after receiving tool results "
    "before deciding the next action or final answer."
)
DEFAULT_THINKING_BUDGET = 16000
MIN_THINKING_BUDGET = 1024
# maxOutputTokens for Claude when the client sets none (OpenAI clients often do not).
DEFAULT_CLAUDE_MAX_TOKENS = 16384
# The reasoning-effort scale shared by both client APIs (docs/clients.md, "Reasoning effort").
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 64000}
EFFORT_LEVELS = {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
                 "xhigh": "high", "max": "high"}
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
#: Cleaned tool schemas, shared by every request of the process (frozen: see tool_cache).
TOOL_SCHEMAS = ToolSchemaCache()


@dataclass
class Translation:
    """The upstream body plus what reading the answer needs (sanitised tool names -> client names)."""

    body: dict[str, Any]
    tool_names: dict[str, str] = field(default_factory=dict)
    thinking: bool = False


def sanitize_tool_name(name: str) -> str:
    clean = _NAME_BAD_CHARS.sub("_", name)
    if not clean or not (clean[0].isalpha() or clean[0] == "_"):
        clean = "_" + clean
    return clean[:64]


def session_id(request: Request) -> str:
    """A stable per-conversation id: the upstream prompt cache is keyed by account + sessionId."""
    seed = request.session_key
    if not seed:
        for message in request.messages:
            if message.role == "user":
                texts = [p.text for p in message.parts if isinstance(p, Text)]
                if texts:
                    seed = "\n".join(texts)
                    break
    if not seed:
        return uuid.uuid4().hex
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]


def thinking_enabled(request: Request, model: ModelInfo) -> bool:
    if not model.thinking or _effort(request) == "none":
        return False
    if model.always_thinks:
        return True
    return request.thinking is not None and request.thinking.enabled


def _effort(request: Request) -> str | None:
    return request.thinking.effort if request.thinking else None


def build_request(
    request: Request, model: ModelInfo, *, project: str, signatures: SignatureRegistry
) -> Translation:
    thinking = thinking_enabled(request, model)
    names = {tool.name: sanitize_tool_name(tool.name) for tool in request.tools}
    contents = _contents(request.messages, model, signatures, names)
    if thinking and model.vendor == ANTHROPIC:
        contents = _close_tool_loop(contents)
    inner: dict[str, Any] = {"contents": contents}
    system = _system(request, model, thinking)
    if system:
        inner["systemInstruction"] = {"role": "user", "parts": [{"text": text} for text in system]}
    budget = SchemaBudget()  # what this request's schemas may expand to, together
    inner["generationConfig"] = _generation_config(request, model, thinking, budget)
    if request.grounded:
        # A search call: Google refuses googleSearch beside function declarations (docs/upstream.md, "Web search").
        inner["tools"] = [{"googleSearch": {}}]
    elif request.tools:
        inner["tools"] = [
            {
                "functionDeclarations": [
                    {
                        "name": names[tool.name],
                        "description": tool.description,
                        "parameters": TOOL_SCHEMAS.clean(tool.parameters, validated=model.vendor == ANTHROPIC,
                                                         budget=budget),
                    }
                    for tool in request.tools
                ]
            }
        ]
        inner["toolConfig"] = {"functionCallingConfig": _function_calling(request, model, names)}
    inner["sessionId"] = session_id(request)
    body = {
        "project": project,
        "model": model.id,
        "userAgent": "antigravity",
        "requestType": "web_search" if request.grounded else "agent",
        "requestId": f"agent-{uuid.uuid4()}",
        "request": inner,
    }
    reverse = {clean: original for original, clean in names.items() if clean != original}
    return Translation(body=body, tool_names=reverse, thinking=thinking)


def count_tokens_body(request: Request, model: ModelInfo, signatures: SignatureRegistry) -> dict[str, Any]:
    """The ``request`` part of a countTokens call: contents, system and tools as a generation would send."""
    translation = build_request(request, model, project="", signatures=signatures)
    inner = dict(translation.body["request"])
    for key in ("generationConfig", "toolConfig", "sessionId"):
        inner.pop(key, None)
    return inner


# -- request pieces ---------------------------------------------------------------------------------


def _system(request: Request, model: ModelInfo, thinking: bool) -> list[str]:
    texts = [text for text in request.system if text.strip()]
    if thinking and model.vendor == ANTHROPIC and request.tools:
        texts.append(INTERLEAVED_HINT)
    return texts


def _generation_config(
    request: Request, model: ModelInfo, thinking: bool, budget: SchemaBudget | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = request.max_tokens
    if max_tokens is None and model.vendor == ANTHROPIC:
        max_tokens = DEFAULT_CLAUDE_MAX_TOKENS
    if max_tokens is not None:
        max_tokens = min(max_tokens, model.max_output_tokens)
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.top_k is not None:
        config["topK"] = request.top_k
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if thinking:
        thinking_config, max_tokens = _thinking_config(request, model, max_tokens)
        config["thinkingConfig"] = thinking_config
    elif _effort(request) == "none" and model.thinking_levels:
        # Gemini 3 cannot stop thinking: ask for the least of it, and no thoughts back.
        config["thinkingConfig"] = {"thinkingLevel": _thinking_level("none", model)}
    elif model.tier is not None:
        # The tier named in the model name (gemini-3.8-flash-high) is the tiered model's thinking level.
        config["thinkingConfig"] = {"thinkingLevel": model.tier}
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    if request.response_format is not None:
        config["responseMimeType"] = "application/json"
        if request.response_format.schema is not None:
            config["responseSchema"] = clean_response_schema(request.response_format.schema, budget=budget)
    return config


def _thinking_config(request: Request, model: ModelInfo, max_tokens: int | None) -> tuple[dict[str, Any], int | None]:
    """Budget or level for the upstream, with maxOutputTokens kept above the budget (Anthropic's rule)."""
    asked = request.thinking
    budget = asked.budget_tokens if asked else None
    effort = asked.effort if asked else None
    if model.vendor != ANTHROPIC:
        config: dict[str, Any] = {"includeThoughts": True}
        if model.tier is not None and not effort:
            config["thinkingLevel"] = model.tier
        elif budget is not None:
            config["thinkingBudget"] = budget if max_tokens is None else min(budget, max(max_tokens - 1, 0))
        elif effort and model.thinking_levels:
            config["thinkingLevel"] = _thinking_level(effort, model)
        elif effort:
            config["thinkingBudget"] = EFFORT_BUDGETS.get(effort, DEFAULT_THINKING_BUDGET)
        return config, max_tokens
    if budget is None:
        budget = EFFORT_BUDGETS.get(effort or "", DEFAULT_THINKING_BUDGET)
    budget = max(budget, MIN_THINKING_BUDGET)
    limit = model.max_output_tokens
    max_tokens = max_tokens or limit
    if max_tokens <= budget:
        max_tokens = min(limit, budget + 8192)
    if max_tokens <= budget:
        budget = max(MIN_THINKING_BUDGET, max_tokens - 1)
    return {"include_thoughts": True, "thinking_budget": budget}, max_tokens


def _thinking_level(effort: str, model: ModelInfo) -> str:
    """The level for an effort, moved to the nearest one the model takes (Gemini 3.8 Flash refuses minimal)."""
    return model.nearest_level(EFFORT_LEVELS.get(effort, "high"))


def _function_calling(request: Request, model: ModelInfo, names: dict[str, str]) -> dict[str, Any]:
    choice = request.tool_choice
    if choice is not None and choice.allowed:
        # Google takes allowedFunctionNames with ANY or VALIDATED (call or answer, within the names), not AUTO.
        return {"mode": "ANY" if choice.mode == "any" else "VALIDATED",
                "allowedFunctionNames": [names.get(name, name) for name in choice.allowed]}
    if choice is None or choice.mode == "auto":
        return {"mode": "VALIDATED" if model.vendor == ANTHROPIC else "AUTO"}
    if choice.mode == "none":
        return {"mode": "NONE"}
    if choice.mode == "tool" and choice.name:
        return {"mode": "ANY", "allowedFunctionNames": [names.get(choice.name, choice.name)]}
    return {"mode": "ANY"}


def _contents(
    messages: list[Message], model: ModelInfo, signatures: SignatureRegistry, names: dict[str, str]
) -> list[dict[str, Any]]:
    call_names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in messages:
        role = "model" if message.role == "assistant" else "user"
        if role == "model":
            parts = _model_parts(message, model, signatures, names, call_names)
        else:
            parts = _user_parts(message, names, call_names)
        if not parts:
            parts = [{"text": "."}]
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
            if role == "user":
                contents[-1]["parts"].sort(key=lambda p: "functionResponse" not in p)
        else:
            contents.append({"role": role, "parts": parts})
    if contents and contents[0]["role"] == "model":
        contents.insert(0, {"role": "user", "parts": [{"text": "."}]})
    return contents


def _model_parts(
    message: Message,
    model: ModelInfo,
    signatures: SignatureRegistry,
    names: dict[str, str],
    call_names: dict[str, str],
) -> list[dict[str, Any]]:
    """Thinking first, then text, then calls (the order both upstream families expect)."""
    thoughts: list[dict[str, Any]] = []
    texts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    turn_signature: str | None = None
    for part in message.parts:
        if isinstance(part, Thinking):
            signature = part.signature or ""
            if len(signature) < MIN_SIGNATURE_LENGTH:
                continue
            issuer = signatures.family_of(signature)
            if model.vendor == ANTHROPIC and issuer != "gemini":
                thoughts.append({"text": part.text, "thought": True, "thoughtSignature": signature})
            elif model.vendor == GOOGLE and issuer == "gemini":
                turn_signature = turn_signature or signature
        elif isinstance(part, RedactedThinking):
            continue
        elif isinstance(part, Text):
            if part.text.strip():
                texts.append({"text": part.text})
        elif isinstance(part, Image):
            texts.append(_image_part(part))
        elif isinstance(part, WebSearchCall):
            # A search the gateway ran: told as text, so no function needs declaring for it in later turns.
            texts.append({"text": findings_text(part.query, part.results, error=part.error)})
        elif isinstance(part, ToolCall):
            call_names[part.id] = part.name
            call: dict[str, Any] = {
                "functionCall": {"id": part.id, "name": names.get(part.name, sanitize_tool_name(part.name)), "args": part.arguments}
            }
            if model.vendor == GOOGLE:
                call["thoughtSignature"] = _gemini_call_signature(part, signatures, turn_signature if not calls else None)
            calls.append(call)
    return thoughts + texts + calls


def _gemini_call_signature(call: ToolCall, signatures: SignatureRegistry, turn_signature: str | None) -> str:
    """The call's own Gemini signature, else the one remembered for its id, else the turn's, else skip."""
    if call.signature and signatures.family_of(call.signature) != "claude":
        return call.signature
    remembered = signatures.tool_call_signature(call.id)
    if remembered and remembered[1] == "gemini":
        return remembered[0]
    return turn_signature or SKIP_SIGNATURE


def _user_parts(message: Message, names: dict[str, str], call_names: dict[str, str]) -> list[dict[str, Any]]:
    responses: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ToolResult):
            responses.extend(_function_response(part, names, call_names))
        elif isinstance(part, Text):
            if part.text.strip():
                others.append({"text": part.text})
        elif isinstance(part, Image):
            others.append(_image_part(part))
    return responses + others


def _function_response(result: ToolResult, names: dict[str, str], call_names: dict[str, str]) -> list[dict[str, Any]]:
    name = result.name or call_names.get(result.tool_call_id) or "unknown"
    texts = [p.text for p in result.content if isinstance(p, Text)]
    images = [p for p in result.content if isinstance(p, Image)]
    output = "\n".join(texts)
    if not output and images:
        output = "Image attached"
    payload = {"error": output} if result.is_error else {"result": output}
    parts: list[dict[str, Any]] = [
        {
            "functionResponse": {
                "id": result.tool_call_id,
                "name": names.get(name, sanitize_tool_name(name)),
                "response": payload,
            }
        }
    ]
    parts.extend(_image_part(image) for image in images)
    return parts


def _image_part(image: Image) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    return {"fileData": {"mimeType": image.media_type or "image/jpeg", "fileUri": image.url}}


def _close_tool_loop(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A thinking Claude model must see signed thinking at the start of an open tool loop.

    When the history lost it (the user switched models mid-session, or the client dropped thinking),
    close the loop with synthetic turns so the model starts a fresh, valid turn (ACP's recovery).
    """
    if len(contents) < 2:
        return contents
    last, previous = contents[-1], contents[-2]
    if last["role"] != "user" or previous["role"] != "model":
        return contents
    results = [p for p in last["parts"] if "functionResponse" in p]
    if not results:
        return contents
    first = previous["parts"][0] if previous["parts"] else {}
    if first.get("thought") and first.get("thoughtSignature"):
        return contents
    count = len(results)
    note = "[Tool execution completed.]" if count == 1 else f"[{count} tool executions completed.]"
    return contents + [
        {"role": "model", "parts": [{"text": note}]},
        {"role": "user", "parts": [{"text": "[Continue]"}]},
    ]


# -- response ---------------------------------------------------------------------------------------

_FINISH_REASONS: dict[str, StopReason] = {
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


BLOCKED_TEXT = "The upstream's safety filters blocked this prompt"


class ResponseParser:
    """Turns upstream GenerateContentResponse chunks into canonical events, chunk by chunk."""

    def __init__(self, tool_names: dict[str, str] | None = None) -> None:
        self._tool_names = tool_names or {}
        self.saw_tool_call = False
        self.saw_content = False
        self.finish_reason: str | None = None
        self.blocked: str | None = None
        self.usage = Usage()

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        candidates = chunk.get("candidates") or []
        if not candidates:
            self._check_blocked(chunk.get("promptFeedback"))
        candidate = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        content = candidate.get("content") or {}
        for part in content.get("parts") or []:
            if isinstance(part, dict):
                events.extend(self._part(part))
        grounding = candidate.get("groundingMetadata")
        if isinstance(grounding, dict):
            found = parse_grounding(grounding)
            self.saw_content = self.saw_content or bool(found.sources)
            events.append(found)
        if candidate.get("finishReason"):
            self.finish_reason = str(candidate["finishReason"])
        metadata = chunk.get("usageMetadata")
        if isinstance(metadata, dict):
            self.usage = _usage(metadata)
            events.append(UsageEvent(self.usage))
        return events

    def finish(self) -> Finish:
        if self.blocked is not None:
            return Finish(reason="refusal", usage=self.usage, refusal=f"{BLOCKED_TEXT} ({self.blocked})")
        if self.saw_tool_call:
            reason: StopReason = "tool_use"
        else:
            reason = _FINISH_REASONS.get(self.finish_reason or "", "end_turn")
        return Finish(reason=reason, usage=self.usage)

    def _check_blocked(self, feedback: Any) -> None:
        """A prompt Google refused: no candidates, a ``blockReason``. A final answer, not an empty one to retry."""
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self.blocked = str(feedback["blockReason"])
            self.saw_content = True

    def _part(self, part: dict[str, Any]) -> list[Event]:
        signature = part.get("thoughtSignature") or part.get("thought_signature")
        events: list[Event] = []
        if part.get("thought"):
            text = part.get("text") or ""
            if text:
                events.append(ThinkingDelta(text))
            if signature:
                events.append(SignatureDelta(signature))
            self.saw_content = self.saw_content or bool(text or signature)
            return events
        if signature and signature != SKIP_SIGNATURE:
            events.append(SignatureDelta(signature))
        call = part.get("functionCall")
        if isinstance(call, dict):
            name = str(call.get("name") or "")
            args = call.get("args")
            if isinstance(args, str):
                args = _parse_args(args)
            events.append(
                ToolCallEvent(
                    id=str(call.get("id") or f"toolu_{secrets.token_hex(12)}"),
                    name=self._tool_names.get(name, name),
                    arguments=args if isinstance(args, dict) else {},
                    signature=signature if signature and signature != SKIP_SIGNATURE else None,
                )
            )
            self.saw_tool_call = True
            self.saw_content = True
            return events
        text = part.get("text")
        if isinstance(text, str) and text:
            events.append(TextDelta(text))
            self.saw_content = True
        return events


def _parse_args(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"params": raw}
    return value if isinstance(value, dict) else {"params": value}


def _usage(metadata: dict[str, Any]) -> Usage:
    def number(key: str) -> int:
        value = metadata.get(key)
        return int(value) if isinstance(value, (int, float)) else 0

    return Usage(
        prompt_tokens=number("promptTokenCount"),
        output_tokens=number("candidatesTokenCount"),
        thinking_tokens=number("thoughtsTokenCount"),
        cached_tokens=number("cachedContentTokenCount"),
    )
