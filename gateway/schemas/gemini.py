"""Google Gemini API requests (``GenerateContentRequest``): checks, and loading into the canonical Request.

Two paths, decided by the model's maker. A Gemini model gets the client's body nearly as it came (the passthrough
lane, ``engine/passthrough.py``): ``check_passthrough`` only makes sure that what the lane rewrites has the shape
it reads, and leaves every other field to the upstream, which validates Google's own format better than a copy of
its rules could. Any other model is served through the canonical model, so ``GENERATE_SCHEMA`` loads the body into
a canonical Request like the other families' schemas.

Google's clients spell fields both ways (the python SDK sends ``thinking_config`` inside ``generationConfig``), so
every field is read under its camelCase and its snake_case name, as the upstream itself takes them. Error paths
use proto field names (``contents[0].parts``), as Google's messages do. docs/clients.md, "Gemini API", is the
reference for every rule here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load

from ..core.request import (
    Image,
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
)
from ..errors import InvalidRequest
from ..translate.signatures import SKIP_SIGNATURE
from .common import AnyOf, Invalid, ItemList, expect, first_error

EMPTY_PARAMETERS = {"type": "object", "properties": {}}
LEVELS = ("minimal", "low", "medium", "high")
# gemini-cli names each call id after its function (``run_shell_command__<id>``) before it sends it back.
_CALL_ID_PREFIX = "__"
_UPPER = re.compile(r"[A-Z]")


def snake(name: str) -> str:
    return _UPPER.sub(lambda match: "_" + match.group(0).lower(), name)


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A field under its camelCase ``name`` or its snake_case twin (the camel spelling wins)."""
    if not isinstance(obj, dict):
        return default
    if name in obj:
        return obj[name]
    return obj.get(snake(name), default)


