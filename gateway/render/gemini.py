"""Answers and errors in Google's Gemini API wire format (docs/clients.md, "Gemini API").

A streamed answer is framed one of two ways: with ``alt=sse`` as ``data: <json>`` events (no ``event:`` lines, no
comments, no ``[DONE]``: the python SDK reads any other line as part of a JSON error), otherwise as one JSON array
written element by element. Both take a bare newline as a keep-alive, and both end a failed stream with Google's
error object, which both SDKs raise.

Gemini models answer through the passthrough lane, whose chunks are Google's already and only need framing; other
models answer in canonical events, which ``StreamRenderer`` and ``response_body`` turn into Gemini chunks.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from ..catalog import ModelInfo
from ..core.events import (
    Event,
    Finish,
    KeepAlive,
    Response,
    SignatureDelta,
    StopReason,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
    UsageEvent,
)
from ..errors import GatewayError

# google.rpc.Code names by HTTP status, as Google's APIs pair them.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
# Google's clients know no 529: an overloaded upstream is a 503, which they retry.
STATUSES = {529: 503}
FINISH_REASONS: dict[StopReason, str] = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "tool_use": "STOP",
    "max_tokens": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "refusal": "OTHER",
}
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
# What a stream sends while the upstream is silent: whitespace, which both framings and both SDKs skip.
PING = b"\n"


# -- errors -----------------------------------------------------------------------------------------


def error_status(error: GatewayError) -> int:
    return STATUSES.get(error.status, error.status)


def error_body(error: GatewayError) -> dict[str, Any]:
    """Google's ``google.rpc.Status`` envelope; a known wait goes in a RetryInfo detail, which gemini-cli reads."""
    status = error_status(error)
    body: dict[str, Any] = {"code": status, "message": error.message,
                            "status": STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")}
    if error.retry_after is not None:
        body["details"] = [{"@type": RETRY_INFO, "retryDelay": f"{max(error.retry_after, 0.0):.3f}s"}]
    return {"error": body}


def error_headers(error: GatewayError) -> dict[str, str]:
    if error.retry_after is None:
        return {}
    return {"retry-after": str(max(1, int(max(error.retry_after, 0.0) + 0.999)))}


# -- framing ------------------------------------------------------------------------------------------


class Framing:
    """How a streamed answer's chunks go on the wire: SSE events, or the elements of one JSON array."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._opened = False

    @property
    def mimetype(self) -> str:
        return "text/event-stream" if self.sse else "application/json"

    def chunk(self, chunk: dict[str, Any]) -> bytes:
        text = _json(chunk)
        if self.sse:
            return b"data: " + text + b"\n\n"
        lead = b",\r\n" if self._opened else b"["
        self._opened = True
        return lead + text

    def error(self, error: GatewayError) -> bytes:
        """The error object on its own: both SDKs raise it (a ``data:`` event would look like an empty chunk to
        the js SDK); in the array form, its last element."""
        text = _json(error_body(error))
        if self.sse:
            return b"\n" + text + b"\n"
        lead = b",\r\n" if self._opened else b"["
        self._opened = True
        return lead + text + b"]"

    def trailer(self) -> list[bytes]:
        if self.sse:
            return []
        return [b"]" if self._opened else b"[]"]


def passthrough_feed(framing: Framing) -> Callable[[dict[str, Any] | KeepAlive], list[bytes]]:
    """The passthrough lane's items on the wire: its chunks as they are, a keep-alive as a newline."""

    def feed(item: dict[str, Any] | KeepAlive) -> list[bytes]:
        if isinstance(item, KeepAlive):
            return [PING]
        return [framing.chunk(item)]

    return feed


# -- canonical answers ----------------------------------------------------------------------------------


def usage_metadata(usage: Usage) -> dict[str, int]:
    """Google's counts: prompt tokens include cached ones, thoughts are apart from candidates."""
    metadata = {"promptTokenCount": usage.prompt_tokens, "candidatesTokenCount": usage.output_tokens,
                "totalTokenCount": usage.prompt_tokens + usage.output_tokens + usage.thinking_tokens}
    if usage.thinking_tokens:
        metadata["thoughtsTokenCount"] = usage.thinking_tokens
    if usage.cached_tokens:
        metadata["cachedContentTokenCount"] = usage.cached_tokens
    return metadata


def call_part(call: ToolCallEvent) -> dict[str, Any]:
    part: dict[str, Any] = {"functionCall": {"id": call.id, "name": call.name, "args": call.arguments}}
    if call.signature:
        part["thoughtSignature"] = call.signature
    return part


def thought_part(text: str, signature: str | None) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text, "thought": True}
    if signature:
        part["thoughtSignature"] = signature
    return part


