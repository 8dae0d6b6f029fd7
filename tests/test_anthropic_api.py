"""POST /v1/messages end to end: the official anthropic SDK -> the gateway -> the fake Cloud Code server."""

from __future__ import annotations

import json

import anthropic
import pytest
import requests

from tests.conftest import PNG
from tests.fake_cloudcode import Reply

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 1}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def last_generate(fake) -> dict:
    return fake.generate_requests()[-1].body


def sse_events(response: requests.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


# -- plain answers ----------------------------------------------------------------------------------


def test_plain_text_non_streaming(client: anthropic.Anthropic, fake) -> None:
    fake.enqueue(Reply.text("Hello from upstream", chunks=3))
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=200, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello from upstream"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    body = last_generate(fake)
    assert body["model"] == "claude-sonnet-4-6"
    assert body["request"]["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]


def test_streaming_event_sequence_is_exact(gateway, fake) -> None:
    fake.enqueue(Reply.text("one two three four", chunks=4))
    response = requests.post(
        f"{gateway.url}/v1/messages",
        json={"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
              "messages": [{"role": "user", "content": "count"}]},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        stream=True,
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[1] == "ping"
    assert names[2] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(n == "content_block_delta" for n in names[3:-3])
    assert all(name == data["type"] for name, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and "input_tokens" in start["usage"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "one two three four"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn" and delta["usage"]["output_tokens"] > 0


def test_sdk_stream_helper_and_final_message(client, fake) -> None:
    fake.enqueue(Reply.text("streamed words arrive", chunks=3))
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "streamed words arrive"
    assert len(pieces) >= 2
    assert final.content[0].text == "streamed words arrive"
    assert final.stop_reason == "end_turn"


def test_system_prompts_strings_blocks_and_mid_conversation(client, fake) -> None:
    client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "system", "content": "Reminder: be kind."},
            {"role": "user", "content": [{"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}]},
        ],
    )
    inner = last_generate(fake)["request"]
    assert [p["text"] for p in inner["systemInstruction"]["parts"]] == ["You are terse.", "Reminder: be kind."]
    assert [c["role"] for c in inner["contents"]] == ["user", "model", "user"]
    assert "cache_control" not in json.dumps(inner)


def test_sampling_parameters_reach_upstream(client, fake) -> None:
    client.messages.create(
        model="gemini-3-flash-agent", max_tokens=300, stop_sequences=["STOP"],
        messages=[{"role": "user", "content": "x"}],
        # The SDK no longer has parameters for these; clients still send them.
        extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 40},
    )
    config = last_generate(fake)["request"]["generationConfig"]
    assert config == {"temperature": 0.3, "topP": 0.9, "topK": 40, "stopSequences": ["STOP"], "maxOutputTokens": 300}


def test_max_tokens_finish_and_cached_usage(client, fake) -> None:
    fake.enqueue(Reply(text="truncated", finish="MAX_TOKENS",
                       usage={"promptTokenCount": 100, "candidatesTokenCount": 7, "cachedContentTokenCount": 60}))
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=7, messages=[{"role": "user", "content": "x"}])
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens == 40
    assert message.usage.cache_read_input_tokens == 60
    assert message.usage.output_tokens == 7


# -- images -----------------------------------------------------------------------------------------


def test_base64_image(client, fake) -> None:
    client.messages.create(
        model="gemini-3-flash-agent", max_tokens=100,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "what is this?"},
        ]}],
    )
    parts = last_generate(fake)["request"]["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


def test_url_image_is_fetched_and_inlined(client, fake, image_server) -> None:
    client.messages.create(
        model="gemini-3-flash-agent", max_tokens=100,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": f"{image_server}/cat.png"}},
            {"type": "text", "text": "describe"},
        ]}],
    )
    part = last_generate(fake)["request"]["contents"][0]["parts"][0]
    assert part == {"inlineData": {"mimeType": "image/png", "data": PNG}}


