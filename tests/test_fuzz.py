"""Thousands of generated bodies, valid and not, thrown at every API family.

Whatever arrives, the answer is never a 5xx, and every error has the family's shape. The gateway runs
in Flask's test client here (the fake upstream is still a real server), so the examples are cheap. Each family
is one entry of FAMILIES: its path, its generated bodies, a body that reaches the upstream (crafted values are
put anywhere into copies of it: deep nesting, lone surrogates) and the check of its answer's shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from tests.conftest import REFRESH_TOKEN, gateway_settings, write_accounts
from tests.fake_cloudcode import FakeCloudCode

MODELS = ["claude-sonnet-4-6", "claude-opus-4-6-thinking", "gemini-3-flash-agent", "no-such-model"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 70000), st.floats(allow_nan=False, width=32),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


def maybe(strategy):
    return st.one_of(strategy, json_values)


text_block = st.fixed_dictionaries({"type": st.just("text"), "text": maybe(st.text(max_size=30))})
image_block = st.fixed_dictionaries({"type": st.just("image"), "source": maybe(st.fixed_dictionaries({
    "type": st.sampled_from(["base64", "url", "file"]), "media_type": st.sampled_from(["image/png", "text/plain"]),
    "data": st.sampled_from(["aGVsbG8=", "%%%", ""])}))})
tool_use = st.fixed_dictionaries({"type": st.just("tool_use"), "id": maybe(st.just("toolu_1")),
                                  "name": maybe(st.just("get_weather")), "input": maybe(st.just({"city": "x"}))})
tool_result = st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": maybe(st.just("toolu_1")),
                                     "content": maybe(st.lists(text_block, max_size=2)), "is_error": maybe(st.booleans())})
thinking = st.fixed_dictionaries({"type": st.just("thinking"), "thinking": maybe(st.text(max_size=10)),
                                  "signature": maybe(st.text(min_size=0, max_size=60))})
block = st.one_of(text_block, image_block, tool_use, tool_result, thinking, json_values)
message = st.fixed_dictionaries({
    "role": st.one_of(st.sampled_from(["user", "assistant", "system"]), json_values),
    "content": st.one_of(st.text(max_size=30), st.lists(block, max_size=3), json_values),
})
tool = st.fixed_dictionaries({"name": maybe(st.sampled_from(["get_weather", "bad name!"])),
                              "input_schema": maybe(st.just({"type": "object", "properties": {"city": {"type": "string"}}}))})
anthropic_body = st.fixed_dictionaries(
    {"model": maybe(st.sampled_from(MODELS)), "messages": st.one_of(st.lists(message, max_size=4), json_values)},
    optional={
        "max_tokens": maybe(st.integers(-5, 200000)),
        "system": st.one_of(st.text(max_size=20), st.lists(text_block, max_size=2), json_values),
        "tools": st.one_of(st.lists(tool, max_size=2), json_values),
        "tool_choice": st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "x"]),
                                                        "name": st.just("get_weather")}), json_values),
        "thinking": maybe(st.fixed_dictionaries({"type": st.sampled_from(["enabled", "adaptive", "disabled", "x"]),
                                                 "budget_tokens": maybe(st.integers(-1, 100000))})),
        "temperature": maybe(st.floats(-1, 3)),
        "stop_sequences": maybe(st.lists(st.text(max_size=5), max_size=2)),
        "stream": maybe(st.booleans()),
        "metadata": json_values,
    },
)
openai_message = st.fixed_dictionaries({
    "role": st.one_of(st.sampled_from(["system", "developer", "user", "assistant", "tool"]), json_values),
    "content": st.one_of(st.text(max_size=30), st.none(), st.lists(st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": maybe(st.text(max_size=10))}),
        st.fixed_dictionaries({"type": st.just("image_url"), "image_url": maybe(st.fixed_dictionaries(
            {"url": st.sampled_from(["data:image/png;base64,aGVsbG8=", "data:bad", "ftp://x"])}))}),
        json_values), max_size=3), json_values),
}, optional={"tool_calls": maybe(st.lists(st.fixed_dictionaries({"id": maybe(st.just("call_1")), "type": st.just("function"),
             "function": maybe(st.fixed_dictionaries({"name": maybe(st.just("f")), "arguments": maybe(st.sampled_from(['{"a":1}', "nope"]))}))}), max_size=2)),
             "tool_call_id": maybe(st.just("call_1"))})
openai_body = st.fixed_dictionaries(
    {"model": maybe(st.sampled_from(MODELS)), "messages": st.one_of(st.lists(openai_message, max_size=4), json_values)},
    optional={
        "max_tokens": maybe(st.integers(-5, 200000)),
        "max_completion_tokens": maybe(st.integers(-5, 200000)),
        "n": maybe(st.integers(0, 3)),
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=5), json_values),
        "tools": maybe(st.lists(st.fixed_dictionaries({"type": st.just("function"), "function": maybe(st.fixed_dictionaries(
            {"name": maybe(st.just("f")), "parameters": maybe(st.just({"type": "object", "properties": {"a": {"type": "string"}}}))}))}), max_size=2)),
        "tool_choice": st.one_of(st.sampled_from(["none", "auto", "required"]), json_values),
        "response_format": maybe(st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])})),
        "reasoning_effort": maybe(st.sampled_from(["low", "medium", "high", "none", "ultra"])),
        "stream": maybe(st.booleans()),
        "stream_options": json_values,
        "temperature": maybe(st.floats(-1, 3)),
    },
)

gemini_part = st.one_of(
    st.fixed_dictionaries({"text": maybe(st.text(max_size=20))}),
    st.fixed_dictionaries({"text": maybe(st.text(max_size=10)), "thought": maybe(st.booleans())},
                          optional={"thoughtSignature": maybe(st.text(max_size=60))}),
    st.fixed_dictionaries({"functionCall": maybe(st.fixed_dictionaries(
        {"name": maybe(st.just("get_weather")), "args": maybe(st.just({"city": "x"}))},
        optional={"id": maybe(st.sampled_from(["c1", "get_weather__c1"]))}))},
        optional={"thoughtSignature": maybe(st.sampled_from(["skip_thought_signature_validator", "abc"]))}),
    st.fixed_dictionaries({"functionResponse": maybe(st.fixed_dictionaries(
        {"name": maybe(st.just("get_weather")), "response": maybe(st.just({"result": "x"}))},
        optional={"id": maybe(st.just("c1")), "parts": json_values}))}),
    st.fixed_dictionaries({"inlineData": maybe(st.fixed_dictionaries({
        "mimeType": st.sampled_from(["image/png", "text/plain"]), "data": st.sampled_from(["aGVsbG8=", "%%%", ""])}))}),
    json_values,
)
gemini_content = st.fixed_dictionaries({"role": maybe(st.sampled_from(["user", "model", "function"])),
                                        "parts": st.one_of(st.lists(gemini_part, max_size=3), json_values)})
gemini_body = st.fixed_dictionaries(
    {"contents": st.one_of(st.lists(gemini_content, max_size=4), json_values)},
    optional={
        "systemInstruction": maybe(st.fixed_dictionaries({"parts": maybe(st.lists(
            st.fixed_dictionaries({"text": maybe(st.text(max_size=10))}), max_size=2))})),
        "tools": maybe(st.lists(st.fixed_dictionaries({"functionDeclarations": maybe(st.lists(st.fixed_dictionaries(
            {"name": maybe(st.sampled_from(["get_weather", "bad name!"]))},
            optional={"parametersJsonSchema": maybe(st.just({"type": "object", "properties": {"city": {"type": "string"}}})),
                      "parameters": maybe(st.just({"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}))}),
            max_size=2))}), max_size=2)),
        "toolConfig": maybe(st.fixed_dictionaries({"functionCallingConfig": maybe(st.fixed_dictionaries(
            {"mode": maybe(st.sampled_from(["AUTO", "ANY", "NONE", "VALIDATED", "X"]))},
            optional={"allowedFunctionNames": maybe(st.lists(st.just("get_weather"), max_size=1))}))})),
        "generationConfig": maybe(st.fixed_dictionaries({}, optional={
            "maxOutputTokens": maybe(st.integers(-5, 200000)),
            "temperature": maybe(st.floats(-1, 3)),
            "candidateCount": maybe(st.integers(0, 3)),
            "responseMimeType": maybe(st.sampled_from(["application/json", "text/plain"])),
            "responseSchema": maybe(st.just({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}})),
            "stopSequences": maybe(st.lists(st.text(max_size=5), max_size=2)),
            "thinkingConfig": maybe(st.fixed_dictionaries({}, optional={
                "includeThoughts": maybe(st.booleans()), "thinkingLevel": maybe(st.sampled_from(["LOW", "minimal", "x"])),
                "thinkingBudget": maybe(st.integers(-1, 100000))})),
        })),
        "safetySettings": maybe(st.lists(st.fixed_dictionaries({"category": st.just("HARM_CATEGORY_HARASSMENT"),
                                                                "threshold": maybe(st.just("BLOCK_NONE"))}), max_size=1)),
        "cachedContent": maybe(st.just("cachedContents/1")),
    },
)
GEMINI_SERVED = {
    "systemInstruction": {"parts": [{"text": "be brief"}]},
    "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}]}],
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "generationConfig": {"maxOutputTokens": 100, "thinkingConfig": {"includeThoughts": True}},
    "contents": [{"role": "user", "parts": [{"text": "weather?"}]},
                 {"role": "model", "parts": [{"functionCall": {"id": "c1", "name": "get_weather", "args": {"city": "Oslo"}},
                                              "thoughtSignature": "skip_thought_signature_validator"}]},
                 {"role": "user", "parts": [{"functionResponse": {"id": "c1", "name": "get_weather",
                                                                  "response": {"result": "snow"}}}]}],
}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    fake = FakeCloudCode().start()
    fake.add_account("alice@example.com", refresh_token=REFRESH_TOKEN, project_id="proj-alice")
    path = write_accounts(tmp_path_factory.mktemp("fuzz") / "accounts.json", [
        {"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"}])
    application = create_app(gateway_settings(fake, path, log_level="ERROR", empty_retries=0))
    yield application
    fake.stop()


def check_anthropic(body: dict) -> bool:
    return body.get("type") == "error" and set(body["error"]) >= {"type", "message"}


def check_openai(body: dict) -> bool:
    return set(body.get("error") or ()) >= {"message", "type", "param", "code"}


def check_gemini(body: dict) -> bool:
    return set(body.get("error") or ()) >= {"code", "message", "status"}


@dataclass(frozen=True)
class Family:
    name: str
    path: str
    bodies: st.SearchStrategy
    served: dict[str, Any]  # a body the upstream answers: crafted values go anywhere into copies of it
    is_error: Callable[[dict], bool]  # an error body in the family's shape
    answer_field: tuple[str, str]  # a field and its value in a successful (non-stream) answer


FAMILIES = [
    Family("anthropic", "/v1/messages", anthropic_body, {
        "model": "claude-sonnet-4-6", "max_tokens": 100, "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "be brief"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "weather?"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                        "input": {"city": "Oslo"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "snow"}]}],
    }, check_anthropic, ("type", "message")),
    Family("openai", "/v1/chat/completions", openai_body, {
        "model": "gemini-3-flash-agent", "max_completion_tokens": 100, "user": "u",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                                                                                   "properties": {"a": {"type": "string"}}}}}],
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "call f"},
                     {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                                           "function": {"name": "f", "arguments": '{"a": "x"}'}}]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "done"}],
    }, check_openai, ("object", "chat.completion")),
    # A Gemini model, through the passthrough lane; a Claude one, through the canonical model.
    Family("gemini", "/v1beta/models/gemini-3-flash-agent:generateContent", gemini_body, GEMINI_SERVED, check_gemini,
           ("modelVersion", "gemini-3-flash-agent")),
    Family("gemini-claude", "/v1beta/models/claude-sonnet-4-6:streamGenerateContent?alt=sse", gemini_body, GEMINI_SERVED,
           check_gemini, ("modelVersion", "claude-sonnet-4-6")),
]
BY_PATH = {family.path: family for family in FAMILIES}


def _check(response, family: Family) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    data = response.get_data(as_text=True)
    if response.status_code >= 400:
        assert family.is_error(json.loads(data)), data[:500]
    elif response.mimetype == "text/event-stream":
        assert data.startswith(("event: ", "data: ", ":"))
    else:
        field, value = family.answer_field
        assert json.loads(data).get(field) == value, data[:500]


FUZZ = settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
@FUZZ
@given(data=st.data())
def test_generated_bodies_never_5xx(app, family, data) -> None:
    body = data.draw(st.one_of(family.bodies, json_values))
    _check(app.test_client().post(family.path, json=body), family)


# -- crafted values: what the json module reads but nothing downstream can take ------------------------------------

SENTINEL = "\u0000crafted\u0000"
DEEP = st.tuples(st.sampled_from(["[", '{"a":']), st.sampled_from([255, 300, 999, 1000, 5000, 100_000]))
SURROGATES = st.sampled_from(["\ud800", "\udfff", "x\udc00", "\ud83d", "\ude00\ud83d", "ok \ud800 ok"])


def _slots(value: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a JSON value, the places a crafted value can go."""
    if depth > 8:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield value, key
        yield from _slots(item, depth + 1)


