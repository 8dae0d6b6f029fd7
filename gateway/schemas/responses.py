"""OpenAI Responses API requests: validation, and input items loaded into canonical messages.

Top-level fields are validated by marshmallow; input items, content parts and tools stay plain dicts checked
while they are converted, so fields clients add pass through. Items are first normalized (``normalize``: a
string input becomes a user message, string contents become parts) because that form is also what the gateway
stores and lists as a response's input items. ``conversation`` then loads items into canonical messages; what
the gateway sealed into reasoning and compaction items is opened by callables the caller passes, so this
module stays free of keys and state. docs/clients.md ("Responses API") describes the mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from marshmallow import EXCLUDE, Schema, fields, post_load, validate

from ..core.request import (
    Image,
    Location,
    Message,
    Part,
    Request,
    ResponseFormat,
    Text,
    Thinking,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    WebSearchOptions,
)
from .common import AnyOf, Invalid, ItemList, StrictBoolean, StrictFloat, StrictInteger, expect
from .openai import EFFORTS, EMPTY_PARAMETERS, answer_every_call, data_url, parse_arguments

log = logging.getLogger(__name__)

SUMMARIES = ("auto", "concise", "detailed")
ENCRYPTED_REASONING = "reasoning.encrypted_content"
# The name a ``local_shell`` tool is declared under upstream, and what its calls carry.
LOCAL_SHELL = "local_shell"
LOCAL_SHELL_PARAMETERS = {
    "type": "object",
    "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "description": "The command and its arguments"},
        "workdir": {"type": "string", "description": "The working directory"},
        "timeout_ms": {"type": "integer", "description": "How long the command may run, in milliseconds"},
    },
    "required": ["command"],
}
LOCAL_SHELL_DESCRIPTION = "Runs a command on the user's machine and returns its output."
# A custom (freeform) tool is declared upstream as a function of one string, its free-text input.
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's input, as free text (not JSON)"}},
    "required": ["input"],
}
# The web search tool's kinds: the gateway runs the searches (gateway/websearch.py).
WEB_SEARCH_TOOLS = ("web_search", "web_search_preview")
# How a compacted conversation (``/responses/compact``) reaches the model on later turns.
COMPACTION_PREFIX = "Summary of the conversation so far:"
# Message roles whose text becomes system instructions.
SYSTEM_ROLES = ("system", "developer")
ASSISTANT_ITEMS = ("function_call", "custom_tool_call", "local_shell_call", "reasoning")
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")


@dataclass
class ToolSpec:
    """How calls of one declared tool come back to the client: as which item, under which names."""

    kind: Literal["function", "custom", "local_shell"]
    name: str
    namespace: str | None = None


@dataclass
class Replayed:
    """What a sealed reasoning item gives back: Claude's signed thinking, or a Gemini call's signature."""

    thinking: list[Thinking] = field(default_factory=list)
    call_signature: str | None = None


@dataclass
class ResponsesRequest:
    """A loaded request: the canonical request (its messages filled by the caller from ``items``), the
    normalized input items, and what the response object echoes or the renderer needs."""

    request: Request
    items: list[dict[str, Any]]
    # The validated top-level fields, as sent.
    body: dict[str, Any]
    tools: dict[str, ToolSpec]
    instructions: str | None = None
    include: tuple[str, ...] = ()
    summary: bool = False
    parallel_tool_calls: bool = True

    @property
    def store(self) -> bool:
        return self.body.get("store") is not False

    @property
    def previous_response_id(self) -> str | None:
        return self.body.get("previous_response_id")

    @property
    def include_encrypted(self) -> bool:
        return ENCRYPTED_REASONING in self.include


def _string(value: Any, path: str) -> str:
    return expect(value, str, path, "a string")


# -- normalizing input items ---------------------------------------------------------------------------


def normalize(value: Any) -> list[dict[str, Any]]:
    """Input items in one form: each a dict with a ``type``, message contents as lists of parts."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    items = []
    for index, raw in enumerate(expect(value, list, "input", "a string or an array of input items")):
        path = f"input[{index}]"
        item = dict(expect(raw, dict, path, "an object"))
        kind = item.get("type", "message" if "role" in item else None)
        if not isinstance(kind, str):
            raise Invalid(f"{path}.type", "is required and must be a string")
        item["type"] = kind
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", *SYSTEM_ROLES):
                raise Invalid(f"{path}.role", "must be one of user, assistant, system, developer")
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if role == "assistant" else "input_text"
                item["content"] = [{"type": part, "text": content}]
            else:
                expect(content, list, f"{path}.content", "a string or an array of content parts")
        items.append(item)
    return items


