"""Canonical response events and the whole-response accumulator.

The upstream translator turns Cloud Code chunks into this small vocabulary; each API family renders it as
SSE or folds it (``collect``) into one response. Usage keeps Google's semantics (prompt tokens include
cached ones; thinking tokens separate) and each renderer derives its own numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Union

from .request import SearchResult

# "refusal": the upstream refused the prompt itself (promptFeedback.blockReason) and answered nothing.
StopReason = Literal["end_turn", "max_tokens", "tool_use", "content_filter", "stop_sequence", "refusal"]


@dataclass
class Usage:
    prompt_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    cached_tokens: int = 0
    # Web searches the gateway ran for the answer (each one more upstream call, counted in the tokens above).
    searches: int = 0

    def __add__(self, other: Usage) -> Usage:
        """Two upstream calls' usage as one answer's (a tool loop the gateway ran for the client)."""
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Usage)})


@dataclass
class ThinkingDelta:
    text: str


@dataclass
class SignatureDelta:
    """A signature for the reasoning streamed so far (closes the thinking block in Anthropic terms)."""

    signature: str


@dataclass
class Citation:
    """A search result backing a span of the answer text."""

    url: str
    title: str
    # The span it backs (Anthropic's ``cited_text``); the index of the result in its search's results.
    cited_text: str
    result_index: int = 0


@dataclass
class TextDelta:
    text: str
    # The results this text rests on: a cited span arrives whole in one delta.
    citations: tuple[Citation, ...] = ()


@dataclass
class ToolCallEvent:
    id: str
    name: str
    arguments: dict[str, Any]
    signature: str | None = None


@dataclass
class WebSearchEvent:
    """A web search the gateway ran (a server tool): what it searched and found, or why it failed."""

    id: str
    query: str
    results: list[SearchResult]
    # Anthropic's error codes (unavailable, max_uses_exceeded, too_many_requests, invalid_tool_input); None on success.
    error: str | None = None


@dataclass
class Support:
    """A span of a grounded answer and the sources behind it, as the upstream reports it (UTF-8 byte offsets)."""

    start: int
    end: int
    text: str
    sources: tuple[int, ...]


@dataclass
class Grounding:
    """What a search call's answer rests on: the queries searched, the pages found, which text each backs.

    Only the search runner (gateway/websearch.py) reads it; renderers never see it.
    """

    queries: list[str]
    sources: list[SearchResult]
    supports: list[Support]


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


Event = Union[ThinkingDelta, SignatureDelta, TextDelta, ToolCallEvent, WebSearchEvent, Grounding, UsageEvent, Finish,
              KeepAlive]
CONTENT_EVENTS = (ThinkingDelta, TextDelta, ToolCallEvent)


@dataclass
class ThinkingBlock:
    text: str = ""
    signature: str | None = None


@dataclass
class TextBlock:
    text: str = ""
    citations: tuple[Citation, ...] = ()


Block = Union[ThinkingBlock, TextBlock, ToolCallEvent, WebSearchEvent]


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
            # A cited span is a block of its own, as Anthropic's answers have it.
            if event.citations or not content or not isinstance(content[-1], TextBlock) or content[-1].citations:
                content.append(TextBlock(citations=event.citations))
            content[-1].text += event.text
        elif isinstance(event, (ToolCallEvent, WebSearchEvent)):
            content.append(event)
        elif isinstance(event, UsageEvent):
            response.usage = event.usage
        elif isinstance(event, Finish):
            response.stop_reason = event.reason
            response.stop_sequence = event.stop_sequence
            response.usage = event.usage
            response.refusal = event.refusal
    return response
