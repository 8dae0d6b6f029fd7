"""Google's Gemini API through the google-genai SDK (3.3.0), pointed at the gateway as its users point it:
``http_options={"base_url": <gateway>, "api_version": "v1beta"}``.

Gemini models go through the passthrough lane, Claude models through the canonical model; the strict fake checks
what reaches the upstream either way (signatures, Claude's thinking rules, call pairing).
"""

from __future__ import annotations

import base64
import json

import pytest
import requests
from google import genai
from google.genai import errors, types

from tests.conftest import gateway_settings, serve
from tests.fake_cloudcode import Reply

GEMINI = ["gemini-3-flash-agent", "gemini-3.8-flash"]
CLAUDE = ["claude-sonnet-4-6", "claude-opus-4-6-thinking"]
MODELS = GEMINI + CLAUDE
# What each name reaches the upstream as.
UPSTREAM = {"gemini-3.8-flash": "gemini-3.8-flash-tiered"}
WEATHER = types.FunctionDeclaration(
    name="get_weather", description="The weather in a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string", "minLength": 1}},
                            "required": ["city"], "additionalProperties": False})
CALL_PROMPT = 'call tool get_weather with {"city": "Oslo"}'


def client_for(url: str, version: str = "v1beta", key: str = "any") -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": url, "api_version": version, "timeout": 30_000})


@pytest.fixture
def client(gateway) -> genai.Client:
    return client_for(gateway.url)


def tool_config(include_thoughts: bool | None = None) -> types.GenerateContentConfig:
    thinking = types.ThinkingConfig(include_thoughts=include_thoughts) if include_thoughts is not None else None
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])], thinking_config=thinking,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))


def accepted(fake) -> list[tuple[str, int]]:  # noqa: ANN001
    return [(r.body["model"], r.status) for r in fake.generate_requests()]


# -- generation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_generate_content(client, fake, model: str) -> None:
    answer = client.models.generate_content(model=model, contents="Hello there")

    assert answer.text == "Echo: Hello there"
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.usage_metadata.prompt_token_count > 0
    assert not any(part.thought for part in answer.candidates[0].content.parts)
    assert accepted(fake) == [(UPSTREAM.get(model, model), 200)]


@pytest.mark.parametrize("model", MODELS)
def test_generate_content_stream(client, fake, model: str) -> None:
    chunks = list(client.models.generate_content_stream(model=model, contents="Hello stream"))

    assert "".join(chunk.text or "" for chunk in chunks) == "Echo: Hello stream"
    assert len(chunks) > 1
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert [r.method for r in fake.generate_requests()] == ["streamGenerateContent"]


@pytest.mark.parametrize("model", MODELS)
def test_include_thoughts(client, model: str) -> None:
    """Thoughts come back only when asked for, as thought parts, before the answer."""
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True))
    answer = client.models.generate_content(model=model, contents="Why?", config=config)
    parts = answer.candidates[0].content.parts
    thinking = model != "claude-sonnet-4-6"  # the one model here that does not think
    assert [bool(part.thought) for part in parts] == ([True, False] if thinking else [False])
    if thinking:
        assert parts[0].text == "Thinking about: Why?"
    streamed = list(client.models.generate_content_stream(model=model, contents="Why?", config=config))
    thoughts = "".join(p.text for c in streamed for p in c.candidates[0].content.parts or [] if p.thought and p.text)
    assert thoughts == ("Thinking about: Why?" if thinking else "")
    assert "".join(c.text or "" for c in streamed) == "Echo: Why?"


def test_thinking_level_the_model_lacks_is_moved(client, fake) -> None:
    """Gemini 3.8 Flash refuses MINIMAL; the gateway sends the nearest level it takes (and keeps the spelling)."""
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_level="MINIMAL"))
    assert client.models.generate_content(model="gemini-3.8-flash", contents="Hi", config=config).text == "Echo: Hi"
    sent = fake.generate_requests()[0].body
    assert sent["model"] == "gemini-3.8-flash-tiered"
    assert sent["request"]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "LOW"}


def test_tier_in_the_model_name(client, fake) -> None:
    client.models.generate_content(model="gemini-3.8-flash-high", contents="Hi")
    config = fake.generate_requests()[0].body["request"]["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingLevel": "high"}


# -- function calling ------------------------------------------------------------------------------------------


def call_turn(client, model: str, config: types.GenerateContentConfig) -> tuple[list, types.FunctionCall]:  # noqa: ANN001
    history = [types.Content(role="user", parts=[types.Part(text=CALL_PROMPT)])]
    answer = client.models.generate_content(model=model, contents=history, config=config)
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    (call,) = answer.function_calls
    assert (call.name, call.args) == ("get_weather", {"city": "Oslo"})
    history.append(answer.candidates[0].content)
    return history, call


