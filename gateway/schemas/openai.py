"""OpenAI Chat Completions requests: validation and loading into the canonical Request.

Top-level fields are validated by marshmallow; messages, content parts and tools stay plain dicts and are
checked while they are converted, so fields clients add (``name``, ``cache_control``, ``refusal``,
``reasoning_content``) pass through instead of breaking requests. Error paths use OpenAI's spelling
(``messages[0].content``) because the ``param`` of an error is how OpenAI clients point at the problem.
docs/clients.md, "OpenAI requests", is the reference for every rule here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from ..core.request import (
    Image,
    Location,
    Message,
    Part,
    Request,
    ResponseFormat,
    Text,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    WebSearchOptions,
)
from .common import AnyOf, Invalid, ItemList, StrictBoolean, StrictFloat, StrictInteger, expect

log = logging.getLogger(__name__)

EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^,;]*)*),(?P<data>.*)", re.DOTALL)
# LiteLLM carries a Gemini signature inside the tool-call id: ``call_x__thought__<signature>``.
_THOUGHT_MARK = "__thought__"
INTERRUPTED = "Tool execution was interrupted: no result was returned."
EMPTY_PARAMETERS = {"type": "object", "properties": {}}


@dataclass
class ChatRequest:
    """The canonical request plus what only the OpenAI renderer needs."""

    request: Request
    include_usage: bool = False


def _string(value: Any, path: str) -> str:
    return expect(value, str, path, "a string")


# -- content parts ----------------------------------------------------------------------------------


def data_url(url: str, path: str) -> Image:
    """``data:<mime>;base64,<data>`` -> an inline image (or other media, as documents are)."""
    match = _DATA_URL.fullmatch(url)
    if match is None or ";base64" not in match["params"]:
        raise Invalid(path, "must be an http(s) URL or a base64 data URL (data:<mime>;base64,<data>)")
    data = match["data"]
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(path, "holds data that is not valid base64") from None
    return Image(media_type=match["mime"] or "image/png", data=data)


def _image_url(part: dict[str, Any], path: str) -> Image:
    value, path = part.get("image_url"), f"{path}.image_url"
    if isinstance(value, dict):  # the spec's shape; a bare URL string is a common client shortcut
        value, path = value.get("url"), f"{path}.url"
    url = _string(value, path)
    if url.startswith("data:"):
        return data_url(url, path)
    if url.startswith(("http://", "https://")):
        return Image(url=url)  # fetched by the dispatcher (gateway/media.py)
    raise Invalid(path, "must be an http(s) URL or a base64 data URL")


def _input_audio(part: dict[str, Any], path: str) -> Image:
    audio = expect(part.get("input_audio"), dict, f"{path}.input_audio", "an object")
    kind = audio.get("format")
    if not isinstance(kind, str) or kind not in AUDIO_TYPES:
        raise Invalid(f"{path}.input_audio.format", "must be 'wav' or 'mp3'")
    data = _string(audio.get("data"), f"{path}.input_audio.data")
    return data_url(f"data:{AUDIO_TYPES[kind]};base64,{data}", f"{path}.input_audio.data")


def _file(part: dict[str, Any], path: str) -> Image:
    file = expect(part.get("file"), dict, f"{path}.file", "an object")
    if file.get("file_data") is None:
        raise Invalid(f"{path}.file", "needs file_data: this gateway has no Files API for file_id")
    data = _string(file["file_data"], f"{path}.file.file_data")
    if not data.startswith("data:"):
        filename = file.get("filename") if isinstance(file.get("filename"), str) else ""
        data = f"data:{mimetypes.guess_type(filename)[0] or 'application/pdf'};base64,{data}"
    return data_url(data, f"{path}.file.file_data")


def _part(part: Any, path: str) -> Part | None:
    part = expect(part, dict, path, "an object")
    kind = part.get("type")
    if kind == "text":
        return Text(_string(part.get("text"), f"{path}.text"))
    if kind == "image_url":
        return _image_url(part, path)
    if kind == "input_audio":
        return _input_audio(part, path)
    if kind == "file":
        return _file(part, path)
    if not isinstance(kind, str):
        raise Invalid(f"{path}.type", "is required and must be a string")
    log.debug("ignoring content part of type %s", kind)  # refusal parts, and types from the future
    return None


def _content(value: Any, path: str) -> list[Part]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)]
    parts = []
    for index, raw in enumerate(expect(value, list, path, "a string or an array of content parts")):
        part = _part(raw, f"{path}[{index}]")
        if part is not None:
            parts.append(part)
    return parts


def _texts(value: Any, path: str) -> list[str]:
    return [part.text for part in _content(value, path) if isinstance(part, Text)]


# -- tool calls -------------------------------------------------------------------------------------


def _call_id(value: Any, path: str) -> tuple[str, str | None]:
    """A tool-call id, and the Gemini signature a LiteLLM-style client folded into it."""
    call_id = _string(value, path)
    if not call_id:
        raise Invalid(path, "must not be empty")
    base, mark, signature = call_id.partition(_THOUGHT_MARK)
    return (base, signature) if mark and base else (call_id, None)


def parse_arguments(value: Any, path: str) -> dict[str, Any]:
    """The JSON-string arguments; text that does not parse is kept as ``params`` rather than lost."""
    if isinstance(value, dict):
        return value
    raw = _string(value if value is not None else "", path)
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except ValueError:
        log.info("tool call arguments at %s are not JSON; sent as params", path)
        return {"params": raw}
    return parsed if isinstance(parsed, dict) else {"params": parsed}


def _tool_call(raw: Any, path: str) -> ToolCall:
    raw = expect(raw, dict, path, "an object")
    function = expect(raw.get("function"), dict, f"{path}.function", "an object")
    call_id, signature = _call_id(raw.get("id"), f"{path}.id")
    extra = raw.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    if isinstance(google, dict) and isinstance(google.get("thought_signature"), str):
        signature = google["thought_signature"]
    return ToolCall(
        id=call_id,
        name=_string(function.get("name"), f"{path}.function.name"),
        arguments=parse_arguments(function.get("arguments"), f"{path}.function.arguments"),
        signature=signature,
    )


def _function_call(raw: Any, path: str, index: int) -> ToolCall:
    """The legacy single ``function_call``; its id is derived from the message position, stable per turn."""
    raw = expect(raw, dict, path, "an object")
    return ToolCall(
        id=f"call_legacy_{index}",
        name=_string(raw.get("name"), f"{path}.name"),
        arguments=parse_arguments(raw.get("arguments"), f"{path}.arguments"),
    )


# -- messages ---------------------------------------------------------------------------------------


class _History:
    """Builds canonical messages, remembering call names so tool results can name their function."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.system: list[str] = []
        self.call_names: dict[str, str] = {}
        self.legacy_calls: dict[str, list[str]] = {}

    def assistant(self, raw: dict[str, Any], path: str, index: int) -> None:
        parts = _content(raw.get("content"), f"{path}.content")
        tool_calls = raw.get("tool_calls")
        for k, call in enumerate(expect(tool_calls, list, f"{path}.tool_calls", "an array") if tool_calls else []):
            parts.append(_tool_call(call, f"{path}.tool_calls[{k}]"))
        if raw.get("function_call") is not None:
            call = _function_call(raw["function_call"], f"{path}.function_call", index)
            self.legacy_calls.setdefault(call.name, []).append(call.id)
            parts.append(call)
        for part in parts:
            if isinstance(part, ToolCall):
                self.call_names[part.id] = part.name
        self.messages.append(Message(role="assistant", parts=parts))

    def tool_result(self, call_id: str, name: str | None, content: Any, path: str) -> None:
        result = ToolResult(tool_call_id=call_id, content=_content(content, path), name=name)
        previous = self.messages[-1] if self.messages else None
        if previous and previous.role == "user" and all(isinstance(p, ToolResult) for p in previous.parts):
            previous.parts.append(result)
        else:
            self.messages.append(Message(role="user", parts=[result]))

    def add(self, raw: Any, index: int) -> None:
        path = f"messages[{index}]"
        raw = expect(raw, dict, path, "an object")
        role = raw.get("role")
        if role == "assistant":
            self.assistant(raw, path, index)
            return
        if not isinstance(role, str) or role not in {"system", "developer", "user", "tool", "function"}:
            raise Invalid(f"{path}.role", "must be one of system, developer, user, assistant, tool, function")
        if "content" not in raw:
            raise Invalid(f"{path}.content", "is required")
        content, content_path = raw["content"], f"{path}.content"
        if role in {"system", "developer"}:
            self.system.extend(_texts(content, content_path))
        elif role == "user":
            self.messages.append(Message(role="user", parts=_content(content, content_path)))
        elif role == "tool":
            call_id, _ = _call_id(raw.get("tool_call_id"), f"{path}.tool_call_id")
            self.tool_result(call_id, self.call_names.get(call_id), content, content_path)
        else:  # the legacy function role answers the oldest open function_call of that name
            name = _string(raw.get("name"), f"{path}.name")
            pending = self.legacy_calls.get(name)
            self.tool_result(pending.pop(0) if pending else f"call_legacy_{index}", name, content, content_path)


