"""Canonical events and errors in the Anthropic Messages API's wire format (JSON and SSE)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from ..core.events import (
    Citation,
    Event,
    Finish,
    KeepAlive,
    Response,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
    UsageEvent,
    WebSearchEvent,
)
from .. import fastjson
from ..errors import GatewayError

ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "too_large": "request_too_large",
    "rate_limited": "rate_limit_error",
    "overloaded": "overloaded_error",
    "upstream": "api_error",
    "unavailable": "api_error",
    "internal": "api_error",
}
# Anthropic has no content_filter stop reason; the upstream projects all answer end_turn there.
STOP_REASONS = {"content_filter": "end_turn"}


def message_id() -> str:
    return f"msg_{secrets.token_hex(16)}"


def error_body(error: GatewayError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": ERROR_TYPES.get(error.kind, "api_error"), "message": error.message}
    if error.code:
        body["details"] = {"error_code": error.code}
    return {"type": "error", "error": body}


def error_headers(error: GatewayError) -> dict[str, str]:
    if error.retry_after is None:
        return {}
    return {"retry-after": str(max(1, int(error.retry_after + 0.999)))}


def usage_body(usage: Usage) -> dict[str, Any]:
    """Anthropic counts cached input apart from input, and bills thinking as output."""
    body: dict[str, Any] = {
        "input_tokens": max(usage.prompt_tokens - usage.cached_tokens, 0),
        "output_tokens": usage.output_tokens + usage.thinking_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }
    if usage.searches:
        body["server_tool_use"] = {"web_search_requests": usage.searches, "web_fetch_requests": 0}
    return body


def _opaque(text: str) -> str:
    """Anthropic's encrypted fields are opaque to clients, which only send them back; the gateway's are readable."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def citation_body(citation: Citation) -> dict[str, Any]:
    return {
        "type": "web_search_result_location",
        "url": citation.url,
        "title": citation.title,
        "encrypted_index": _opaque(f"{citation.result_index}:{citation.url}"),
        "cited_text": citation.cited_text,
    }


def search_blocks(search: WebSearchEvent) -> tuple[dict[str, Any], dict[str, Any]]:
    """A search the gateway ran as Anthropic shows a server tool's: its ``server_tool_use`` and result blocks."""
    use = {"type": "server_tool_use", "id": search.id, "name": "web_search", "input": {"query": search.query}}
    content: Any
    if search.error is not None:
        content = {"type": "web_search_tool_result_error", "error_code": search.error}
    else:
        content = [
            {"type": "web_search_result", "url": result.url, "title": result.title, "page_age": result.page_age,
             "encrypted_content": _opaque(f"{result.url}\n{result.title}")}
            for result in search.results
        ]
    return use, {"type": "web_search_tool_result", "tool_use_id": search.id, "content": content}


def _block_bodies(block: Any) -> list[dict[str, Any]]:
    if isinstance(block, ThinkingBlock):
        return [{"type": "thinking", "thinking": block.text, "signature": block.signature or ""}]
    if isinstance(block, TextBlock):
        if block.citations:
            return [{"type": "text", "text": block.text, "citations": [citation_body(c) for c in block.citations]}]
        return [{"type": "text", "text": block.text}]
    if isinstance(block, WebSearchEvent):
        return list(search_blocks(block))
    return [{"type": "tool_use", "id": block.id, "name": block.name, "input": block.arguments}]


def message_body(response: Response, model: str, msg_id: str | None = None) -> dict[str, Any]:
    content = [body for block in response.content for body in _block_bodies(block)]
    if not content:
        content = [{"type": "text", "text": ""}]
    return {
        "id": msg_id or message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(response.stop_reason, response.stop_reason),
        "stop_sequence": response.stop_sequence,
        "usage": usage_body(response.usage),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event.encode(), fastjson.dumps(data))


PING = sse("ping", {"type": "ping"})


def error_event(error: GatewayError) -> bytes:
    return sse("error", error_body(error))


class StreamRenderer:
    """Anthropic's SSE sequence from canonical events: one content block open at a time."""

    def __init__(self, model: str, msg_id: str | None = None) -> None:
        self.model = model
        self.id = msg_id or message_id()
        self._started = False
        self._index = -1
        self._open: str | None = None
        self._usage = Usage()

    def feed(self, event: Event) -> list[bytes]:
        out: list[bytes] = []
        if isinstance(event, KeepAlive):
            # The SDKs skip pings, even before message_start; the message has not started yet.
            return [PING]
        if isinstance(event, UsageEvent):
            self._usage = event.usage
            return out
        if not self._started:
            out.append(self._message_start())
        if isinstance(event, ThinkingDelta):
            out += self._ensure("thinking", {"type": "thinking", "thinking": ""})
            out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
        elif isinstance(event, SignatureDelta):
            if self._open == "thinking":
                out.append(self._delta({"type": "signature_delta", "signature": event.signature}))
                out += self._close()
        elif isinstance(event, TextDelta) and event.citations:
            # A cited span is a text block of its own: its citations, then its text.
            out += self._close()
            out += self._start("text", {"type": "text", "text": ""})
            out += [self._delta({"type": "citations_delta", "citation": citation_body(c)}) for c in event.citations]
            out.append(self._delta({"type": "text_delta", "text": event.text}))
            out += self._close()
        elif isinstance(event, TextDelta):
            out += self._ensure("text", {"type": "text", "text": ""})
            out.append(self._delta({"type": "text_delta", "text": event.text}))
        elif isinstance(event, WebSearchEvent):
            use, result = search_blocks(event)
            out += self._close()
            out += self._start("server_tool_use", {**use, "input": {}})
            out.append(self._delta({"type": "input_json_delta", "partial_json": fastjson.dumps_text(use["input"])}))
            out += self._close()
            out += self._start("web_search_tool_result", result)
            out += self._close()
        elif isinstance(event, ToolCallEvent):
            out += self._close()
            out += self._start("tool_use", {"type": "tool_use", "id": event.id, "name": event.name, "input": {}})
            partial = fastjson.dumps_text(event.arguments)
            out.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
            out += self._close()
        elif isinstance(event, Finish):
            out += self._close()
            usage = usage_body(event.usage)
            out.append(
                sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": STOP_REASONS.get(event.reason, event.reason),
                            "stop_sequence": event.stop_sequence,
                        },
                        "usage": usage,
                    },
                )
            )
            out.append(sse("message_stop", {"type": "message_stop"}))
        return out

    def error(self, error: GatewayError) -> bytes:
        return error_event(error)

    def trailer(self) -> list[bytes]:
        return []

    def _message_start(self) -> bytes:
        self._started = True
        usage = usage_body(self._usage)
        usage["output_tokens"] = 0
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return sse("message_start", {"type": "message_start", "message": message}) + PING

    def _ensure(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        if self._open == kind:
            return []
        return self._close() + self._start(kind, block)

    def _start(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        self._index += 1
        self._open = kind
        return [sse("content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        return [sse("content_block_stop", {"type": "content_block_stop", "index": self._index})]