def result_turn(call: types.FunctionCall) -> types.Content:
    response = types.Part.from_function_response(name=call.name, response={"result": "snow, -3 C"})
    response.function_response.id = call.id
    return types.Content(role="user", parts=[response])


@pytest.mark.parametrize("model", [*MODELS, "gpt-oss-120b-medium"])
@pytest.mark.parametrize("include_thoughts", [True, False])
def test_function_call_round_trip(client, fake, model: str, include_thoughts: bool) -> None:
    """Automatic calling off: the SDK user runs the tool and sends the whole history back, as the SDK returned it.

    Gemini's signature goes back on the call (the fake refuses a call without one); Claude's call gets the
    gateway's own id, and a thinking Claude's signed thinking is back at the start of its turn (the fake checks
    the signature against the exact text), from the thought part or, when thoughts were not returned, from the
    gateway's memory. gpt-oss pairs calls by id like Claude and refuses any signature.
    """
    config = tool_config(include_thoughts)
    history, call = call_turn(client, model, config)
    signature = history[-1].parts[-1].thought_signature
    if model in GEMINI:
        assert signature  # Gemini signs the call part
    else:
        assert call.id.startswith("call_")
        assert not signature or model not in CLAUDE
    history.append(result_turn(call))

    answer = client.models.generate_content(model=model, contents=history, config=config)

    assert answer.text == "Tool result received: snow, -3 C"
    first, second = fake.generate_requests()
    assert [first.status, second.status] == [200, 200]
    model_turn = second.body["request"]["contents"][1]
    calls = [part for part in model_turn["parts"] if "functionCall" in part]
    if model in GEMINI:  # the bytes Gemini signed, as the SDK re-encodes them (URL-safe base64)
        assert base64.urlsafe_b64decode(calls[0]["thoughtSignature"]) == signature
    else:
        assert calls[0]["functionCall"]["id"] == call.id
    if model == "claude-opus-4-6-thinking":
        assert model_turn["parts"][0]["thought"] is True and model_turn["parts"][0]["thoughtSignature"]
        assert "[Continue]" not in json.dumps(second.body)  # the loop was not closed: its thinking was there


def test_claude_thinking_loop_without_thought_parts(client, fake) -> None:
    """As gemini-cli sends it: the thought parts of the model turn dropped. The gateway puts the signed thinking
    back, and the loop reaches a thinking Claude as it requires."""
    model = "claude-opus-4-6-thinking"
    config = tool_config(True)
    history, call = call_turn(client, model, config)
    history[-1] = types.Content(role="model", parts=[p for p in history[-1].parts if not p.thought])
    history.append(result_turn(call))

    stream = client.models.generate_content_stream(model=model, contents=history, config=config)
    assert "".join(chunk.text or "" for chunk in stream) == "Tool result received: snow, -3 C"
    second = fake.generate_requests()[1]
    assert second.status == 200
    first_part = second.body["request"]["contents"][1]["parts"][0]
    assert first_part["thought"] is True and first_part["text"] == f"Thinking about: {CALL_PROMPT}"


def test_streamed_call_and_parallel_calls(client, fake) -> None:
    """A streamed call turn, sent back with Gemini's signature on its first call only (Gemini signs no other):
    the gateway gives the second call the skip sentinel, which the upstream wants on every call."""
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]))
    config = tool_config()
    history = [types.Content(role="user", parts=[types.Part(text="two cities")])]
    parts = [p for chunk in client.models.generate_content_stream(model="gemini-3-flash-agent", contents=history,
                                                                  config=config)
             for p in chunk.candidates[0].content.parts or []]
    calls = [p for p in parts if p.function_call]
    assert [c.function_call.args["city"] for c in calls] == ["Oslo", "Rome"]
    assert calls[0].thought_signature and not calls[1].thought_signature
    history.append(types.Content(role="model", parts=calls))
    history.append(types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"result": city}) for city in ("sun", "rain")]))

    answer = client.models.generate_content(model="gemini-3-flash-agent", contents=history, config=config)

    assert answer.text == "Tool result received: sun"
    sent = fake.generate_requests()[1].body["request"]["contents"][1]["parts"]
    assert sent[1]["thoughtSignature"] == "skip_thought_signature_validator"


# -- counting, models --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gemini-3-flash-agent", "claude-sonnet-4-6"])
def test_count_tokens(client, fake, model: str) -> None:
    """The upstream's own count: of the body's request part alone (the upstream refuses the envelope's fields)."""
    counted = client.models.count_tokens(model=model, contents="hello " * 40)
    assert counted.total_tokens == 61  # the fake's count: a token per four characters, plus one
    (call,) = [r for r in fake.requests if r.method == "countTokens"]
    assert set(call.body) == {"request"} and call.status == 200