def answer_every_call(messages: list[Message]) -> list[Message]:
    """Follow every call turn with exactly its results, in call order (both upstream families insist)."""
    answered: list[Message] = []
    calls: list[ToolCall] = []
    for message in messages:
        if calls and message.role == "user":
            answered.append(_results_for(calls, message))
            calls = []
            continue
        if calls:
            answered.append(_results_for(calls, Message(role="user", parts=[])))
        answered.append(message)
        calls = [p for p in message.parts if isinstance(p, ToolCall)] if message.role == "assistant" else []
    return answered


def _results_for(calls: list[ToolCall], message: Message) -> Message:
    """The results for ``calls`` found in ``message`` (a stated one for each interrupted call), then the rest."""
    results = {p.tool_call_id: p for p in message.parts if isinstance(p, ToolResult)}
    rest = [p for p in message.parts if not isinstance(p, ToolResult)]
    ordered: list[Part] = [
        results.get(call.id) or ToolResult(call.id, [Text(INTERRUPTED)], is_error=True, name=call.name)
        for call in calls
    ]
    return Message(role="user", parts=ordered + rest)


def _messages(value: list[Any]) -> tuple[list[Message], list[str]]:
    history = _History()
    for index, raw in enumerate(value):
        history.add(raw, index)
    messages = history.messages
    if not messages:
        if not history.system:
            raise Invalid("messages", "must contain at least one message")
        # A lone system prompt is still a question (CPA sends it as the user turn).
        return [Message(role="user", parts=[Text(text) for text in history.system])], []
    return answer_every_call(messages), history.system