# -- content ------------------------------------------------------------------------------------------


def _image(part: dict[str, Any], path: str) -> Image:
    if part.get("image_url") is None:
        raise Invalid(f"{path}.image_url", "is required: this gateway has no Files API for file_id")
    url = _string(part["image_url"], f"{path}.image_url")
    if url.startswith("data:"):
        return data_url(url, f"{path}.image_url")
    if url.startswith(("http://", "https://")):
        return Image(url=url)  # fetched by the dispatcher (gateway/media.py)
    raise Invalid(f"{path}.image_url", "must be an http(s) URL or a base64 data URL")


def _file(part: dict[str, Any], path: str) -> Image:
    if part.get("file_data") is not None:
        data = _string(part["file_data"], f"{path}.file_data")
        if not data.startswith("data:"):
            data = f"data:application/pdf;base64,{data}"
        return data_url(data, f"{path}.file_data")
    if part.get("file_url") is not None:
        return Image(url=_string(part["file_url"], f"{path}.file_url"))
    raise Invalid(f"{path}.file_data", "is required: this gateway has no Files API for file_id")


def _content(value: Any, path: str) -> list[Text | Image]:
    """Message parts, or a tool output (a string or parts)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(value)]
    parts: list[Text | Image] = []
    for index, raw in enumerate(expect(value, list, path, "a string or an array of content parts")):
        where = f"{path}[{index}]"
        part = expect(raw, dict, where, "an object")
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(Text(_string(part.get("text"), f"{where}.text")))
        elif kind == "input_image":
            parts.append(_image(part, where))
        elif kind == "input_file":
            parts.append(_file(part, where))
        elif not isinstance(kind, str):
            raise Invalid(f"{where}.type", "is required and must be a string")
        else:
            log.debug("ignoring content part of type %s", kind)  # refusals, and types from the future
    return parts


def _texts(value: Any, path: str) -> list[str]:
    return [part.text for part in _content(value, path) if isinstance(part, Text)]


# -- conversation -------------------------------------------------------------------------------------


def tool_name(name: str, namespace: str | None) -> str:
    """The one name a namespaced tool is declared under upstream."""
    if not namespace:
        return name
    return f"{namespace}{name}" if namespace.endswith(("_", ".", ":", "-")) else f"{namespace}__{name}"


class _Conversation:
    def __init__(self, open_reasoning: Callable[[Any], Replayed | None],
                 open_compaction: Callable[[Any], str | None]) -> None:
        self.open_reasoning = open_reasoning
        self.open_compaction = open_compaction
        self.messages: list[Message] = []
        self.system: list[str] = []
        # A Gemini signature from a reasoning item, for the next call of the same turn.
        self.call_signature: str | None = None

    def _turn(self, role: Literal["user", "assistant"]) -> list[Part]:
        if not self.messages or self.messages[-1].role != role:
            self.messages.append(Message(role=role, parts=[]))
            self.call_signature = None
        return self.messages[-1].parts

    def _call(self, call: ToolCall) -> None:
        if call.signature is None and self.call_signature is not None:
            call.signature, self.call_signature = self.call_signature, None
        self._turn("assistant").append(call)

    def _result(self, call_id: str, output: Any, path: str) -> None:
        parts = self._turn("user")
        results = [part for part in parts if isinstance(part, ToolResult)]
        if len(results) != len(parts):  # text already follows: results go into a turn of their own
            self.messages.append(Message(role="user", parts=[]))
            parts = self.messages[-1].parts
        parts.append(ToolResult(tool_call_id=call_id, content=_content(output, path)))

    def add(self, item: dict[str, Any], path: str) -> None:
        kind = item["type"]
        if kind == "message":
            role, content = item["role"], item.get("content")
            if role in SYSTEM_ROLES:
                self.system.extend(_texts(content, f"{path}.content"))
            elif role == "user":
                self._turn("user").extend(_content(content, f"{path}.content"))
            else:
                self._turn("assistant").extend(_content(content, f"{path}.content"))
        elif kind == "reasoning":
            replayed = self.open_reasoning(item.get("encrypted_content"))
            parts = self._turn("assistant")
            if replayed is not None:
                parts.extend(replayed.thinking)
                self.call_signature = replayed.call_signature or self.call_signature
        elif kind == "function_call":
            name = tool_name(_string(item.get("name"), f"{path}.name"), item.get("namespace"))
            self._call(ToolCall(self._call_id(item, path), name,
                                parse_arguments(item.get("arguments"), f"{path}.arguments")))
        elif kind == "custom_tool_call":
            name = tool_name(_string(item.get("name"), f"{path}.name"), item.get("namespace"))
            self._call(ToolCall(self._call_id(item, path), name, {"input": _string(item.get("input", ""),
                                                                                   f"{path}.input")}))
        elif kind == "local_shell_call":
            self._call(ToolCall(self._call_id(item, path), LOCAL_SHELL, _shell_arguments(item, path)))
        elif kind in OUTPUT_ITEMS:
            call_id = item.get("call_id") if item.get("call_id") is not None else item.get("id")
            self._result(_string(call_id, f"{path}.call_id"), item.get("output"), f"{path}.output")
        elif kind == "compaction":
            summary = self.open_compaction(item.get("encrypted_content"))
            if summary is not None:
                self._turn("user").append(Text(f"{COMPACTION_PREFIX}\n{summary}"))
        elif kind == "item_reference":
            raise Invalid(f"{path}.id", f"names no item of a stored response: {item.get('id')}")
        else:
            log.debug("ignoring input item of type %s", kind)  # web_search_call and other built-ins

    @staticmethod
    def _call_id(item: dict[str, Any], path: str) -> str:
        call_id = _string(item.get("call_id"), f"{path}.call_id")
        if not call_id:
            raise Invalid(f"{path}.call_id", "must not be empty")
        return call_id


def _shell_arguments(item: dict[str, Any], path: str) -> dict[str, Any]:
    action = expect(item.get("action"), dict, f"{path}.action", "an object")
    command = expect(action.get("command"), list, f"{path}.action.command", "an array of strings")
    arguments: dict[str, Any] = {"command": command}
    if action.get("working_directory") is not None:
        arguments["workdir"] = action["working_directory"]
    if action.get("timeout_ms") is not None:
        arguments["timeout_ms"] = action["timeout_ms"]
    return arguments


def conversation(
    items: list[dict[str, Any]],
    *,
    open_reasoning: Callable[[Any], Replayed | None] = lambda sealed: None,
    open_compaction: Callable[[Any], str | None] = lambda sealed: None,
    first_index: int = 0,
) -> tuple[list[Message], list[str]]:
    """Canonical messages and system texts from normalized items (``first_index``: the index of the first
    item in the client's ``input``, for error paths; items before it came from a stored response)."""
    built = _Conversation(open_reasoning, open_compaction)
    for index, item in enumerate(items):
        built.add(item, f"input[{index - first_index}]")
    messages = [message for message in built.messages if message.parts]
    if not messages:
        if not built.system:
            raise Invalid("input", "must contain at least one item")
        return [Message(role="user", parts=[Text(text) for text in built.system])], []
    return answer_every_call(messages), built.system


# -- tools and options ---------------------------------------------------------------------------------


def _function(raw: dict[str, Any], path: str, namespace: str | None) -> tuple[Tool, ToolSpec]:
    name = _string(raw.get("name"), f"{path}.name")
    description = raw.get("description")
    parameters = raw.get("parameters")
    tool = Tool(
        name=tool_name(name, namespace),
        description=_string(description, f"{path}.description") if description is not None else "",
        parameters=expect(parameters, dict, f"{path}.parameters", "an object") if parameters is not None
        else dict(EMPTY_PARAMETERS),
    )
    return tool, ToolSpec("function", name, namespace)


def _custom(raw: dict[str, Any], path: str, namespace: str | None) -> tuple[Tool, ToolSpec]:
    """A freeform tool: the model writes its input as text, in the grammar given, if any."""
    name = _string(raw.get("name"), f"{path}.name")
    description = raw.get("description")
    text = _string(description, f"{path}.description") if description is not None else ""
    form = raw.get("format")
    if isinstance(form, dict) and form.get("type") == "grammar":
        definition = _string(form.get("definition"), f"{path}.format.definition")
        syntax = form.get("syntax") if isinstance(form.get("syntax"), str) else "lark"
        text += (f"\n\nThe input is free text (not JSON) that must match this {syntax} grammar:\n"
                 f"{definition}")
    return Tool(tool_name(name, namespace), text.strip(), dict(CUSTOM_PARAMETERS)), ToolSpec("custom", name, namespace)


def _web_search(raw: dict[str, Any], path: str) -> WebSearchOptions | None:
    """The web search tool as the gateway runs it; None when the client allows no live search.

    Codex sends ``external_web_access: false`` unless its user chose live search: results from OpenAI's cache
    only, which the gateway has none of, so the tool is dropped then (never a reason to refuse the request).
    """
    if raw.get("external_web_access") is False:
        return None
    filters = raw.get("filters")
    domains = expect(filters, dict, f"{path}.filters", "an object").get("allowed_domains") if filters else None
    if domains is not None:
        domains = [_string(domain, f"{path}.filters.allowed_domains[{k}]")
                   for k, domain in enumerate(expect(domains, list, f"{path}.filters.allowed_domains", "an array"))]
    location = None
    where = raw.get("user_location")
    if where is not None:
        where = expect(where, dict, f"{path}.user_location", "an object")
        location = Location(**{key: _string(where[key], f"{path}.user_location.{key}")
                               for key in ("city", "region", "country", "timezone") if where.get(key) is not None})
    return WebSearchOptions(allowed_domains=tuple(domains or ()), location=location)


def _tools(value: list[Any] | None) -> tuple[list[Tool], dict[str, ToolSpec], WebSearchOptions | None]:
    tools: list[Tool] = []
    specs: dict[str, ToolSpec] = {}
    search: WebSearchOptions | None = None

    def add(tool: Tool, spec: ToolSpec) -> None:
        if tool.name not in specs:  # the upstream rejects duplicate declarations
            tools.append(tool)
            specs[tool.name] = spec

    for index, raw in enumerate(value or []):
        path = f"tools[{index}]"
        kind = raw.get("type")
        if kind == "function":
            add(*_function(raw, path, None))
        elif kind == "custom":
            add(*_custom(raw, path, None))
        elif kind == "local_shell":
            add(Tool(LOCAL_SHELL, LOCAL_SHELL_DESCRIPTION, LOCAL_SHELL_PARAMETERS), ToolSpec("local_shell", LOCAL_SHELL))
        elif kind == "namespace":
            namespace = _string(raw.get("name"), f"{path}.name")
            children = expect(raw.get("tools"), list, f"{path}.tools", "an array of tools")
            for number, child in enumerate(children):
                where = f"{path}.tools[{number}]"
                child = expect(child, dict, where, "an object")
                if child.get("type") == "custom":
                    add(*_custom(child, where, namespace))
                elif child.get("type", "function") == "function":
                    add(*_function(child, where, namespace))
                else:
                    raise Invalid(f"{where}.type", f"'{child.get('type')}' tools are not supported in a namespace")
        elif isinstance(kind, str) and kind.startswith(WEB_SEARCH_TOOLS):
            search = search or _web_search(raw, path)
        else:
            raise Invalid(f"{path}.type", f"the '{kind}' tool is not supported by this gateway; it serves "
                          "function, custom, local_shell, namespace and web_search tools")
    return tools, specs, search


def _named(name: Any, path: str, specs: dict[str, ToolSpec], namespace: Any = None) -> str:
    name = tool_name(_string(name, path), namespace if isinstance(namespace, str) else None)
    if name not in specs:
        raise Invalid(path, f"names a tool that is not in tools: {name}")
    return name


def _tool_choice(value: Any, specs: dict[str, ToolSpec], search: WebSearchOptions | None) -> ToolChoice | None:
    """``auto``, ``none``, ``required``, one named tool (the web search too), or ``allowed_tools``; other built-in
    tools' choices mean auto."""
    if value is None:
        return None
    modes = {"none": "none", "auto": "auto", "required": "any"}
    if isinstance(value, str):
        if value not in modes:
            raise Invalid("tool_choice", "must be 'none', 'auto', 'required' or an object naming a tool")
        return ToolChoice(mode=modes[value])  # type: ignore[arg-type]
    kind = value.get("type")
    if kind in ("function", "custom"):
        return ToolChoice(mode="tool", name=_named(value.get("name"), "tool_choice.name", specs,
                                                   value.get("namespace")))
    if kind == "local_shell":
        return ToolChoice(mode="tool", name=_named(LOCAL_SHELL, "tool_choice.type", specs))
    if isinstance(kind, str) and kind.startswith(WEB_SEARCH_TOOLS) and search is not None:
        return ToolChoice(mode="tool", name=search.name)
    if kind == "allowed_tools":
        mode = value.get("mode")
        if mode not in ("auto", "required"):
            raise Invalid("tool_choice.mode", "must be 'auto' or 'required'")
        names = []
        for index, item in enumerate(expect(value.get("tools"), list, "tool_choice.tools", "an array")):
            item = expect(item, dict, f"tool_choice.tools[{index}]", "an object")
            if item.get("type") in ("function", "custom"):
                names.append(_named(item.get("name"), f"tool_choice.tools[{index}].name", specs, item.get("namespace")))
        if not names:
            return ToolChoice(mode="none" if mode == "auto" else "any")
        return ToolChoice(mode="any" if mode == "required" else "auto", allowed=tuple(dict.fromkeys(names)))
    return None  # a built-in tool (web search, ...): whatever the model decides


def _text_format(value: dict[str, Any] | None) -> ResponseFormat | None:
    form = (value or {}).get("format")
    if form is None:
        return None
    form = expect(form, dict, "text.format", "an object")
    kind = form.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat()
    if kind == "json_schema":
        schema = form.get("schema")
        return ResponseFormat(expect(schema, dict, "text.format.schema", "an object") if schema is not None else None)
    raise Invalid("text.format.type", "must be one of text, json_object, json_schema")


def _reasoning(value: dict[str, Any] | None) -> tuple[ThinkingConfig | None, bool]:
    """The thinking asked for, and whether the client wants to see it (a summary)."""
    if value is None:
        return None, False
    effort = value.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise Invalid("reasoning.effort", f"must be one of {', '.join(EFFORTS)}")
    summary = value.get("summary", value.get("generate_summary"))
    if summary is not None and summary not in SUMMARIES:
        raise Invalid("reasoning.summary", f"must be one of {', '.join(SUMMARIES)}")
    return ThinkingConfig(enabled=effort != "none", effort=effort), summary is not None


# -- schema -------------------------------------------------------------------------------------------


class ResponsesSchema(Schema):
    """The POST /v1/responses body; other fields are accepted and dropped, as OpenAI's own are ignorable."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    input = AnyOf(str, list, type_names="a string or an array of input items", allow_none=True)
    instructions = fields.String(allow_none=True)
    tools = ItemList(objects=True, allow_none=True)
    tool_choice = AnyOf(str, dict, type_names="a string or an object", allow_none=True)
    parallel_tool_calls = StrictBoolean(allow_none=True)
    reasoning = fields.Dict(allow_none=True)
    text = fields.Dict(allow_none=True)
    max_output_tokens = StrictInteger(validate=validate.Range(min=1), allow_none=True)
    temperature = StrictFloat(validate=validate.Range(min=0, max=2), allow_none=True)
    top_p = StrictFloat(validate=validate.Range(min=0, max=1), allow_none=True)
    store = StrictBoolean(allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    include = fields.List(fields.String(), allow_none=True)
    prompt_cache_key = fields.String(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
    user = fields.String(allow_none=True)
    safety_identifier = fields.String(allow_none=True)
    truncation = fields.String(validate=validate.OneOf(["auto", "disabled"]), allow_none=True)
    background = StrictBoolean(allow_none=True)
    conversation = fields.Raw(allow_none=True)
    prompt = fields.Raw(allow_none=True)
    stream = StrictBoolean(load_default=False, allow_none=True)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> ResponsesRequest:
        if data.get("background"):
            raise Invalid("background", "background responses are not supported by this gateway")
        for name in ("conversation", "prompt"):
            if data.get(name) is not None:
                raise Invalid(name, f"{name} objects are not supported by this gateway")
        tools, specs, search = _tools(data.get("tools"))
        thinking, summary = _reasoning(data.get("reasoning"))
        instructions = data.get("instructions")
        request = Request(
            model=data["model"],
            messages=[],
            system=[instructions] if instructions else [],
            tools=tools,
            tool_choice=_tool_choice(data.get("tool_choice"), specs, search),
            max_tokens=data.get("max_output_tokens"),
            temperature=data.get("temperature"),
            top_p=data.get("top_p"),
            thinking=thinking,
            stream=bool(data.get("stream")),
            session_key=data.get("prompt_cache_key") or data.get("user") or data.get("safety_identifier"),
            response_format=_text_format(data.get("text")),
            web_search=search,
        )
        return ResponsesRequest(
            request=request,
            items=normalize(data.get("input")),
            body=data,
            tools=specs,
            instructions=instructions,
            include=tuple(data.get("include") or ()),
            summary=summary,
            parallel_tool_calls=data.get("parallel_tool_calls") is not False,
        )


class CompactSchema(Schema):
    """The POST /v1/responses/compact body."""

    class Meta:
        unknown = EXCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    input = AnyOf(str, list, type_names="a string or an array of input items", allow_none=True)
    instructions = fields.String(allow_none=True)
    previous_response_id = fields.String(allow_none=True)
    prompt_cache_key = fields.String(allow_none=True)

    @post_load
    def to_request(self, data: dict[str, Any], **kwargs: Any) -> ResponsesRequest:
        instructions = data.get("instructions")
        request = Request(model=data["model"], messages=[], system=[instructions] if instructions else [],
                          session_key=data.get("prompt_cache_key"))
        return ResponsesRequest(request=request, items=normalize(data.get("input")), body=data, tools={},
                                instructions=instructions)


RESPONSES_SCHEMA = ResponsesSchema()
COMPACT_SCHEMA = CompactSchema()