def response_id() -> str:
    return secrets.token_urlsafe(16)


def response_body(response: Response, model: str, *, include_thoughts: bool) -> dict[str, Any]:
    """A whole canonical answer as one GenerateContentResponse (``generateContent``)."""
    parts: list[dict[str, Any]] = []
    for block in response.content:
        if isinstance(block, ThinkingBlock):
            if include_thoughts and (block.text or block.signature):
                parts.append(thought_part(block.text, block.signature))
        elif isinstance(block, TextBlock):
            if block.text:
                parts.append({"text": block.text})
        elif isinstance(block, ToolCallEvent):
            parts.append(call_part(block))
    body: dict[str, Any] = {}
    if response.stop_reason == "refusal":
        body["promptFeedback"] = {"blockReason": "OTHER"}
    else:
        body["candidates"] = [{"content": {"role": "model", "parts": parts},
                               "finishReason": FINISH_REASONS[response.stop_reason], "index": 0}]
    body.update(usageMetadata=usage_metadata(response.usage), modelVersion=model, responseId=response_id())
    return body


class StreamRenderer:
    """Gemini chunks from canonical events, one candidate.

    One chunk is held back until the next arrives, so the last content of the answer carries its
    ``finishReason`` and usage, as Google's streams do (gemini-cli needs a finish reason on some chunk, and a
    chunk of nothing but a finish reason reads as ``None`` text in the python SDK).
    """

    def __init__(self, framing: Framing, model: str, *, include_thoughts: bool) -> None:
        self.framing = framing
        self.include_thoughts = include_thoughts
        self._common = {"modelVersion": model, "responseId": response_id()}
        self._held: dict[str, Any] | None = None

    def feed(self, event: Event) -> list[bytes]:
        if isinstance(event, KeepAlive):
            return [PING]
        if isinstance(event, ThinkingDelta):
            return self._part(thought_part(event.text, None)) if self.include_thoughts and event.text else []
        if isinstance(event, SignatureDelta):
            # The signature closes the thinking streamed so far; a client that keeps the parts sends them back.
            return self._part(thought_part("", event.signature)) if self.include_thoughts else []
        if isinstance(event, TextDelta):
            return self._part({"text": event.text}) if event.text else []
        if isinstance(event, ToolCallEvent):
            return self._part(call_part(event))
        if isinstance(event, UsageEvent):
            return []
        if isinstance(event, Finish):
            return self._finish(event)
        return []

    def _part(self, part: dict[str, Any]) -> list[bytes]:
        out = self._release()
        self._held = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}], **self._common}
        return out

    def _release(self) -> list[bytes]:
        held, self._held = self._held, None
        return [self.framing.chunk(held)] if held is not None else []

    def _finish(self, finish: Finish) -> list[bytes]:
        chunk = self._held or {"candidates": [{"content": {"role": "model", "parts": []}, "index": 0}],
                               **self._common}
        self._held = None
        if finish.reason == "refusal":
            chunk = {"promptFeedback": {"blockReason": "OTHER"}, **self._common}
        else:
            chunk["candidates"][0]["finishReason"] = FINISH_REASONS[finish.reason]
        chunk["usageMetadata"] = usage_metadata(finish.usage)
        return [self.framing.chunk(chunk)]

    def error(self, error: GatewayError) -> bytes:
        """What is held goes out before the error: it reached the gateway, so the client gets it."""
        return b"".join(self._release()) + self.framing.error(error)

    def trailer(self) -> list[bytes]:
        return self._release() + self.framing.trailer()


# -- models ---------------------------------------------------------------------------------------------

GENERATION_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]


def model_body(model: ModelInfo) -> dict[str, Any]:
    """A ``models.get`` entry: the upstream's id under Google's ``models/`` name, its real limits."""
    body: dict[str, Any] = {
        "name": f"models/{model.id}",
        "baseModelId": model.id,
        "version": "001",
        "displayName": model.display_name,
        "description": f"{model.display_name}, made by {model.owned_by}, served through Cloud Code",
        "outputTokenLimit": model.max_output_tokens,
        "supportedGenerationMethods": GENERATION_METHODS,
        "thinking": model.thinking,
    }
    if model.context_window:
        body["inputTokenLimit"] = model.context_window
    return body


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