# -- tools and options ------------------------------------------------------------------------------


def _function_tool(function: Any, path: str) -> Tool:
    function = expect(function, dict, path, "an object")
    description = function.get("description")
    parameters = function.get("parameters")
    return Tool(
        name=_string(function.get("name"), f"{path}.name"),
        description=_string(description, f"{path}.description") if description is not None else "",
        parameters=expect(parameters, dict, f"{path}.parameters", "an object") if parameters is not None
        else dict(EMPTY_PARAMETERS),
    )


def _tools(tools: list[Any] | None, functions: list[Any] | None) -> list[Tool]:
    found: list[Tool] = []
    for index, raw in enumerate(tools or []):
        path = f"tools[{index}]"
        raw = expect(raw, dict, path, "an object")
        if raw.get("type", "function") != "function":
            raise Invalid(f"{path}.type", "must be 'function': custom tools cannot be honoured upstream")
        found.append(_function_tool(raw.get("function"), f"{path}.function"))
    for index, raw in enumerate(functions or []):
        found.append(_function_tool(raw, f"functions[{index}]"))
    unique: dict[str, Tool] = {}
    for tool in found:
        unique.setdefault(tool.name, tool)  # the upstream rejects duplicate declarations
    return list(unique.values())


def _named_choice(name: Any, path: str, tools: list[Tool]) -> ToolChoice:
    name = _string(name, path)
    if name not in {tool.name for tool in tools}:
        raise Invalid(path, f"names a function that is not in tools: {name}")
    return ToolChoice(mode="tool", name=name)