def _optional(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    value = field(obj, name)
    return None if value is None else expect(value, kind, f"{path}.{snake(name)}" if path else snake(name), what)


def _objects(value: Any, path: str) -> list[dict[str, Any]]:
    items = expect(value, list, path, "a list")
    for index, item in enumerate(items):
        expect(item, dict, f"{path}[{index}]", "an object")
    return items


# -- the passthrough ----------------------------------------------------------------------------------------


def check_passthrough(body: dict[str, Any]) -> dict[str, Any]:
    """The body, if what the passthrough lane reads and rewrites has the shape it expects; else a 400.

    The lane reads the contents (signatures on model parts, the first user text as the session's key), the
    function declarations (their schemas) and the generation config (output limit, thinking); the rest goes to the
    upstream untouched and is its to judge.
    """
    if field(body, "cachedContent") is not None:
        raise InvalidRequest("cachedContent is not supported: this gateway serves no context cache", param="cached_content")
    contents = field(body, "contents")
    if contents is None:
        raise InvalidRequest("contents is not specified", param="contents")
    try:
        for i, content in enumerate(_objects(contents, "contents")):
            for j, part in enumerate(_objects(field(content, "parts") or [], f"contents[{i}].parts")):
                _optional(part, "thoughtSignature", str, f"contents[{i}].parts[{j}]", "a string")
                _optional(part, "text", str, f"contents[{i}].parts[{j}]", "a string")
        for i, tool in enumerate(_objects(field(body, "tools") or [], "tools")):
            declarations = field(tool, "functionDeclarations") or []
            for j, declaration in enumerate(_objects(declarations, f"tools[{i}].function_declarations")):
                at = f"tools[{i}].function_declarations[{j}]"
                for name in ("parameters", "parametersJsonSchema"):
                    _optional(declaration, name, dict, at, "an object")
        config = _optional(body, "generationConfig", dict, "", "an object") or {}
        _optional(config, "maxOutputTokens", int, "generation_config", "an integer")
        _optional(config, "responseSchema", dict, "generation_config", "an object")
        thinking = _optional(config, "thinkingConfig", dict, "generation_config", "an object") or {}
        _optional(thinking, "thinkingLevel", str, "generation_config.thinking_config", "a string")
    except Invalid as exc:
        raise _invalid(exc) from None
    return body


def count_body(body: dict[str, Any]) -> dict[str, Any]:
    """What a countTokens body counts: ``{"contents": [...]}``, or a whole ``generateContentRequest``."""
    inner = field(body, "generateContentRequest")
    if inner is None:
        return body
    if not isinstance(inner, dict):
        raise InvalidRequest("generate_content_request: must be an object", param="generate_content_request")
    return inner


def _invalid(exc: Invalid) -> InvalidRequest:
    path = exc.field_name if isinstance(exc.field_name, str) else ""
    message = exc.messages[0] if isinstance(exc.messages, list) and exc.messages else str(exc.messages)
    return InvalidRequest(f"Invalid value at '{path}': {message}" if path else str(message), param=path or None)


# -- the canonical model ---------------------------------------------------------------------------------------


@dataclass
class Generation:
    """The canonical request plus what only the Gemini renderer needs."""

    request: Request
    # Thoughts are returned only when asked for (``thinkingConfig.includeThoughts``), as Google does.
    include_thoughts: bool = False


class _Calls:
    """Call ids across a conversation: Claude and gpt-oss pair calls and results by id, Gemini by position.

    Ids the client dropped are made up (a call's from its place in the history, a result's from the open call of
    the same name, else the first one open), and gemini-cli's ``<name>__`` prefix comes off again.
    """

    def __init__(self) -> None:
        self.open: list[ToolCall] = []

    def call(self, name: str, raw_id: Any, turn: int, position: int) -> str:
        return _strip(raw_id, name) or f"call_{turn}_{position}"

    def opened(self, calls: list[ToolCall]) -> None:
        self.open = list(calls)

    def answer(self, name: str, raw_id: Any) -> str | None:
        wanted = _strip(raw_id, name)
        if wanted:
            match = next((c for c in self.open if c.id == wanted), None)
        else:
            match = next((c for c in self.open if c.name == name), None) or (self.open[0] if self.open else None)
        if match is not None:
            self.open.remove(match)
        return wanted or (match.id if match is not None else None)


def _strip(raw_id: Any, name: str) -> str | None:
    if not isinstance(raw_id, str) or not raw_id:
        return None
    prefix = name + _CALL_ID_PREFIX
    return raw_id[len(prefix):] if raw_id.startswith(prefix) and len(raw_id) > len(prefix) else raw_id


def _text(value: Any, path: str) -> str:
    return expect(value, str, path, "a string")


def _model_parts(parts: list[dict[str, Any]], path: str, turn: int, calls: _Calls) -> list[Part]:
    """A model turn: consecutive thought parts are one thinking block, closed by the part that signs it."""
    out: list[Part] = []
    made: list[ToolCall] = []
    thinking: Thinking | None = None
    for j, part in enumerate(parts):
        at = f"{path}[{j}]"
        signature = field(part, "thoughtSignature")
        signature = _text(signature, f"{at}.thought_signature") if signature is not None else None
        if field(part, "thought") is True:
            if thinking is None or thinking.signature:
                thinking = Thinking("")
                out.append(thinking)
            thinking.text += _text(field(part, "text", ""), f"{at}.text")
            thinking.signature = signature or thinking.signature
            continue
        thinking = None
        call = field(part, "functionCall")
        if call is not None:
            call = expect(call, dict, f"{at}.function_call", "an object")
            name = _text(field(call, "name"), f"{at}.function_call.name")
            args = field(call, "args") or {}
            tool_call = ToolCall(
                id=calls.call(name, field(call, "id"), turn, j), name=name,
                arguments=expect(args, dict, f"{at}.function_call.args", "an object"),
                signature=signature if signature and signature != SKIP_SIGNATURE else None,
            )
            made.append(tool_call)
            out.append(tool_call)
            continue
        out.extend(_common_part(part, at))
    calls.opened(made)
    return out


def _user_parts(parts: list[dict[str, Any]], path: str, calls: _Calls) -> list[Part]:
    out: list[Part] = []
    for j, part in enumerate(parts):
        at = f"{path}[{j}]"
        result = field(part, "functionResponse")
        if result is None:
            out.extend(_common_part(part, at))
            continue
        result = expect(result, dict, f"{at}.function_response", "an object")
        name = _text(field(result, "name"), f"{at}.function_response.name")
        response = field(result, "response") or {}
        response = expect(response, dict, f"{at}.function_response.response", "an object")
        content, is_error = _result_content(response)
        for k, nested in enumerate(_objects(field(result, "parts", []), f"{at}.function_response.parts")):
            content.extend(p for p in _common_part(nested, f"{at}.function_response.parts[{k}]")
                           if isinstance(p, Image))
        call_id = calls.answer(name, field(result, "id"))
        out.append(ToolResult(tool_call_id=call_id or f"call_{name}", content=content, is_error=is_error, name=name))
    return out


def _result_content(response: dict[str, Any]) -> tuple[list[Text | Image], bool]:
    """A function's response object as text: its one string (``output``, ``result``, ``error``), else its JSON."""
    if set(response) == {"error"}:
        error = response["error"]
        return [Text(error if isinstance(error, str) else json.dumps(error, ensure_ascii=False))], True
    if len(response) == 1:
        (value,) = response.values()
        if isinstance(value, str):
            return [Text(value)], False
    return [Text(json.dumps(response, ensure_ascii=False))], False


def _common_part(part: dict[str, Any], at: str) -> list[Part]:
    """Text and media, in either role; code execution parts as text; other parts carry nothing to translate."""
    text = field(part, "text")
    if text is not None:
        return [Text(_text(text, f"{at}.text"))]
    blob = field(part, "inlineData")
    if blob is not None:
        blob = expect(blob, dict, f"{at}.inline_data", "an object")
        return [Image(media_type=_text(field(blob, "mimeType"), f"{at}.inline_data.mime_type"),
                      data=_text(field(blob, "data"), f"{at}.inline_data.data"))]
    file = field(part, "fileData")
    if file is not None:
        file = expect(file, dict, f"{at}.file_data", "an object")
        mime = field(file, "mimeType")
        return [Image(media_type=_text(mime, f"{at}.file_data.mime_type") if mime is not None else None,
                      url=_text(field(file, "fileUri"), f"{at}.file_data.file_uri"))]
    code = field(part, "executableCode")
    if isinstance(code, dict) and isinstance(field(code, "code"), str):
        return [Text(field(code, "code"))]
    outcome = field(part, "codeExecutionResult")
    if isinstance(outcome, dict) and isinstance(field(outcome, "output"), str):
        return [Text(field(outcome, "output"))]
    return []


def _messages(contents: list[dict[str, Any]]) -> list[Message]:
    messages: list[Message] = []
    calls = _Calls()
    for i, content in enumerate(contents):
        path = f"contents[{i}]"
        role = field(content, "role", "user")
        parts = _objects(field(content, "parts", []), f"{path}.parts")
        if role == "model":
            messages.append(Message("assistant", _model_parts(parts, f"{path}.parts", i, calls)))
        elif role in ("user", "function"):  # "function": the older API's role for function responses
            messages.append(Message("user", _user_parts(parts, f"{path}.parts", calls)))
        else:
            raise Invalid(f"{path}.role", "Please use a valid role: user, model.")
    if not messages:
        raise Invalid("contents", "contents is not specified")
    return messages


def _system(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    content = expect(value, dict, "system_instruction", "a content object")
    texts = []
    for j, part in enumerate(_objects(field(content, "parts", []), "system_instruction.parts")):
        text = field(part, "text")
        if text is not None:
            texts.append(_text(text, f"system_instruction.parts[{j}].text"))
    return texts


def _tools(value: list[dict[str, Any]] | None) -> list[Tool]:
    """Function declarations; Google's built-in tools (search, code execution) exist only for Gemini models."""
    tools: list[Tool] = []
    seen: set[str] = set()
    for i, tool in enumerate(value or []):
        declarations = field(tool, "functionDeclarations", [])
        for j, declaration in enumerate(_objects(declarations, f"tools[{i}].function_declarations")):
            at = f"tools[{i}].function_declarations[{j}]"
            name = _text(field(declaration, "name"), f"{at}.name")
            schema = field(declaration, "parametersJsonSchema")
            schema = field(declaration, "parameters") if schema is None else schema
            description = field(declaration, "description")
            if name in seen:
                continue
            seen.add(name)
            tools.append(Tool(
                name=name,
                description=_text(description, f"{at}.description") if description is not None else "",
                parameters=expect(schema, dict, f"{at}.parameters", "an object") if schema is not None
                else dict(EMPTY_PARAMETERS),
            ))
    return tools


def _tool_choice(config: Any, tools: list[Tool]) -> ToolChoice | None:
    calling = field(expect(config, dict, "tool_config", "an object"), "functionCallingConfig") if config else None
    if calling is None:
        return None
    calling = expect(calling, dict, "tool_config.function_calling_config", "an object")
    mode = field(calling, "mode", "AUTO")
    allowed = field(calling, "allowedFunctionNames") or []
    allowed = [_text(name, f"tool_config.function_calling_config.allowed_function_names[{k}]")
               for k, name in enumerate(expect(allowed, list, "tool_config.function_calling_config."
                                               "allowed_function_names", "a list"))]
    declared = {tool.name for tool in tools}
    for name in allowed:
        if name not in declared:
            raise Invalid("tool_config.function_calling_config.allowed_function_names",
                          f"function '{name}' is not declared in tools")
    if mode in ("AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        return ToolChoice("auto", allowed=tuple(allowed)) if allowed else ToolChoice("auto")
    if mode == "NONE":
        return ToolChoice("none")
    if mode == "ANY":
        if len(allowed) == 1:
            return ToolChoice("tool", name=allowed[0])
        return ToolChoice("any", allowed=tuple(allowed))
    raise Invalid("tool_config.function_calling_config.mode", "must be one of AUTO, ANY, NONE, VALIDATED")


def _thinking(config: dict[str, Any]) -> tuple[ThinkingConfig | None, bool]:
    """thinkingConfig as the canonical ThinkingConfig, and whether thoughts are to be returned."""
    thinking = field(config, "thinkingConfig")
    if thinking is None:
        return None, False
    path = "generation_config.thinking_config"
    thinking = expect(thinking, dict, path, "an object")
    include = field(thinking, "includeThoughts")
    include = bool(expect(include, bool, f"{path}.include_thoughts", "a boolean")) if include is not None else False
    budget = field(thinking, "thinkingBudget")
    level = field(thinking, "thinkingLevel")
    if level is not None:
        level = _text(level, f"{path}.thinking_level").lower()
        if level == "thinking_level_unspecified":
            level = None
        elif level not in LEVELS:
            raise Invalid(f"{path}.thinking_level", f"must be one of {', '.join(l.upper() for l in LEVELS)}")
    if budget is not None:
        budget = expect(budget, int, f"{path}.thinking_budget", "an integer")
        if budget == 0:
            return ThinkingConfig(enabled=False), False
    return ThinkingConfig(budget_tokens=budget if budget and budget > 0 else None, effort=level), include


def _generation(config: Any, request: Request) -> bool:
    """generationConfig onto the request; whether thoughts are to be returned."""
    if config is None:
        return False
    path = "generation_config"
    config = expect(config, dict, path, "an object")
    request.max_tokens = _optional(config, "maxOutputTokens", int, path, "an integer")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise Invalid(f"{path}.max_output_tokens", "must be at least 1")
    request.temperature = _optional(config, "temperature", (int, float), path, "a number")
    request.top_p = _optional(config, "topP", (int, float), path, "a number")
    top_k = _optional(config, "topK", (int, float), path, "a number")
    request.top_k = int(top_k) if top_k else None
    stops = _optional(config, "stopSequences", list, path, "a list of strings") or []
    request.stop = [_text(stop, f"{path}.stop_sequences[{k}]") for k, stop in enumerate(stops)]
    count = _optional(config, "candidateCount", int, path, "an integer")
    if count is not None and count != 1:
        raise Invalid(f"{path}.candidate_count", "only 1 is supported for this model")
    if _optional(config, "responseMimeType", str, path, "a string") == "application/json":
        schema = field(config, "responseJsonSchema")
        schema = field(config, "responseSchema") if schema is None else schema
        request.response_format = ResponseFormat(
            expect(schema, dict, f"{path}.response_schema", "an object") if schema is not None else None)
    request.thinking, include = _thinking(config)
    return include


class GenerateContentSchema(Schema):
    """The top level of a generateContent body; the loader checks what is inside while it converts it."""

    class Meta:
        unknown = EXCLUDE

    contents = ItemList(required=True, objects=True)
    systemInstruction = AnyOf(str, dict, type_names="a content object", allow_none=True)  # noqa: N815
    tools = ItemList(objects=True, allow_none=True)
    toolConfig = fields.Dict(allow_none=True)  # noqa: N815
    generationConfig = fields.Dict(allow_none=True)  # noqa: N815

    @pre_load
    def camel_case(self, data: Any, **kwargs: Any) -> Any:
        """Google's parsers take snake_case too."""
        if not isinstance(data, dict):
            return data
        return {key: field(data, key) for key in self.fields if field(data, key) is not None}


GENERATE_SCHEMA = GenerateContentSchema()


def load_generation(body: dict[str, Any], model: str, *, stream: bool) -> Generation:
    """The body as a canonical request for ``model`` (the name in the URL), or a 400 naming the field."""
    try:
        data = GENERATE_SCHEMA.load(body)
        tools = _tools(data.get("tools"))
        request = Request(
            model=model,
            messages=_messages(data["contents"]),
            system=_system(data.get("systemInstruction")),
            tools=tools,
            tool_choice=_tool_choice(data.get("toolConfig"), tools),
            stream=stream,
        )
        include = _generation(data.get("generationConfig"), request)
    except Invalid as exc:
        raise _invalid(exc) from None
    except ValidationError as exc:
        path, message = first_error(exc.messages)
        path = snake(path)
        raise InvalidRequest(f"Invalid value at '{path}': {message}" if path else message, param=path or None) from None
    return Generation(request, include_thoughts=include)
