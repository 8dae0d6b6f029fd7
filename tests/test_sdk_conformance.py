"""The official SDKs' high-level helpers against the gateway, asserting the parsed objects field by field.

The low-level wire format is tested elsewhere; these tests prove that what people actually call works:
``client.messages.stream()`` with ``get_final_message()``, the anthropic SDK's tool runner, and the openai
SDK's ``chat.completions.stream()`` with ``get_final_completion()``, ``parse()`` and ``pydantic_function_tool``.

The tool runner of anthropic 2.x threads its turns by default (a ``continue`` sends only the new messages);
the gateway answers those with ``thread_not_found``, which makes the SDK resend the whole history. The tests
check that round trip, not only the result.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pydantic
import pytest
import requests
from anthropic import beta_tool

from tests.conftest import GatewayServer
from tests.fake_cloudcode import FakeCloudCode, Reply

MODELS = ["claude-opus-4-6-thinking", "gemini-3-flash-agent"]
WEATHER_ARGS = {"city": "Paris"}
CALL_WEATHER = f"call tool get_weather with {json.dumps(WEATHER_ARGS)}"


@pytest.fixture
def oai(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="any-key", max_retries=0, timeout=30)


def generate_bodies(fake: FakeCloudCode) -> list[dict[str, Any]]:
    return [r.body["request"] for r in fake.generate_requests()]


def assert_usage(usage: anthropic.types.Usage) -> None:
    assert isinstance(usage.input_tokens, int) and usage.input_tokens > 0
    assert isinstance(usage.output_tokens, int) and usage.output_tokens > 0
    assert usage.cache_read_input_tokens == 0 and usage.cache_creation_input_tokens == 0


# -- anthropic: messages.stream ----------------------------------------------------------------------


def test_anthropic_stream_final_message_with_thinking(client: anthropic.Anthropic, fake: FakeCloudCode) -> None:
    fake.enqueue(Reply(thinking="Weighing the options.", text="The sky is blue.", chunks=3))
    with client.messages.stream(
        model="claude-opus-4-6-thinking", max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
        text = stream.get_final_text()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"thinking", "signature", "text"} <= set(kinds)
    assert final.id.startswith("msg_") and final.type == "message" and final.role == "assistant"
    assert final.model == "claude-opus-4-6-thinking"
    assert final.stop_reason == "end_turn" and final.stop_sequence is None
    thinking, answer = final.content
    assert isinstance(thinking, anthropic.types.ThinkingBlock)
    assert thinking.thinking == "Weighing the options." and thinking.signature
    assert isinstance(answer, anthropic.types.TextBlock)
    assert answer.text == "The sky is blue." == text
    assert_usage(final.usage)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_stream_tool_use(client: anthropic.Anthropic, fake: FakeCloudCode, model: str) -> None:
    tool = {"name": "get_weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    with client.messages.stream(model=model, max_tokens=500, tools=[tool],
                                messages=[{"role": "user", "content": CALL_WEATHER}]) as stream:
        json_snapshots = [event.snapshot for event in stream if event.type == "input_json"]
        final = stream.get_final_message()

    assert final.model == model and final.stop_reason == "tool_use"
    uses = [block for block in final.content if block.type == "tool_use"]
    assert len(uses) == 1
    assert isinstance(uses[0], anthropic.types.ToolUseBlock)
    assert uses[0].id.startswith("toolu_") and uses[0].name == "get_weather" and uses[0].input == WEATHER_ARGS
    assert json_snapshots and json_snapshots[-1] == WEATHER_ARGS
    assert_usage(final.usage)


# -- anthropic: the tool runner ----------------------------------------------------------------------


def _weather_tool(calls: list[str]) -> Any:
    @beta_tool
    def get_weather(city: str) -> str:
        """The current weather of a city."""
        calls.append(city)
        return f"sunny in {city}"

    return get_weather


def _assert_runner_turns(fake: FakeCloudCode, gateway_statuses: list[int]) -> None:
    """Turn 1, then a ``continue`` refused with thread_not_found, then the full history resent."""
    assert gateway_statuses == [200, 404, 200]
    first, second = generate_bodies(fake)
    assert [c["role"] for c in first["contents"]] == ["user"]
    assert [c["role"] for c in second["contents"]] == ["user", "model", "user"]
    assert second["contents"][1]["parts"][-1]["functionCall"]["args"] == WEATHER_ARGS
    response = second["contents"][2]["parts"][0]["functionResponse"]
    assert response["name"] == "get_weather" and response["response"] == {"result": "sunny in Paris"}
    assert first["tools"] == second["tools"]


@pytest.fixture
def statuses(gateway: GatewayServer) -> list[int]:
    """The status of every /v1/messages answer, in order."""
    seen: list[int] = []
    app = gateway.app.wsgi_app

    def record(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            if environ.get("PATH_INFO") == "/v1/messages":
                seen.append(int(status.split()[0]))
            return start_response(status, headers, *args)

        return app(environ, start)

    gateway.app.wsgi_app = record  # type: ignore[attr-defined]
    return seen


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_tool_runner(client: anthropic.Anthropic, fake: FakeCloudCode, statuses: list[int],
                               model: str) -> None:
    calls: list[str] = []
    runner = client.beta.messages.tool_runner(model=model, max_tokens=500, tools=[_weather_tool(calls)],
                                              messages=[{"role": "user", "content": CALL_WEATHER}])
    asked, answered = list(runner)

    assert calls == ["Paris"]
    assert asked.stop_reason == "tool_use" and asked.model == model
    use = next(block for block in asked.content if block.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", WEATHER_ARGS)
    assert answered.stop_reason == "end_turn"
    assert [block.type for block in answered.content] in (["text"], ["thinking", "text"])
    assert all(block.signature for block in answered.content if block.type == "thinking")
    assert answered.content[-1].text == "Tool result received: sunny in Paris"
    _assert_runner_turns(fake, statuses)


@pytest.mark.parametrize("model", MODELS)
def test_anthropic_streaming_tool_runner(client: anthropic.Anthropic, fake: FakeCloudCode, statuses: list[int],
                                         model: str) -> None:
    calls: list[str] = []
    runner = client.beta.messages.tool_runner(model=model, max_tokens=500, tools=[_weather_tool(calls)],
                                              messages=[{"role": "user", "content": CALL_WEATHER}], stream=True)
    finals = []
    for stream in runner:
        texts = [event.text for event in stream if event.type == "text"]
        finals.append((stream.get_final_message(), "".join(texts)))
    (asked, _), (answered, streamed_text) = finals

    assert calls == ["Paris"]
    assert asked.stop_reason == "tool_use"
    assert answered.stop_reason == "end_turn"
    assert answered.content[-1].text == streamed_text == "Tool result received: sunny in Paris"
    _assert_runner_turns(fake, statuses)


def test_anthropic_thread_continue_is_refused_as_not_found(gateway: GatewayServer) -> None:
    """What the SDK's recovery keys on: ``error.details.error_code`` of a 4xx answer."""
    response = requests.post(f"{gateway.url}/v1/messages", headers={"x-api-key": "k"}, timeout=10, json={
        "model": "gemini-3-flash-agent", "max_tokens": 10, "thread": {"type": "continue", "previous_message_id": "msg_1"},
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "not_found_error" and error["details"] == {"error_code": "thread_not_found"}


# -- openai: chat.completions.stream / parse ---------------------------------------------------------


class GetWeather(pydantic.BaseModel):
    """The current weather of a city."""

    city: str


class Forecast(pydantic.BaseModel):
    city: str
    celsius: int
    sunny: bool


@pytest.mark.parametrize("model", MODELS)
def test_openai_stream_final_completion(oai: openai.OpenAI, fake: FakeCloudCode, model: str) -> None:
    fake.enqueue(Reply.text("Hello from the gateway", chunks=3))
    with oai.chat.completions.stream(model=model, messages=[{"role": "user", "content": "hi"}],
                                     stream_options={"include_usage": True}) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()

    assert "".join(deltas) == "Hello from the gateway" and len(deltas) >= 2
    assert final.id.startswith("chatcmpl") and final.object == "chat.completion" and final.model == model
    assert isinstance(final.created, int) and final.created > 0
    (choice,) = final.choices
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.content == "Hello from the gateway"
    assert choice.message.parsed is None and not choice.message.tool_calls and choice.message.refusal is None
    usage = final.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens >= usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_openai_stream_pydantic_tool(oai: openai.OpenAI, model: str) -> None:
    tool = openai.pydantic_function_tool(GetWeather, name="get_weather")
    with oai.chat.completions.stream(model=model, tools=[tool],
                                     messages=[{"role": "user", "content": CALL_WEATHER}]) as stream:
        done = [event for event in stream if event.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()

    assert [(event.name, event.parsed_arguments) for event in done] == [("get_weather", GetWeather(city="Paris"))]
    (choice,) = final.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content in (None, "")
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGS
    assert call.function.parsed_arguments == GetWeather(city="Paris")


@pytest.mark.parametrize("model", MODELS)
def test_openai_parse_response_format(oai: openai.OpenAI, fake: FakeCloudCode, model: str) -> None:
    fake.enqueue(Reply.text(json.dumps({"city": "Paris", "celsius": 21, "sunny": True})))
    completion = oai.chat.completions.parse(model=model, response_format=Forecast,
                                            messages=[{"role": "user", "content": "Forecast for Paris"}])

    (choice,) = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.parsed == Forecast(city="Paris", celsius=21, sunny=True)
    config = generate_bodies(fake)[-1]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert set(config["responseSchema"]["properties"]) == {"city", "celsius", "sunny"}


@pytest.mark.parametrize("model", MODELS)
def test_openai_parse_tool_round_trip(oai: openai.OpenAI, fake: FakeCloudCode, model: str) -> None:
    tools = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    messages: list[Any] = [{"role": "user", "content": CALL_WEATHER}]
    asked = oai.chat.completions.parse(model=model, tools=tools, messages=messages)
    (call,) = asked.choices[0].message.tool_calls
    assert asked.choices[0].finish_reason == "tool_calls"
    assert call.function.parsed_arguments == GetWeather(city="Paris")

    messages += [asked.choices[0].message,
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny in Paris"}]
    answered = oai.chat.completions.parse(model=model, tools=tools, messages=messages)
    assert answered.choices[0].finish_reason == "stop"
    assert answered.choices[0].message.content == "Tool result received: sunny in Paris"
    assert not answered.choices[0].message.tool_calls