def _tool_choice(value: Any, path: str, tools: list[Tool]) -> ToolChoice | None:
    """``tool_choice`` (or legacy ``function_call``): none, auto, required, or one named function."""
    if value is None:
        return None
    modes = {"none": "none", "auto": "auto", "required": "any"}
    if isinstance(value, str):
        if value not in modes:
            raise Invalid(path, "must be 'none', 'auto', 'required' or an object naming a function")
        return ToolChoice(mode=modes[value])  # type: ignore[arg-type]
    if "name" in value:  # legacy function_call: {"name": ...}
        return _named_choice(value["name"], f"{path}.name", tools)
    kind = value.get("type")
    if kind == "function":
        function = expect(value.get("function"), dict, f"{path}.function", "an object")
        return _named_choice(function.get("name"), f"{path}.function.name", tools)
    if kind == "allowed_tools":
        return _allowed_tools(expect(value.get("allowed_tools"), dict, f"{path}.allowed_tools", "an object"),
                              f"{path}.allowed_tools", tools)
    raise Invalid(f"{path}.type", "must be 'function' or 'allowed_tools'")


def _allowed_tools(value: dict[str, Any], path: str, tools: list[Tool]) -> ToolChoice:
    """``{"mode": "auto" | "required", "tools": [{"type": "function", "function": {"name": ...}}, ...]}``.

    Items naming the function directly (``{"type": "function", "name": ...}``, the Responses API's form) are
    taken too. Every name must be one of ``tools``, as for a named choice.
    """
    mode = value.get("mode")
    if mode not in ("auto", "required"):
        raise Invalid(f"{path}.mode", "must be 'auto' or 'required'")
    items = expect(value.get("tools"), list, f"{path}.tools", "a list")
    names: list[str] = []
    for index, item in enumerate(items):
        where = f"{path}.tools[{index}]"
        item = expect(item, dict, where, "an object")
        function = item.get("function")
        if isinstance(function, dict):
            names.append(_named_choice(function.get("name"), f"{where}.function.name", tools).name or "")
        else:
            names.append(_named_choice(item.get("name"), f"{where}.name", tools).name or "")
    if not names:
        raise Invalid(f"{path}.tools", "must name at least one function")
    return ToolChoice(mode="any" if mode == "required" else "auto", allowed=tuple(dict.fromkeys(names)))


def _response_format(value: dict[str, Any] | None) -> ResponseFormat | None:
    if value is None:
        return None
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat()
    if kind == "json_schema":
        spec = expect(value.get("json_schema"), dict, "response_format.json_schema", "an object")
        if spec.get("schema") is None:
            return ResponseFormat()
        return ResponseFormat(expect(spec["schema"], dict, "response_format.json_schema.schema", "an object"))
    raise Invalid("response_format.type", "must be one of text, json_object, json_schema")


