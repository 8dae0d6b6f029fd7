"""Anthropic Messages API requests: validation and loading into the canonical Request.

Top-level fields are validated by marshmallow; content blocks and tools stay plain dicts and are checked
while they are converted, so new block types or extra keys that clients add (``cache_control``,
``defer_loading``, ``citations``) pass through instead of breaking requests. What Claude Code really sends
is the yardstick (docs/clients.md, "Claude Code"): system-role messages mid-conversation, adaptive thinking, betas.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from ..core.request import (
    Image,
    Location,
    Message,
    Part,
    RedactedThinking,
    Request,
    SearchResult,
    Text,
    Thinking,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    WebSearchCall,
    WebSearchOptions,
)
from .common import AnyOf, Invalid, ItemList, StrictBoolean, StrictFloat, StrictInteger, expect

log = logging.getLogger(__name__)

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
# web_search_20250305 and its later versions: the server tool the gateway runs (gateway/websearch.py).
WEB_SEARCH_TOOL = re.compile(r"web_search_\d{8}")
EFFORTS = {"minimal", "low", "medium", "high", "xhigh", "max"}


def _text_of(value: Any, path: str) -> str:
    return expect(value, str, path, "a string")


# -- content blocks ---------------------------------------------------------------------------------


def _image(block: dict[str, Any], path: str) -> Image:
    source = expect(block.get("source"), dict, f"{path}.source", "an object")
    kind = source.get("type")
    if kind == "base64":
        media_type = _text_of(source.get("media_type"), f"{path}.source.media_type")
        if block.get("type") == "image" and media_type not in IMAGE_TYPES:
            raise Invalid(f"{path}.source.media_type", f"must be one of {', '.join(sorted(IMAGE_TYPES))}")
        data = _text_of(source.get("data"), f"{path}.source.data")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{path}.source.data", "is not valid base64") from None
        return Image(media_type=media_type, data=data)
    if kind == "url":
        return Image(media_type=source.get("media_type"), url=_text_of(source.get("url"), f"{path}.source.url"))
    raise Invalid(f"{path}.source.type", "must be 'base64' or 'url'")


def _document(block: dict[str, Any], path: str) -> Part:
    source = expect(block.get("source"), dict, f"{path}.source", "an object")
    if source.get("type") == "text":
        return Text(_text_of(source.get("data"), f"{path}.source.data"))
    return _image(block, path)


def _tool_result_content(value: Any, path: str) -> list[Text | Image]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)]
    items = expect(value, list, path, "a string or a list of content blocks")
    parts: list[Text | Image] = []
    for index, block in enumerate(items):
        item_path = f"{path}.{index}"
        block = expect(block, dict, item_path, "an object")
        kind = block.get("type")
        if kind == "text":
            parts.append(Text(_text_of(block.get("text"), f"{item_path}.text")))
        elif kind == "image" or kind == "document":
            part = _document(block, item_path)
            parts.append(part)  # type: ignore[arg-type]
        # search_result and other rich blocks carry no text we can forward faithfully; skipped.
    return parts


def _tool_use(block: dict[str, Any], path: str) -> ToolCall:
    arguments = block.get("input", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            raise Invalid(f"{path}.input", "must be an object (or a JSON string of one)") from None
    if arguments is None:
        arguments = {}
    return ToolCall(
        id=_text_of(block.get("id"), f"{path}.id"),
        name=_text_of(block.get("name"), f"{path}.name"),
        arguments=expect(arguments, dict, f"{path}.input", "an object"),
    )


def _block(block: Any, role: str, path: str) -> Part | None:
    block = expect(block, dict, path, "an object")
    kind = block.get("type")
    if kind == "text":
        return Text(_text_of(block.get("text"), f"{path}.text"))
    if kind == "image":
        return _image(block, path)
    if kind == "document":
        return _document(block, path)
    if kind == "tool_use":
        if role != "assistant":
            raise Invalid(f"{path}.type", "tool_use blocks belong in assistant messages")
        return _tool_use(block, path)
    if kind == "tool_result":
        if role != "user":
            raise Invalid(f"{path}.type", "tool_result blocks belong in user messages")
        is_error = block.get("is_error", False)
        return ToolResult(
            tool_call_id=_text_of(block.get("tool_use_id"), f"{path}.tool_use_id"),
            content=_tool_result_content(block.get("content"), f"{path}.content"),
            is_error=bool(expect(is_error, bool, f"{path}.is_error", "a boolean")) if is_error is not None else False,
        )
    if kind == "thinking":
        signature = block.get("signature")
        return Thinking(
            text=_text_of(block.get("thinking", ""), f"{path}.thinking"),
            signature=_text_of(signature, f"{path}.signature") if signature is not None else None,
        )
    if kind == "redacted_thinking":
        return RedactedThinking(data=_text_of(block.get("data", ""), f"{path}.data"))
    if kind == "server_tool_use" and block.get("name") == "web_search":
        arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
        query = arguments.get("query")
        return WebSearchCall(id=_text_of(block.get("id"), f"{path}.id"), query=query if isinstance(query, str) else "")
    if not isinstance(kind, str):
        raise Invalid(f"{path}.type", "is required and must be a string")
    log.debug("ignoring content block of type %s", kind)
    return None


def _search_results(block: dict[str, Any], parts: list[Part], path: str) -> None:
    """A ``web_search_tool_result`` block: the findings of the search its ``server_tool_use`` began."""
    call_id = _text_of(block.get("tool_use_id"), f"{path}.tool_use_id")
    call = next((p for p in parts if isinstance(p, WebSearchCall) and p.id == call_id), None)
    if call is None:
        call = WebSearchCall(id=call_id, query="")
        parts.append(call)
    content = block.get("content")
    if isinstance(content, dict):
        call.error = str(content.get("error_code") or "unavailable")
        return
    for item in content if isinstance(content, list) else []:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            title, age = item.get("title"), item.get("page_age")
            call.results.append(SearchResult(item["url"], title if isinstance(title, str) else "",
                                             age if isinstance(age, str) else None))


def _content(value: Any, role: str, path: str) -> list[Part]:
    if isinstance(value, str):
        return [Text(value)]
    blocks = expect(value, list, path, "a string or a list of content blocks")
    parts: list[Part] = []
    cited = False
    for index, block in enumerate(blocks):
        if isinstance(block, dict) and block.get("type") == "web_search_tool_result" and role == "assistant":
            _search_results(block, parts, f"{path}.{index}")
            continue
        part = _block(block, role, f"{path}.{index}")
        # An answer cut into text blocks only to carry citations is one text again (its spaces are blocks too).
        joins = isinstance(part, Text) and bool(parts) and isinstance(parts[-1], Text)
        if joins and (cited or block.get("citations")):
            parts[-1] = Text(parts[-1].text + part.text)  # type: ignore[union-attr]
        elif part is not None:
            parts.append(part)
        cited = isinstance(part, Text) and (bool(block.get("citations")) or (joins and cited))
    return parts


def _system_texts(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    texts = []
    for index, block in enumerate(expect(value, list, path, "a string or a list of text blocks")):
        block = expect(block, dict, f"{path}.{index}", "an object")
        if block.get("type", "text") != "text":
            raise Invalid(f"{path}.{index}.type", "system blocks must be text blocks")
        texts.append(_text_of(block.get("text"), f"{path}.{index}.text"))
    return texts


def _messages(value: list[Any]) -> tuple[list[Message], list[str]]:
    """Messages and the texts of system-role messages found among them (hoisted, in order)."""
    messages: list[Message] = []
    hoisted: list[str] = []
    for index, raw in enumerate(value):
        path = f"messages.{index}"
        raw = expect(raw, dict, path, "an object")
        role = raw.get("role")
        if "content" not in raw:
            raise Invalid(f"{path}.content", "is required")
        if not isinstance(role, str):
            raise Invalid(f"{path}.role", "must be 'user' or 'assistant'")
        if role == "system":
            content = raw["content"]
            hoisted.extend(_system_texts(content, f"{path}.content"))
            continue
        if role not in {"user", "assistant"}:
            raise Invalid(f"{path}.role", "must be 'user' or 'assistant'")
        messages.append(Message(role=role, parts=_content(raw["content"], role, f"{path}.content")))
    if not messages:
        raise Invalid("messages", "must contain at least one user or assistant message")
    return messages, hoisted


def _tools(value: list[Any] | None) -> tuple[list[Tool], WebSearchOptions | None]:
    """The client's functions, and the web search it allows (a server tool: the gateway runs it)."""
    tools: list[Tool] = []
    search: WebSearchOptions | None = None
    for index, raw in enumerate(value or []):
        path = f"tools.{index}"
        raw = expect(raw, dict, path, "an object")
        kind = raw.get("type")
        if isinstance(kind, str) and WEB_SEARCH_TOOL.fullmatch(kind):
            search = _web_search(raw, path)
            continue
        if kind is not None and kind != "custom" and "input_schema" not in raw:
            log.debug("ignoring server tool %s", kind)
            continue
        schema = raw.get("input_schema", {"type": "object", "properties": {}})
        description = raw.get("description", "")
        tools.append(
            Tool(
                name=_text_of(raw.get("name"), f"{path}.name"),
                description=_text_of(description, f"{path}.description") if description is not None else "",
                parameters=expect(schema, dict, f"{path}.input_schema", "an object"),
            )
        )
    return tools, search


