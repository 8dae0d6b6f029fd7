"""Canonical events and errors in the OpenAI Chat Completions wire format (JSON and SSE).

docs/clients.md ("OpenAI responses", "OpenAI streams", "OpenAI errors") is the reference.
The stream rules that matter most to real clients:
``role`` only in the first chunk and a tool call's ``id``/``name`` only in its first fragment (the SDK's
stream helper concatenates repeated strings), one delta field per chunk, usage exactly once, and always
an end: ``[DONE]`` after success, an ``error`` chunk after a failure.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from ..core.events import (
    Citation,
    Event,
    Finish,
    KeepAlive,
    Response,
    StopReason,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
)
from ..errors import GatewayError

FINISH_REASONS: dict[StopReason, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "refusal": "content_filter",
}
# kind -> (type, code); statuses are the gateway's own except 529, which OpenAI clients do not know.
ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", None),
    "permission": ("permission_error", None),
    "not_found": ("invalid_request_error", "model_not_found"),
    "too_large": ("invalid_request_error", None),
    "rate_limited": ("rate_limit_error", "rate_limit_exceeded"),
    "overloaded": ("server_error", "server_is_overloaded"),
    "unavailable": ("server_error", None),
    "upstream": ("server_error", None),
    "internal": ("server_error", None),
}
STATUSES = {529: 503}
DONE = b"data: [DONE]\n\n"
# An SSE comment: every client ignores it, and it keeps proxies from timing out a long thinking phase.
PING = b": ping\n\n"


def completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


# -- errors -----------------------------------------------------------------------------------------


def error_body(error: GatewayError) -> dict[str, Any]:
    kind, code = ERRORS.get(error.kind, ("server_error", None))
    return {"error": {"message": error.message, "type": kind, "param": error.param, "code": error.code or code}}


def error_status(error: GatewayError) -> int:
    return STATUSES.get(error.status, error.status)


def error_headers(error: GatewayError) -> dict[str, str]:
    """``retry-after`` in seconds, and the SDK's preferred ``retry-after-ms``, when a wait is known."""
    if error.retry_after is None:
        return {}
    seconds = max(error.retry_after, 0.0)
    return {"retry-after": str(max(1, int(seconds + 0.999))), "retry-after-ms": str(int(seconds * 1000))}


def error_event(error: GatewayError) -> bytes:
    return _data(error_body(error))


# -- whole responses --------------------------------------------------------------------------------


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI counts reasoning inside completion tokens and cached tokens inside prompt tokens."""
    completion = usage.output_tokens + usage.thinking_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": usage.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.thinking_tokens},
    }


def tool_call_body(call: ToolCallEvent) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": _arguments(call)},
    }
    if call.signature:  # Google's own OpenAI endpoint carries Gemini signatures here
        body["extra_content"] = {"google": {"thought_signature": call.signature}}
    return body


def annotation_body(citation: Citation, start: int, end: int) -> dict[str, Any]:
    """A cited span of the message content: ``start``/``end`` index its characters."""
    return {"type": "url_citation",
            "url_citation": {"url": citation.url, "title": citation.title, "start_index": start, "end_index": end}}


def _annotations(blocks: list[TextBlock]) -> list[dict[str, Any]]:
    annotations, offset = [], 0
    for block in blocks:
        annotations += [annotation_body(c, offset, offset + len(block.text)) for c in block.citations]
        offset += len(block.text)
    return annotations


def completion_body(response: Response, model: str, created: int | None = None) -> dict[str, Any]:
    texts = [block for block in response.content if isinstance(block, TextBlock)]
    text = "".join(block.text for block in texts)
    reasoning = "".join(block.text for block in response.content if isinstance(block, ThinkingBlock))
    calls = [tool_call_body(block) for block in response.content if isinstance(block, ToolCallEvent)]
    message: dict[str, Any] = {
        "role": "assistant",
        # null for a tool-calls-only turn; "" when there is nothing at all (docs/clients.md, "OpenAI responses").
        "content": text or (None if calls or response.refusal else ""),
        "refusal": response.refusal,
        "annotations": _annotations(texts),
    }
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_REASONS[response.stop_reason]}
        ],
        "usage": usage_body(response.usage),
    }


# -- streams ----------------------------------------------------------------------------------------


class StreamRenderer:
    """``chat.completion.chunk`` events from canonical events, one choice (docs/clients.md, "OpenAI streams")."""

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.include_usage = include_usage
        self._envelope = {
            "id": completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self._started = False
        self._calls = 0
        # Characters of content sent so far, and the citations of what was sent: annotations go out at the end.
        self._offset = 0
        self._annotations: list[dict[str, Any]] = []

    def feed(self, event: Event) -> list[bytes]:
        if isinstance(event, KeepAlive):  # waiting for an account: nothing has started yet
            return [PING]
        out: list[bytes] = []
        if isinstance(event, (ThinkingDelta, TextDelta, ToolCallEvent, Finish)) and not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(event, ThinkingDelta) and event.text:
            out.append(self._chunk({"reasoning_content": event.text}))
        elif isinstance(event, TextDelta) and event.text:
            end = self._offset + len(event.text)
            self._annotations += [annotation_body(c, self._offset, end) for c in event.citations]
            self._offset = end
            out.append(self._chunk({"content": event.text}))
        elif isinstance(event, ToolCallEvent):
            out += self._tool_call(event)
        elif isinstance(event, Finish):
            if event.refusal:
                out.append(self._chunk({"refusal": event.refusal}))
            if self._annotations:  # all in one delta: the SDK's stream helper cannot merge unindexed lists
                out.append(self._chunk({"annotations": self._annotations}))
            out.append(self._chunk({}, finish_reason=FINISH_REASONS[event.reason]))
            if self.include_usage:
                out.append(_data({**self._envelope, "choices": [], "usage": usage_body(event.usage)}))
        return out

    def error(self, error: GatewayError) -> bytes:
        return error_event(error)

    def trailer(self) -> list[bytes]:
        return [DONE]

    def _tool_call(self, call: ToolCallEvent) -> list[bytes]:
        """Name and id first with empty arguments, then the arguments: the shape every client parses."""
        index = self._calls
        self._calls += 1
        head = tool_call_body(call)
        head["function"]["arguments"] = ""
        return [
            self._chunk({"tool_calls": [{"index": index, **head}]}),
            self._chunk({"tool_calls": [{"index": index, "function": {"arguments": _arguments(call)}}]}),
        ]

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            **self._envelope,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return _data(chunk)


def _arguments(call: ToolCallEvent) -> str:
    return json.dumps(call.arguments, separators=(",", ":"), ensure_ascii=False)


def _data(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()