def test_unreachable_image_url_is_a_400(client) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model="gemini-3-flash-agent", max_tokens=100,
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:9/nothing.png"}}]}],
        )
    assert info.value.body["error"]["type"] == "invalid_request_error"


# -- tools ------------------------------------------------------------------------------------------


def test_tool_use_non_streaming_and_round_trip(client, fake) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"})]))
    first = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=300, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.input == {"city": "Paris"}
    assert call.id.startswith("toolu_")
    declaration = last_generate(fake)["request"]["tools"][0]["functionDeclarations"][0]
    assert "additionalProperties" not in json.dumps(declaration) and "$schema" not in json.dumps(declaration)

    fake.enqueue(Reply.text("It is sunny in Paris."))
    second = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=300, tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                          "content": [{"type": "text", "text": "sunny, 21C"}]}]},
        ],
    )
    assert second.content[0].text == "It is sunny in Paris."
    contents = last_generate(fake)["request"]["contents"]
    assert contents[-1]["parts"][0]["functionResponse"] == {
        "id": call.id, "name": "get_weather", "response": {"result": "sunny, 21C"}}


def test_parallel_tool_calls_stream_as_consecutive_blocks(gateway, fake) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]))
    response = requests.post(
        f"{gateway.url}/v1/messages?beta=true",
        json={"model": "gemini-3-flash-agent", "max_tokens": 100, "stream": True, "tools": [WEATHER_TOOL],
              "messages": [{"role": "user", "content": "Paris and Rome?"}]},
        stream=True, timeout=10,
    )
    events = sse_events(response)
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    tool_blocks = [b for b in starts if b["type"] == "tool_use"]
    assert [b["name"] for b in tool_blocks] == ["get_weather", "get_weather"]
    assert len({b["id"] for b in tool_blocks}) == 2
    partials = [json.loads(d["delta"]["partial_json"]) for n, d in events
                if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert partials == [{"city": "Paris"}, {"city": "Rome"}]
    assert [d for n, d in events if n == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"


def test_tool_choice_is_mapped(client, fake) -> None:
    client.messages.create(
        model="gemini-3-flash-agent", max_tokens=100, tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "x"}],
    )
    assert last_generate(fake)["request"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


def test_tool_result_error_flag(client, fake) -> None:
    client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_x", "name": "get_weather",
                                               "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "is_error": True,
                                          "content": "service down"}]},
        ],
    )
    response = last_generate(fake)["request"]["contents"][-1]["parts"][0]["functionResponse"]
    assert response["response"] == {"error": "service down"}


# -- thinking ---------------------------------------------------------------------------------------


def test_claude_thinking_tool_loop_replays_signatures(client, fake) -> None:
    """Three turns with a thinking Claude model; the fake verifies each replayed signature exactly."""
    fake.enqueue(Reply(thinking="I should call the weather tool.", tool_calls=[("get_weather", {"city": "Oslo"})]))
    kwargs = dict(model="claude-opus-4-6-thinking", max_tokens=4096, tools=[WEATHER_TOOL],
                  thinking={"type": "enabled", "budget_tokens": 2048})
    history = [{"role": "user", "content": "Weather in Oslo?"}]
    with client.messages.stream(messages=history, **kwargs) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == "I should call the weather tool."
    assert len(first.content[0].signature) >= 50
    assert first.stop_reason == "tool_use"

    history += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "snow"}]},
    ]
    fake.enqueue(Reply(thinking="Snow it is.", text="It is snowing in Oslo."))
    second = client.messages.create(messages=history, **kwargs)
    assert second.content[-1].text == "It is snowing in Oslo."
    replayed = last_generate(fake)["request"]["contents"][1]["parts"][0]
    assert replayed["thought"] is True and replayed["thoughtSignature"] == first.content[0].signature

    # A tampered signature is the upstream's 400, passed on in Anthropic's format.
    history[1]["content"][0]["thinking"] = "something else"
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(messages=history, **kwargs)
    assert info.value.body["type"] == "error"
    assert "signature" in info.value.body["error"]["message"]