def _with_crafted(body: dict, data) -> tuple[bytes, str]:  # noqa: ANN001 - hypothesis's data object
    """The body as JSON text with one crafted value in it, and which kind of value that is."""
    body = json.loads(json.dumps(body))
    container, key = data.draw(st.sampled_from(list(_slots(body))))
    kind = data.draw(st.sampled_from(["deep", "surrogate", "surrogate key"]))
    if kind == "surrogate key" and isinstance(container, dict):
        container[data.draw(SURROGATES)] = container.pop(key)
        return json.dumps(body).encode(), kind
    if kind == "deep":
        opener, levels = data.draw(DEEP)
        closer = "]" if opener == "[" else "}"
        container[key] = SENTINEL
        text = json.dumps(body).replace(json.dumps(SENTINEL), opener * levels + "1" + closer * levels)
        return text.encode(), kind
    container[key] = data.draw(SURROGATES)
    return json.dumps(body).encode(), "surrogate"  # ensure_ascii writes the lone surrogate as \\udXXX


@pytest.mark.parametrize("family", FAMILIES, ids=lambda family: family.name)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_crafted_values_anywhere_are_a_400_in_the_family_format(app, family, data) -> None:
    """Nesting past what Python's recursion allows and lone surrogates gave 500s (and poisoned /metrics)."""
    raw, kind = _with_crafted(data.draw(st.one_of(st.just(family.served), family.bodies)), data)
    response = app.test_client().post(family.path, data=raw, content_type="application/json")
    _check(response, family)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert app.test_client().get("/metrics").status_code == 200


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(raw=st.binary(max_size=200), path=st.sampled_from([*BY_PATH, "/v1/messages/count_tokens"]))
def test_raw_bytes_never_5xx(app, raw, path) -> None:
    response = app.test_client().post(path, data=raw, content_type="application/json")
    _check(response, BY_PATH.get(path, FAMILIES[0]))
