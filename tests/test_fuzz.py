"""Thousands of generated bodies, valid and not, thrown at both API families.

Whatever arrives, the answer is never a 5xx, and every error has the family's shape. The gateway runs
in Flask's test client here (the fake upstream is still a real server), so the examples are cheap.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from gateway.families import REGISTRY
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

responses_item = st.one_of(
    openai_message,
    st.fixed_dictionaries({"type": st.sampled_from(["message", "reasoning", "function_call", "function_call_output",
                                                    "custom_tool_call", "custom_tool_call_output", "local_shell_call",
                                                    "item_reference", "compaction", "web_search_call"])}, optional={
        "role": maybe(st.sampled_from(["user", "assistant", "developer"])),
        "content": st.one_of(st.text(max_size=10), st.lists(st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]), "text": maybe(st.text(max_size=5))}),
            st.fixed_dictionaries({"type": st.just("input_image"), "image_url": maybe(st.sampled_from(
                ["data:image/png;base64,aGVsbG8=", "data:bad", "ftp://x"]))}), json_values), max_size=2), json_values),
        "call_id": maybe(st.just("call_1")), "name": maybe(st.just("f")),
        "arguments": maybe(st.sampled_from(['{"a":1}', "nope"])), "input": json_values,
        "output": st.one_of(st.text(max_size=5), json_values), "encrypted_content": json_values,
        "action": json_values, "id": json_values}),
    json_values)
responses_body = st.fixed_dictionaries(
    {"model": maybe(st.sampled_from(MODELS)), "input": st.one_of(st.text(max_size=20), st.lists(responses_item, max_size=4),
                                                                 json_values)},
    optional={
        "instructions": maybe(st.text(max_size=10)),
        "tools": maybe(st.lists(st.one_of(
            st.fixed_dictionaries({"type": st.sampled_from(["function", "custom", "local_shell", "namespace",
                                                            "web_search", "file_search"]),
                                   "name": maybe(st.just("f")), "tools": json_values, "format": json_values,
                                   "parameters": maybe(st.just({"type": "object", "properties": {"a": {"type": "string"}}}))}),
            json_values), max_size=2)),
        "tool_choice": st.one_of(st.sampled_from(["none", "auto", "required"]), json_values),
        "text": maybe(st.fixed_dictionaries({"format": maybe(st.fixed_dictionaries({"type": st.sampled_from(
            ["text", "json_object", "json_schema"]), "schema": json_values}))})),
        "reasoning": maybe(st.fixed_dictionaries({"effort": maybe(st.sampled_from(["low", "high", "ultra"])),
                                                  "summary": maybe(st.sampled_from(["auto", "never"]))})),
        "include": maybe(st.lists(st.sampled_from(["reasoning.encrypted_content", "x"]), max_size=2)),
        "previous_response_id": maybe(st.just("resp_nope")),
        "store": maybe(st.booleans()),
        "stream": maybe(st.booleans()),
        "max_output_tokens": maybe(st.integers(-5, 200000)),
        "parallel_tool_calls": maybe(st.booleans()),
    },
)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    fake = FakeCloudCode().start()
    fake.add_account("alice@example.com", refresh_token=REFRESH_TOKEN, project_id="proj-alice")
    path = write_accounts(tmp_path_factory.mktemp("fuzz") / "accounts.json", [
        {"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"}])
    application = create_app(gateway_settings(fake, path, log_level="ERROR", empty_retries=0))
    yield application
    fake.stop()


def _check(response, family: str) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    data = response.get_data(as_text=True)
    if response.status_code >= 400:
        body = json.loads(data)
        if family == "anthropic":
            assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}
        else:
            assert set(body["error"]) >= {"message", "type", "param", "code"}
    elif response.mimetype == "text/event-stream":
        assert data.startswith(("event: ", "data: ", ":"))
    else:
        body = json.loads(data)
        expected = {"anthropic": ("type", "message"), "openai": ("object", "chat.completion"),
                    "responses": ("object", "response")}[family]
        assert body.get(expected[0]) == expected[1]


FUZZ = settings(max_examples=1200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(body=st.one_of(anthropic_body, json_values))
def test_anthropic_family_never_5xx(app, body) -> None:
    _check(app.test_client().post("/v1/messages", json=body), "anthropic")


@FUZZ
@given(body=st.one_of(openai_body, json_values))
def test_openai_family_never_5xx(app, body) -> None:
    _check(app.test_client().post("/v1/chat/completions", json=body), "openai")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=st.one_of(responses_body, json_values))
def test_responses_family_never_5xx(app, body) -> None:
    _check(app.test_client().post("/v1/responses", json=body), "responses")


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/messages", "/v1/chat/completions",
                                                          "/v1/messages/count_tokens", "/v1/responses"]))
def test_raw_bytes_never_5xx(app, raw, path) -> None:
    response = app.test_client().post(path, data=raw, content_type="application/json")
    _check(response, REGISTRY.for_path(path).name)