def test_gemini_thinking_tool_loop(client, fake) -> None:
    fake.enqueue(Reply(thinking="Need weather.", tool_calls=[("get_weather", {"city": "Lima"})]))
    kwargs = dict(model="gemini-3-flash-agent", max_tokens=4096, tools=[WEATHER_TOOL],
                  thinking={"type": "enabled", "budget_tokens": 2048})
    first = client.messages.create(messages=[{"role": "user", "content": "Lima?"}], **kwargs)
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature  # Gemini's call signature, surfaced on the thinking block
    config = last_generate(fake)["request"]["generationConfig"]["thinkingConfig"]
    assert config == {"includeThoughts": True, "thinkingBudget": 2048}

    fake.enqueue(Reply.text("Warm in Lima."))
    # Clients commonly drop thinking blocks: the gateway restores the call's signature itself.
    second = client.messages.create(
        messages=[
            {"role": "user", "content": "Lima?"},
            {"role": "assistant", "content": [first.content[1].model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "25C"}]},
        ],
        **kwargs,
    )
    assert second.content[-1].text == "Warm in Lima."
    call_part = last_generate(fake)["request"]["contents"][1]["parts"][0]
    assert call_part["thoughtSignature"] == first.content[0].signature


def test_switching_from_gemini_to_claude_mid_conversation(client, fake) -> None:
    """Gemini signatures must never reach Claude; the open tool loop is closed instead of failing."""
    fake.enqueue(Reply(thinking="Gemini thinks.", tool_calls=[("get_weather", {"city": "Bern"})]))
    first = client.messages.create(
        model="gemini-3-flash-agent", max_tokens=4096, tools=[WEATHER_TOOL], thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Bern?"}],
    )
    fake.enqueue(Reply(thinking="Claude now.", text="Cold in Bern."))
    second = client.messages.create(
        model="claude-opus-4-6-thinking", max_tokens=8000, tools=[WEATHER_TOOL],
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {"role": "user", "content": "Bern?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "2C"}]},
        ],
    )
    assert second.content[-1].text == "Cold in Bern."
    sent = json.dumps(last_generate(fake))
    assert first.content[0].signature not in sent


def test_claude_code_style_request(gateway, fake) -> None:
    """What Claude Code 2.x really sends: ?beta=true, adaptive thinking, extra keys everywhere."""
    fake.enqueue(Reply(thinking="ok", text="Done."))
    body = {
        "model": "claude-opus-4-6-thinking",
        "max_tokens": 128000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "medium"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": json.dumps({"device_id": "abc", "session_id": "s-1"})},
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be careful."},
        ],
        "tools": [
            {**WEATHER_TOOL, "cache_control": {"type": "ephemeral"}},
            {"name": "Bash", "description": "run", "defer_loading": True,
             "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                         {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "mid-conversation system note"},
        ],
    }
    headers = {
        "X-Api-Key": "sk-ant-whatever",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
        "Accept": "application/json",
    }
    response = requests.post(f"{gateway.url}/v1/messages?beta=true", json=body, headers=headers, stream=True, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"
    sent = last_generate(fake)
    config = sent["request"]["generationConfig"]
    assert config["maxOutputTokens"] == 64000
    assert config["thinkingConfig"]["thinking_budget"] == 8192
    assert "mid-conversation system note" in json.dumps(sent["request"]["systemInstruction"])


# -- count_tokens -----------------------------------------------------------------------------------


def test_count_tokens(client, fake) -> None:
    result = client.messages.count_tokens(
        model="claude-sonnet-4-6", system="sys", tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "count these words please"}],
    )
    assert result.input_tokens > 0
    recorded = [r for r in fake.requests if r.method == "countTokens"][-1]
    assert recorded.body["request"]["contents"][0]["parts"] == [{"text": "count these words please"}]