def test_models_list_and_get(client, fake) -> None:
    listed = {model.name: model for model in client.models.list()}
    assert {"models/gemini-3-flash-agent", "models/claude-opus-4-6-thinking",
            "models/gemini-3.8-flash-tiered"} <= set(listed)
    flash = listed["models/gemini-3-flash-agent"]
    assert (flash.input_token_limit, flash.output_token_limit) == (1_048_576, 65_536)
    assert "generateContent" in flash.supported_actions and flash.thinking is True
    # Google's public names (and models/ in front) resolve to what the upstream serves under them.
    assert client.models.get(model="models/gemini-3.8-flash").name == "models/gemini-3.8-flash-tiered"
    assert client.models.get(model="gemini-flash-latest").name == "models/gemini-3.8-flash-tiered"
    assert client.models.get(model="claude-opus-4-6-thinking").input_token_limit == 200_000
    with pytest.raises(errors.ClientError) as info:
        client.models.get(model="gemini-embedding-001")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")


def test_v1_paths(gateway, fake) -> None:
    """google-genai without ``api_version`` calls /v1/models/{model}:{method}; /v1/models itself stays OpenAI's."""
    client = genai.Client(api_key="any", http_options={"base_url": gateway.url, "timeout": 30_000})
    assert client.models.generate_content(model="gemini-3-flash-agent", contents="Hi").text == "Echo: Hi"
    assert [c.text for c in client.models.generate_content_stream(model="claude-sonnet-4-6", contents="Hi")]
    assert client.models.count_tokens(model="gemini-3-flash-agent", contents="Hi").total_tokens > 0
    listing = requests.get(f"{gateway.url}/v1/models", timeout=5).json()
    assert listing["object"] == "list"


# -- errors ------------------------------------------------------------------------------------------------------


def test_unknown_model(client) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-0-nothing", contents="Hi")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    assert "GET /v1beta/models" in info.value.message


def test_upstream_refusal_is_relayed(client, fake) -> None:
    """The upstream's own 400 (here: a temperature out of range), in Google's shape with its message."""
    config = types.GenerateContentConfig(temperature=5)
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-3-flash-agent", contents="Hi", config=config)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "temperature value of 5" in info.value.message


def test_bad_request_is_caught_before_the_upstream(client, fake) -> None:
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="claude-sonnet-4-6", contents="Hi",
                                       config=types.GenerateContentConfig(candidate_count=2))
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "candidate_count" in info.value.message
    assert fake.generate_requests() == []


def test_rate_limit(client, fake) -> None:
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h0m0s"))
    with pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model="gemini-3-flash-agent", contents="Hi")
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
    (retry,) = info.value.details["error"]["details"]
    assert retry["@type"] == "type.googleapis.com/google.rpc.RetryInfo" and float(retry["retryDelay"][:-1]) > 3500


def test_overloaded_is_a_503(client, fake) -> None:
    fake.enqueue(*[Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED")] * 6)
    with pytest.raises(errors.ServerError) as info:
        client.models.generate_content(model="claude-sonnet-4-6", contents="Hi")
    assert info.value.code in (502, 503) and info.value.status == "UNAVAILABLE"


@pytest.mark.parametrize("model", ["gemini-3-flash-agent", "claude-sonnet-4-6"])
def test_failure_mid_stream_raises(client, fake, model: str) -> None:
    """After the stream started, an upstream failure is Google's error object, which the SDK raises."""
    fake.enqueue(Reply(text="this answer will be cut off somewhere", chunks=4, drop_after=2))
    received = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in client.models.generate_content_stream(model=model, contents="Hi"):
            received.append(chunk.text)
    assert received and info.value.code == 502
    assert "middle of the answer" in info.value.message


def test_keys(fake, accounts_file) -> None:
    """With API keys: x-goog-api-key (the SDKs), ?key= (older clients) and the usual headers; a wrong one is a 401
    in Google's shape."""
    url, _, server = serve(gateway_settings(fake, accounts_file, api_keys=frozenset({"sk-right"})))
    try:
        right, wrong = client_for(url, key="sk-right"), client_for(url, key="sk-wrong")  # kept: a dropped one closes
        assert right.models.generate_content(model="claude-sonnet-4-6", contents="Hi").text
        with pytest.raises(errors.ClientError) as info:
            wrong.models.generate_content(model="claude-sonnet-4-6", contents="Hi")
        assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")
        body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        path = f"{url}/v1beta/models/gemini-3-flash-agent:generateContent"
        assert requests.post(f"{path}?key=sk-right", json=body, timeout=10).status_code == 200
        assert requests.post(f"{path}?key=sk-wrong", json=body, timeout=10).status_code == 401
        assert requests.post(path, json=body, headers={"Authorization": "Bearer sk-right"}, timeout=10).ok
        # ?key= is the Gemini API's only: elsewhere a key in the URL would end up in logs and histories.
        chat = {"model": "gemini-3-flash-agent", "messages": [{"role": "user", "content": "Hi"}]}
        assert requests.post(f"{url}/v1/chat/completions?key=sk-right", json=chat, timeout=10).status_code == 401
    finally:
        server.shutdown()
