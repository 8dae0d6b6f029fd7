"""A synthetic request shaped like what Claude Code 2.1.x sends to /v1/messages, at a chosen size.

The shape copies a recorded Claude Code 2.1.332 request (docs/clients.md, "Claude Code"): ``system`` as three blocks
with ``cache_control`` (one large), a dozen tools whose JSON schemas use ``$schema``, ``additionalProperties``,
``enum``, ``maxLength``, ``exclusiveMinimum`` and one with ``defer_loading``; a first user turn of several text
blocks; a ``system``-role message mid-conversation; tool loops with thinking, ``tool_use`` and ``tool_result``
with ``cache_control``; ``metadata.user_id`` as a JSON string; ``context_management``. The text is generated,
so none of Claude Code's own prompt is copied here; only the sizes and the structure matter.
"""

from __future__ import annotations

import json
from typing import Any

WORDS = ("the tool reads files edits code runs commands in a shell and reports what it found "
         "when asked use absolute paths prefer small changes keep the user informed").split()


def prose(chars: int, seed: int = 0) -> str:
    """Deterministic filler text of about ``chars`` characters."""
    out: list[str] = []
    length, index = 0, seed
    while length < chars:
        word = WORDS[(index * 7 + seed) % len(WORDS)]
        out.append(word)
        length += len(word) + 1
        index += 1
    return " ".join(out)[:chars]


def tool(index: int, description_chars: int, properties: int) -> dict[str, Any]:
    """One tool whose schema uses the keywords Claude Code's schemas use."""
    props: dict[str, Any] = {}
    for k in range(properties):
        prop: dict[str, Any] = {"description": prose(120, index + k), "type": "string"}
        if k % 4 == 1:
            prop = {"description": prose(80, k), "type": "number", "exclusiveMinimum": 0, "maximum": 600000}
        elif k % 4 == 2:
            prop["enum"] = ["alpha", "beta", "gamma", "delta"]
        elif k % 4 == 3:
            prop = {"description": prose(60, k), "type": "array", "maxItems": 20,
                    "items": {"type": "object", "additionalProperties": False, "required": ["path"],
                              "properties": {"path": {"type": "string", "maxLength": 4096},
                                             "line": {"type": "integer", "minimum": 1}}}}
        else:
            prop["maxLength"] = 2000
        props[f"param_{k}"] = prop
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": props,
              "required": list(props)[:2], "additionalProperties": False}
    return {"name": f"Tool{index}", "description": prose(description_chars, index), "input_schema": schema}


def tool_loop(turn: int, signed: bool) -> list[dict[str, Any]]:
    """An assistant turn with thinking and a tool call, then the user's tool result."""
    call_id = f"toolu_{turn:024d}"
    assistant: list[dict[str, Any]] = []
    if signed:
        assistant.append({"type": "thinking", "thinking": prose(200, turn), "signature": "sig" + "A" * 300})
    assistant.append({"type": "tool_use", "id": call_id, "name": "Tool1",
                      "input": {"param_0": "ls -la", "param_1": 120000}})
    result = {"type": "tool_result", "tool_use_id": call_id, "content": prose(900, turn), "is_error": False,
              "cache_control": {"type": "ephemeral"}}
    return [{"role": "assistant", "content": assistant}, {"role": "user", "content": [result]}]


def claude_code_body(target_bytes: int = 50_000, model: str = "claude-opus-4-6-thinking",
                     stream: bool = True) -> dict[str, Any]:
    """A body of about ``target_bytes`` of JSON: tools ~55%, system ~30%, messages the rest."""
    tools = [tool(i, description_chars=target_bytes // 48, properties=4 + i % 5) for i in range(11)]
    tools.append({"name": "DeferredToolPlaceholder", "description": "Placeholder", "defer_loading": True,
                  "input_schema": {"type": "object", "properties": {}}})
    system = [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332; cc_entrypoint=sdk-cli;"},
        {"type": "text", "text": prose(60), "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": prose(target_bytes * 3 // 10), "cache_control": {"type": "ephemeral"}},
    ]
    first = [{"type": "text", "text": prose(size, i)} for i, size in enumerate((800, 200, 480, 1900, 120))]
    first.append({"type": "text", "text": "Find where the request is translated and explain it."})
    messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
    messages.append({"role": "system", "content": prose(300, 3)})
    messages.append({"role": "user", "content": [{"type": "text", "text": "Go on."}]})
    turn = 0
    body: dict[str, Any] = {}
    while True:
        body = {
            "model": model,
            "messages": messages,
            "system": system,
            "tools": tools,
            "metadata": {"user_id": json.dumps({"device_id": "0" * 64, "account_uuid": "",
                                                "session_id": "00000000-0000-4000-8000-000000000000"})},
            "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": 31999, "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "stream": stream,
        }
        if len(json.dumps(body)) >= target_bytes or turn > 50:
            return body
        messages += tool_loop(turn, signed=True)
        turn += 1


if __name__ == "__main__":
    print(json.dumps(claude_code_body()))