def _domains(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = expect(value, list, path, "a list of domains")
    return tuple(_text_of(item, f"{path}.{index}") for index, item in enumerate(items))


def _web_search(raw: dict[str, Any], path: str) -> WebSearchOptions:
    name = raw.get("name", "web_search")
    max_uses = raw.get("max_uses")
    if max_uses is not None and (isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1):
        raise Invalid(f"{path}.max_uses", "must be a positive integer")
    allowed = _domains(raw.get("allowed_domains"), f"{path}.allowed_domains")
    blocked = _domains(raw.get("blocked_domains"), f"{path}.blocked_domains")
    if allowed and blocked:
        raise Invalid(f"{path}.allowed_domains", "cannot be used together with blocked_domains")
    location = None
    if raw.get("user_location") is not None:
        where = expect(raw["user_location"], dict, f"{path}.user_location", "an object")
        location = Location(**{key: _text_of(where[key], f"{path}.user_location.{key}")
                               for key in ("city", "region", "country", "timezone") if where.get(key) is not None})
    return WebSearchOptions(name=_text_of(name, f"{path}.name"), max_uses=max_uses, allowed_domains=allowed,
                            blocked_domains=blocked, location=location)


def _tool_choice(value: dict[str, Any] | None, tools: list[Tool], search: WebSearchOptions | None) -> ToolChoice | None:
    if value is None:
        return None
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in {"auto", "any", "tool", "none"}:
        raise Invalid("tool_choice.type", "must be one of auto, any, tool, none")
    name = None
    if kind == "tool":
        name = _text_of(value.get("name"), "tool_choice.name")
        if name not in {tool.name for tool in tools} | ({search.name} if search else set()):
            raise Invalid("tool_choice.name", f"names a tool that is not in tools: {name}")
    return ToolChoice(mode=kind, name=name)


def _thinking(value: dict[str, Any] | None, output_config: dict[str, Any] | None) -> ThinkingConfig | None:
    effort = (output_config or {}).get("effort")
    if effort is not None and (not isinstance(effort, str) or effort not in EFFORTS):
        raise Invalid("output_config.effort", f"must be one of {', '.join(sorted(EFFORTS))}")
    if value is None:
        return ThinkingConfig(enabled=True, effort=effort) if effort else None
    kind = value.get("type")
    if kind == "disabled":
        return ThinkingConfig(enabled=False)
    if kind == "adaptive":
        return ThinkingConfig(enabled=True, effort=effort or "high")
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
            raise Invalid("thinking.budget_tokens", "must be a non-negative integer")
        return ThinkingConfig(enabled=True, budget_tokens=budget, effort=effort)
    raise Invalid("thinking.type", "must be one of enabled, disabled, adaptive")


# -- schemas ----------------------------------------------------------------------------------------


class CountTokensSchema(Schema):
    """The count_tokens body: a messages request without the generation knobs."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = ItemList(required=True)
    system = AnyOf(str, list, type_names="a string or a list of text blocks", allow_none=True)
    tools = ItemList(objects=True, allow_none=True)
    tool_choice = fields.Dict(allow_none=True)
    thinking = fields.Dict(allow_none=True)
    output_config = fields.Dict(allow_none=True)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> Request:
        messages, hoisted = _messages(data["messages"])
        tools, search = _tools(data.get("tools"))
        return Request(
            model=data["model"],
            messages=messages,
            system=_system_texts(data.get("system"), "system") + hoisted,
            tools=tools,
            tool_choice=_tool_choice(data.get("tool_choice"), tools, search),
            thinking=_thinking(data.get("thinking"), data.get("output_config")),
            web_search=search,
        )


class MessagesSchema(CountTokensSchema):
    max_tokens = StrictInteger(required=True, validate=validate.Range(min=1))
    temperature = StrictFloat(validate=validate.Range(min=0, max=2), allow_none=True)
    top_p = StrictFloat(validate=validate.Range(min=0, max=1), allow_none=True)
    top_k = StrictInteger(validate=validate.Range(min=0), allow_none=True)
    stop_sequences = fields.List(fields.String(), allow_none=True)
    stream = StrictBoolean(load_default=False, allow_none=True)
    metadata = fields.Dict(allow_none=True)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> Request:
        request = super().to_request(data, **kwargs)
        request.max_tokens = data["max_tokens"]
        request.temperature = data.get("temperature")
        request.top_p = data.get("top_p")
        request.top_k = data.get("top_k") or None
        request.stop = list(data.get("stop_sequences") or [])
        request.stream = bool(data.get("stream"))
        return request


MESSAGES_SCHEMA = MessagesSchema()
COUNT_TOKENS_SCHEMA = CountTokensSchema()
