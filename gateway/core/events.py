"""Canonical response events and the whole-response accumulator.

The upstream translator turns Cloud Code chunks into this small vocabulary; each API family renders it as
SSE or folds it (``collect``) into one response. Usage keeps Google's semantics (prompt tokens include
cached ones; thinking tokens separate) and each renderer derives its own numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Union

# "refusal": the upstream refused the prompt itself (promptFeedback.blockReason) and answered nothing.
StopReason = Literal["end_turn", "max_tokens", "tool_use", "content_filter", "stop_sequence", "refusal"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class ThinkingDelta:
    text: str


@dataclass
class SignatureDelta:
    """A signature for the reasoning streamed so far (closes the thinking block in Anthropic terms)."""

    signature: str


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallEvent:
    id: str
    name: str
    arguments: dict[str, Any]
    signature: str | None = None


@dataclass
class UsageEvent:
    usage: Usage


@dataclass
class Finish:
    reason: StopReason
    usage: Usage
    stop_sequence: str | None = None
    # Why a refusal happened, in words for the client (OpenAI's ``refusal`` field).
    refusal: str | None = None


@dataclass
class KeepAlive:
    """Nothing to say yet (the gateway waits for a rate-limited account): keeps a streaming client's
    connection alive. Carries no content, so it never stops a request from being retried."""


Event = Union[ThinkingDelta, SignatureDelta, TextDelta, ToolCallEvent, UsageEvent, Finish, KeepAlive]
CONTENT_EVENTS = (ThinkingDelta, TextDelta, ToolCallEvent)


@dataclass
class ThinkingBlock:
    text: str = ""
    signature: str | None = None


@dataclass
class TextBlock:
    text: str = ""


Block = Union[ThinkingBlock, TextBlock, ToolCallEvent]


@dataclass
class Response:
    """A whole answer, for non-streaming clients."""

    model: str
    content: list[Block] = field(default_factory=list)
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)
    refusal: str | None = None


def collect(model: str, events: Iterable[Event]) -> Response:
    """Fold an event stream into a Response, merging consecutive deltas into blocks."""
    response = Response(model=model)
    content = response.content
    for event in events:
        if isinstance(event, ThinkingDelta):
            if not content or not isinstance(content[-1], ThinkingBlock) or content[-1].signature:
                content.append(ThinkingBlock())
            content[-1].text += event.text
        elif isinstance(event, SignatureDelta):
            if content and isinstance(content[-1], ThinkingBlock):
                content[-1].signature = event.signature
        elif isinstance(event, TextDelta):
            if not content or not isinstance(content[-1], TextBlock):
                content.append(TextBlock())
            content[-1].text += event.text
        elif isinstance(event, ToolCallEvent):
            content.append(event)
        elif isinstance(event, UsageEvent):
            response.usage = event.usage
        elif isinstance(event, Finish):
            response.stop_reason = event.reason
            response.stop_sequence = event.stop_sequence
            response.usage = event.usage
            response.refusal = event.refusal
    return response