def _web_search(value: dict[str, Any] | None) -> WebSearchOptions | None:
    """``web_search_options``: the gateway searches before the model answers (gateway/websearch.py)."""
    if value is None:
        return None
    size = value.get("search_context_size")
    if size is not None and size not in ("low", "medium", "high"):
        raise Invalid("web_search_options.search_context_size", "must be one of low, medium, high")
    location = None
    if value.get("user_location") is not None:
        where = expect(value["user_location"], dict, "web_search_options.user_location", "an object")
        if where.get("type", "approximate") != "approximate":
            raise Invalid("web_search_options.user_location.type", "must be 'approximate'")
        path = "web_search_options.user_location.approximate"
        approximate = expect(where.get("approximate") or {}, dict, path, "an object")
        location = Location(**{key: _string(approximate[key], f"{path}.{key}")
                               for key in ("city", "region", "country", "timezone")
                               if approximate.get(key) is not None})
    return WebSearchOptions(location=location)


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [_string(item, f"stop[{index}]") for index, item in enumerate(value)]


# -- schema -----------------------------------------------------------------------------------------


class ChatCompletionSchema(Schema):
    """The chat.completions body; fields not listed (seed, logprobs, metadata, ...) are accepted and dropped."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = ItemList(required=True)
    tools = ItemList(allow_none=True)
    tool_choice = AnyOf(str, dict, type_names="a string or an object", allow_none=True)
    functions = ItemList(objects=True, allow_none=True)
    function_call = AnyOf(str, dict, type_names="a string or an object", allow_none=True)
    parallel_tool_calls = StrictBoolean(allow_none=True)
    max_tokens = StrictInteger(validate=validate.Range(min=1), allow_none=True)
    max_completion_tokens = StrictInteger(validate=validate.Range(min=1), allow_none=True)
    temperature = StrictFloat(validate=validate.Range(min=0, max=2), allow_none=True)
    top_p = StrictFloat(validate=validate.Range(min=0, max=1), allow_none=True)
    top_k = StrictInteger(validate=validate.Range(min=0), allow_none=True)
    stop = AnyOf(str, list, type_names="a string or an array of strings", allow_none=True)
    n = StrictInteger(allow_none=True)
    seed = StrictInteger(allow_none=True)
    user = fields.String(allow_none=True)
    prompt_cache_key = fields.String(allow_none=True)
    safety_identifier = fields.String(allow_none=True)
    response_format = fields.Dict(allow_none=True)
    reasoning_effort = fields.String(validate=validate.OneOf(EFFORTS), allow_none=True)
    modalities = fields.List(fields.String(), allow_none=True)
    stream = StrictBoolean(load_default=False, allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    web_search_options = fields.Dict(allow_none=True)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> ChatRequest:
        if data.get("n") not in (None, 1):
            raise Invalid("n", "only n=1 is supported: the gateway returns one choice per request")
        if "audio" in (data.get("modalities") or []):
            raise Invalid("modalities", "audio output is not supported")
        messages, system = _messages(data["messages"])
        tools = _tools(data.get("tools"), data.get("functions"))
        choice = data.get("tool_choice")
        effort = data.get("reasoning_effort")
        request = Request(
            model=data["model"],
            messages=messages,
            system=system,
            tools=tools,
            tool_choice=_tool_choice(choice, "tool_choice", tools) if choice is not None
            else _tool_choice(data.get("function_call"), "function_call", tools),
            max_tokens=data.get("max_completion_tokens") or data.get("max_tokens"),
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            top_k=data.get("top_k") or None,
            stop=_stop(data.get("stop")),
            thinking=ThinkingConfig(enabled=effort != "none", effort=effort) if effort else None,
            stream=bool(data.get("stream")),
            session_key=data.get("prompt_cache_key") or data.get("user") or data.get("safety_identifier"),
            response_format=_response_format(data.get("response_format")),
            web_search=_web_search(data.get("web_search_options")),
        )
        options = data.get("stream_options") or {}
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise Invalid("stream_options.include_usage", "must be a boolean")
        return ChatRequest(request=request, include_usage=include_usage)


CHAT_COMPLETION_SCHEMA = ChatCompletionSchema()
