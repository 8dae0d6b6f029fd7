"""The canonical, API-neutral request.

Each API family's schema loads its wire format into these dataclasses; the upstream translator reads only
these. Nothing here knows Anthropic or OpenAI field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union


@dataclass
class Text:
    text: str


@dataclass
class Image:
    """An image given inline (``data``, base64) or by ``url`` (fetched by the gateway before translation)."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


@dataclass
class Thinking:
    """Reasoning text from an earlier turn; ``signature`` authenticates it upstream."""

    text: str
    signature: str | None = None


@dataclass
class RedactedThinking:
    data: str


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    # Gemini attaches the turn's thought signature to the call itself.
    signature: str | None = None


@dataclass
class SearchResult:
    """One page a web search found."""

    url: str
    title: str
    page_age: str | None = None


@dataclass
class WebSearchCall:
    """A search the gateway ran in an earlier turn, as the client sends it back: what was searched, what came of it."""

    id: str
    query: str
    results: list[SearchResult] = field(default_factory=list)
    # Why it failed (Anthropic's error codes: unavailable, max_uses_exceeded, ...); None when it did not.
    error: str | None = None


@dataclass
class ToolResult:
    tool_call_id: str
    content: list[Text | Image]
    is_error: bool = False
    # Filled from the matching ToolCall when the client API does not carry it (both do not).
    name: str | None = None


Part = Union[Text, Image, Thinking, RedactedThinking, ToolCall, ToolResult, WebSearchCall]


@dataclass
class Message:
    role: Literal["user", "assistant"]
    parts: list[Part]


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class Location:
    """Where the user roughly is, to make search results local."""

    city: str | None = None
    region: str | None = None
    country: str | None = None
    timezone: str | None = None


@dataclass
class WebSearchOptions:
    """The client lets the gateway search the web for the model (a server tool the gateway runs itself)."""

    # The name the model calls the search by (Anthropic's tool name).
    name: str = "web_search"
    max_uses: int | None = None
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    location: Location | None = None


@dataclass
class ToolChoice:
    mode: Literal["auto", "any", "none", "tool"]
    name: str | None = None
    # OpenAI's allowed_tools: the model may call only these (``auto``) or must call one of them (``any``).
    allowed: tuple[str, ...] = ()


@dataclass
class ThinkingConfig:
    """What the client asked for: a token budget, an effort level, or both (adaptive thinking)."""

    enabled: bool = True
    budget_tokens: int | None = None
    effort: str | None = None


@dataclass
class ResponseFormat:
    """JSON output: ``schema`` None means any JSON object."""

    schema: dict[str, Any] | None = None


@dataclass
class Request:
    model: str
    messages: list[Message]
    system: list[str] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    thinking: ThinkingConfig | None = None
    stream: bool = False
    # A client-given key for the upstream prompt-cache session (else derived from the first user text).
    session_key: str | None = None
    response_format: ResponseFormat | None = None
    # Web search the client allows (gateway/websearch.py runs it).
    web_search: WebSearchOptions | None = None
    # This request is itself a search: answered with Google Search grounding, and so without functions.
    grounded: bool = False
