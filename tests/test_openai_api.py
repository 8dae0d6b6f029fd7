"""POST /v1/chat/completions end to end: the official openai SDK -> the gateway -> the fake Cloud Code server.

The fake verifies thinking signatures strictly, so a tool round trip that succeeds proves the gateway
replayed what the OpenAI client never saw.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import openai
import pytest
import requests

from tests.conftest import gateway_settings, serve
from tests.fake_cloudcode import SENTINEL_SIGNATURE, Reply
from tests.conftest import PNG

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=30)


def last_generate(fake) -> dict:
    return fake.generate_requests()[-1].body["request"]


def post(gateway, body: dict, **kwargs: Any) -> requests.Response:
    return requests.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=10,
                         headers={"Authorization": "Bearer x"}, **kwargs)


def chunks(response: requests.Response) -> list[Any]:
    """Every ``data:`` payload of a stream, JSON-decoded except the final ``[DONE]``."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    out: list[Any] = []
    for line in response.iter_lines(decode_unicode=True):
        assert not line.startswith("event:")
        if line.startswith("data: "):
            out.append("[DONE]" if line == "data: [DONE]" else json.loads(line[6:]))
    return out


def deltas(stream: list[Any]) -> list[dict]:
    return [c["choices"][0]["delta"] for c in stream if c != "[DONE]" and c["choices"]]


def create(oai: openai.OpenAI, stream: bool, **kwargs: Any):  # noqa: ANN201 - a ChatCompletion either way
    """The answer as a ChatCompletion, asked for streamed (through the SDK's helper) or not."""
    if not stream:
        return oai.chat.completions.create(**kwargs)
    with oai.chat.completions.stream(**kwargs) as events:
        return events.get_final_completion()


# -- plain answers ----------------------------------------------------------------------------------


def test_plain_text_non_streaming(oai, fake) -> None:
    fake.enqueue(Reply.text("Hello from upstream", chunks=3))
    completion = oai.chat.completions.create(model="claude-sonnet-4-6", messages=HELLO)
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == "claude-sonnet-4-6" and isinstance(completion.created, int)
    choice = completion.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.content == "Hello from upstream"
    assert choice.message.refusal is None and choice.message.tool_calls is None
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert last_generate(fake)["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]


def test_streaming_chunk_sequence_is_exact(gateway, fake) -> None:
    fake.enqueue(Reply.text("one two three four", chunks=4))
    stream = chunks(post(gateway, {"model": "gemini-3-flash-agent", "stream": True, "messages": HELLO}, stream=True))
    assert stream[-1] == "[DONE]"
    body = stream[:-1]
    assert {c["id"] for c in body} == {body[0]["id"]} and body[0]["id"].startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gemini-3-flash-agent" for c in body)
    assert all("usage" not in c for c in body)
    assert body[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    middle = deltas(body)[1:-1]
    assert all(list(d) == ["content"] for d in middle)
    assert "".join(d["content"] for d in middle) == "one two three four"
    last = body[-1]["choices"][0]
    assert last["delta"] == {} and last["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in body[:-1])


def test_include_usage_sends_usage_once_in_a_final_empty_choices_chunk(gateway, fake) -> None:
    fake.enqueue(Reply(text="counted", usage={"promptTokenCount": 40, "candidatesTokenCount": 5,
                                              "thoughtsTokenCount": 7, "cachedContentTokenCount": 30}))
    stream = chunks(post(gateway, {"model": "gemini-3-flash-agent", "stream": True, "messages": HELLO,
                                   "stream_options": {"include_usage": True}}, stream=True))
    body = stream[:-1]
    assert all(c["usage"] is None for c in body[:-1])
    assert body[-1]["choices"] == []
    assert body[-1]["usage"] == {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52,
                                 "prompt_tokens_details": {"cached_tokens": 30},
                                 "completion_tokens_details": {"reasoning_tokens": 7}}
    assert body[-2]["choices"][0]["finish_reason"] == "stop"


def test_sdk_stream_helper_accumulates_cleanly(oai, fake) -> None:
    fake.enqueue(Reply.text("streamed words arrive", chunks=3))
    with oai.chat.completions.stream(model="claude-sonnet-4-6", messages=HELLO,
                                     stream_options={"include_usage": True}) as stream:
        pieces = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(pieces) == "streamed words arrive" and len(pieces) >= 2
    message = final.choices[0].message
    assert message.role == "assistant"  # a repeated role would accumulate to "assistantassistant"
    assert message.content == "streamed words arrive" and final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_sdk_plain_stream_iteration(oai, fake) -> None:
    fake.enqueue(Reply.text("abc def", chunks=2))
    stream = oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, stream=True)
    received = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in received) == "abc def"
    assert received[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_multi_turn_history(oai, fake, stream) -> None:
    fake.enqueue(Reply.text("Third answer"))
    completion = create(oai, stream, model="claude-sonnet-4-6", messages=[
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "second answer"}], "refusal": None},
        {"role": "user", "content": "third", "name": "bob"},
    ])
    assert completion.choices[0].message.content == "Third answer"
    assert last_generate(fake)["contents"] == [
        {"role": "user", "parts": [{"text": "first"}]},
        {"role": "model", "parts": [{"text": "first answer"}]},
        {"role": "user", "parts": [{"text": "second"}]},
        {"role": "model", "parts": [{"text": "second answer"}]},
        {"role": "user", "parts": [{"text": "third"}]},
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_system_and_developer_messages_are_hoisted_in_order(oai, fake, stream) -> None:
    create(oai, stream, model="gemini-3-flash-agent", messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "developer", "content": [{"type": "text", "text": "Reminder: be kind."}]},
        {"role": "user", "content": "second"},
    ])
    inner = last_generate(fake)
    assert [p["text"] for p in inner["systemInstruction"]["parts"]] == ["You are terse.", "Reminder: be kind."]
    assert [c["role"] for c in inner["contents"]] == ["user", "model", "user"]


def test_lone_system_message_becomes_the_question(oai, fake) -> None:
    oai.chat.completions.create(model="gemini-3-flash-agent", messages=[{"role": "system", "content": "Say hi"}])
    inner = last_generate(fake)
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "Say hi"}]}]
    assert "systemInstruction" not in inner


def test_sampling_parameters_reach_upstream(oai, fake) -> None:
    oai.chat.completions.create(
        model="gemini-3-flash-agent", messages=HELLO, max_tokens=999, max_completion_tokens=300, temperature=0.3,
        top_p=0.9, stop="STOP", seed=7, user="u-1", presence_penalty=0.1, parallel_tool_calls=True,
        tools=[WEATHER], extra_body={"top_k": 40},
    )
    config = last_generate(fake)["generationConfig"]
    assert config == {"temperature": 0.3, "topP": 0.9, "topK": 40, "stopSequences": ["STOP"], "maxOutputTokens": 300}
    oai.chat.completions.create(model="claude-sonnet-4-6", messages=HELLO, max_tokens=100000, stop=["a", "b"])
    config = last_generate(fake)["generationConfig"]
    assert config["stopSequences"] == ["a", "b"] and config["maxOutputTokens"] == 64000


def test_prompt_cache_key_then_user_seed_the_session(oai, fake) -> None:
    def session(**kwargs: Any) -> str:
        oai.chat.completions.create(model="gemini-3-flash-agent", **kwargs)
        return last_generate(fake)["sessionId"]

    keyed = session(messages=[{"role": "user", "content": "a"}], prompt_cache_key="conv-1", user="someone")
    assert keyed == session(messages=[{"role": "user", "content": "b"}], prompt_cache_key="conv-1")
    assert keyed == hashlib.sha256(b"conv-1").hexdigest()[:32]
    assert session(messages=[{"role": "user", "content": "a"}], user="u-9") == hashlib.sha256(b"u-9").hexdigest()[:32]


@pytest.mark.parametrize(
    ("finish", "expected"), [("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("STOP", "stop")]
)
def test_finish_reasons(oai, fake, finish, expected) -> None:
    fake.enqueue(Reply(text="cut", finish=finish))
    completion = oai.chat.completions.create(model="claude-sonnet-4-6", messages=HELLO)
    assert completion.choices[0].finish_reason == expected


# -- images and other media -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_data_url_image(oai, fake, stream) -> None:
    create(oai, stream, model="gemini-3-flash-agent", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
    ]}])
    assert last_generate(fake)["contents"][0]["parts"] == [
        {"text": "what is this?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]


@pytest.mark.parametrize("stream", [False, True])
def test_http_image_url_is_fetched_and_inlined(oai, fake, image_server, stream) -> None:
    create(oai, stream, model="claude-sonnet-4-6", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"{image_server}/cat.png"}},
        {"type": "text", "text": "describe"},
    ]}])
    assert last_generate(fake)["contents"][0]["parts"][0] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


def test_unreachable_image_url_is_a_400(oai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gemini-3-flash-agent", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/nothing.png"}}]}])
    assert info.value.type == "invalid_request_error"


def test_audio_and_file_parts_are_sent_inline(oai, fake) -> None:
    wav = base64.b64encode(b"RIFF....WAVE").decode()
    oai.chat.completions.create(model="gemini-3-flash-agent", messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "file", "file": {"file_data": PNG, "filename": "page.png"}},
    ]}])
    assert last_generate(fake)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": wav}}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]


# -- tools ------------------------------------------------------------------------------------------


def replay(message) -> dict:  # noqa: ANN001 - what OpenAI clients send back: standard fields only
    return {"role": "assistant", "content": message.content,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments}}
                           for c in message.tool_calls]}


@pytest.mark.parametrize("stream", [False, True])
def test_claude_thinking_tool_round_trip(oai, fake, stream) -> None:
    """The client drops reasoning; the gateway restores the signed thinking the strict fake demands."""
    fake.enqueue(Reply(thinking="I should call the weather tool.", tool_calls=[("get_weather", {"city": "Oslo"})]))
    ask = dict(model="claude-opus-4-6-thinking", tools=[WEATHER], reasoning_effort="low")
    history: list[dict] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = create(oai, stream, messages=history, **ask)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.reasoning_content == "I should call the weather tool."
    # null for a tool-only turn; a stream's first chunk carries content "" (OpenAI's own shape).
    assert choice.message.content == ("" if stream else None)
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and len(call.id) == 29
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    thinking = last_generate(fake)["generationConfig"]["thinkingConfig"]
    assert thinking == {"include_thoughts": True, "thinking_budget": 1024}

    history += [replay(choice.message), {"role": "tool", "tool_call_id": call.id, "content": "snow, -3C"}]
    fake.enqueue(Reply(thinking="Snow it is.", text="It is snowing in Oslo."))
    second = create(oai, stream, messages=history, **ask)
    assert second.choices[0].message.content == "It is snowing in Oslo."
    contents = last_generate(fake)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    thought, sent_call = contents[1]["parts"]
    assert thought["thought"] is True and thought["text"] == "I should call the weather tool."
    assert sent_call["functionCall"] == {"id": call.id, "name": "get_weather", "args": {"city": "Oslo"}}
    assert contents[2]["parts"] == [{"functionResponse": {"id": call.id, "name": "get_weather",
                                                          "response": {"result": "snow, -3C"}}}]


def test_claude_thinking_is_not_restored_for_an_unknown_call_id(oai, fake) -> None:
    """Another conversation's id cannot be guessed; a loop without thinking is closed, not failed."""
    fake.enqueue(Reply(thinking="hmm", tool_calls=[("get_weather", {"city": "Oslo"})]))
    first = oai.chat.completions.create(model="claude-opus-4-6-thinking", tools=[WEATHER],
                                        messages=[{"role": "user", "content": "Oslo?"}])
    forged = replay(first.choices[0].message)
    forged["tool_calls"][0]["id"] = "call_someoneelsesid0000000000"
    oai.chat.completions.create(model="claude-opus-4-6-thinking", tools=[WEATHER], messages=[
        {"role": "user", "content": "Oslo?"}, forged,
        {"role": "tool", "tool_call_id": "call_someoneelsesid0000000000", "content": "snow"},
    ])
    contents = last_generate(fake)["contents"]
    assert not any(p.get("thought") for c in contents for p in c["parts"])
    assert contents[-1] == {"role": "user", "parts": [{"text": "[Continue]"}]}


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_tool_round_trip_restores_the_call_signature(oai, fake, stream) -> None:
    fake.enqueue(Reply(thinking="Need weather.", tool_calls=[("get_weather", {"city": "Lima"})]))
    ask = dict(model="gemini-3-flash-agent", tools=[WEATHER], reasoning_effort="low")
    first = create(oai, stream, messages=[{"role": "user", "content": "Lima?"}], **ask)
    thinking = last_generate(fake)["generationConfig"]["thinkingConfig"]
    assert thinking == {"includeThoughts": True, "thinkingLevel": "low"}
    message = first.choices[0].message
    assert message.reasoning_content == "Need weather."
    call = message.tool_calls[0]
    assert call.id.startswith("call_")
    signature = call.model_extra["extra_content"]["google"]["thought_signature"]
    assert signature.startswith("C")

    fake.enqueue(Reply.text("Warm in Lima."))
    second = create(oai, stream, messages=[
        {"role": "user", "content": "Lima?"}, replay(message),
        {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": "25C"}]},
    ], **ask)
    assert second.choices[0].message.content == "Warm in Lima."
    call_part = last_generate(fake)["contents"][1]["parts"][0]
    assert call_part["thoughtSignature"] == signature
    assert call_part["functionCall"] == {"id": call.id, "name": "get_weather", "args": {"city": "Lima"}}


def test_gemini_signature_from_extra_content_and_sentinel_fallback(oai, fake) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Quito"})]))
    first = oai.chat.completions.create(model="gemini-3-flash-agent", tools=[WEATHER],
                                        messages=[{"role": "user", "content": "Quito?"}])
    call = first.choices[0].message.tool_calls[0]
    signature = call.model_extra["extra_content"]["google"]["thought_signature"]

    def answer(call_id: str, extra: dict | None) -> dict:
        tool_call = {"id": call_id, "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Quito"}'}}
        if extra:
            tool_call["extra_content"] = extra
        oai.chat.completions.create(model="gemini-3-flash-agent", tools=[WEATHER], messages=[
            {"role": "user", "content": "Quito?"}, {"role": "assistant", "content": None, "tool_calls": [tool_call]},
            {"role": "tool", "tool_call_id": call_id, "content": "cool"},
        ])
        return last_generate(fake)["contents"][1]["parts"][0]

    # A client that keeps extra_content (Continue, Google's own SDKs) is honoured even for an id we never issued.
    assert answer("call_fromanotherserver0000000", {"google": {"thought_signature": signature}})[
        "thoughtSignature"] == signature
    # LiteLLM's id-suffix form.
    suffixed = answer(f"call_litellm__thought__{signature}", None)
    assert suffixed["thoughtSignature"] == signature and suffixed["functionCall"]["id"] == "call_litellm"
    assert answer("call_unknown00000000000000000", None)["thoughtSignature"] == SENTINEL_SIGNATURE


def test_parallel_tool_calls_stream_with_distinct_indexes(gateway, oai, fake) -> None:
    calls = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Paris"})]
    fake.enqueue(Reply(tool_calls=calls))
    stream = chunks(post(gateway, {"model": "gemini-3-flash-agent", "stream": True, "tools": [WEATHER],
                                   "messages": [{"role": "user", "content": "Paris twice"}]}, stream=True))
    fragments = [t for d in deltas(stream) for t in d.get("tool_calls", [])]
    heads = [f for f in fragments if "id" in f]
    assert [h["index"] for h in heads] == [0, 1]
    assert len({h["id"] for h in heads}) == 2  # identical calls still get distinct ids
    assert all(h["type"] == "function" and h["function"] == {"name": "get_weather", "arguments": ""} for h in heads)
    args = [f for f in fragments if "id" not in f]
    assert [(a["index"], a["function"]) for a in args] == [(0, {"arguments": '{"city":"Paris"}'})] * 1 + [
        (1, {"arguments": '{"city":"Paris"}'})]
    assert all(set(d) in ({"role", "content"}, {"tool_calls"}, set()) for d in deltas(stream))
    assert stream[-2]["choices"][0]["finish_reason"] == "tool_calls"

    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]))
    with oai.chat.completions.stream(model="claude-sonnet-4-6", tools=[WEATHER],
                                     messages=[{"role": "user", "content": "Paris and Rome"}]) as events:
        final = events.get_final_completion()
    tool_calls = final.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert tool_calls[0].id != tool_calls[1].id


def test_parallel_results_are_ordered_and_missing_ones_stated(oai, fake) -> None:
    """Claude pairs results with calls strictly; an unanswered call gets an explicit error result."""
    oai.chat.completions.create(model="claude-sonnet-4-6", tools=[WEATHER], messages=[
        {"role": "user", "content": "three cities"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": f"call_{city}", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
            for city in ("a", "b", "c")]},
        {"role": "tool", "tool_call_id": "call_c", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
        {"role": "user", "content": "and?"},
    ])
    parts = last_generate(fake)["contents"][2]["parts"]
    assert [p.get("functionResponse", {}).get("id") for p in parts] == ["call_a", "call_b", "call_c", None]
    assert parts[1]["functionResponse"]["response"]["error"].startswith("Tool execution was interrupted")
    assert parts[3] == {"text": "and?"}


def test_legacy_functions_and_function_call(oai, fake) -> None:
    function = WEATHER["function"]
    oai.chat.completions.create(
        model="claude-sonnet-4-6", functions=[function], function_call={"name": "get_weather"},
        messages=[
            {"role": "user", "content": "Weather in Nice?"},
            {"role": "assistant", "content": None,
             "function_call": {"name": "get_weather", "arguments": '{"city": "Nice"}'}},
            {"role": "function", "name": "get_weather", "content": "warm"},
        ],
    )
    inner = last_generate(fake)
    call = inner["contents"][1]["parts"][0]["functionCall"]
    response = inner["contents"][2]["parts"][0]["functionResponse"]
    assert call["name"] == response["name"] == "get_weather" and call["id"] == response["id"]
    assert response["response"] == {"result": "warm"}
    assert inner["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert [d["name"] for d in inner["tools"][0]["functionDeclarations"]] == ["get_weather"]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ({"type": "function", "function": {"name": "get_weather"}},
         {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
            {"type": "function", "function": {"name": "get_weather"}}]}},
         {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
        ({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [
            {"type": "function", "name": "get_weather"}]}},
         {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice(oai, fake, choice, expected) -> None:
    oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, tools=[WEATHER], tool_choice=choice)
    inner = last_generate(fake)
    assert inner["toolConfig"] == {"functionCallingConfig": expected}
    declaration = inner["tools"][0]["functionDeclarations"][0]
    assert "additionalProperties" not in json.dumps(declaration) and "strict" not in declaration


def test_unparseable_arguments_are_kept_as_params(oai, fake) -> None:
    oai.chat.completions.create(model="gemini-3-flash-agent", tools=[WEATHER], messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "city=Paris"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ])
    parts = last_generate(fake)["contents"][1]["parts"]
    assert parts == [{"functionCall": {"id": "call_1", "name": "get_weather", "args": {"params": "city=Paris"}},
                      "thoughtSignature": SENTINEL_SIGNATURE}]


# -- reasoning --------------------------------------------------------------------------------------


def test_reasoning_streams_as_reasoning_content(gateway, fake) -> None:
    fake.enqueue(Reply(thinking="step one, step two", text="Answer.", chunks=2,
                       usage={"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 6}))
    stream = chunks(post(gateway, {"model": "claude-opus-4-6-thinking", "stream": True, "messages": HELLO,
                                   "stream_options": {"include_usage": True}}, stream=True))
    kinds = [next(iter(d), None) for d in deltas(stream)]
    assert kinds[0] == "role" and kinds[-1] is None
    reasoning = [d["reasoning_content"] for d in deltas(stream) if "reasoning_content" in d]
    assert "".join(reasoning) == "step one, step two" and len(reasoning) == 2
    assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "reasoning_content")
    usage = stream[-2]["usage"]
    assert usage["completion_tokens"] == 8 and usage["completion_tokens_details"] == {"reasoning_tokens": 6}


def test_reasoning_on_the_message(oai, fake) -> None:
    fake.enqueue(Reply(thinking="Let me think.", text="Done."))
    completion = oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, reasoning_effort="high")
    message = completion.choices[0].message
    assert message.reasoning_content == "Let me think." and message.content == "Done."
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0
    fake.enqueue(Reply.text("plain"))
    plain = oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO)
    assert "reasoning_content" not in plain.choices[0].message.model_extra


@pytest.mark.parametrize(
    ("model", "effort", "expected"),
    [
        ("claude-opus-4-6-thinking", "minimal", {"include_thoughts": True, "thinking_budget": 1024}),
        ("claude-opus-4-6-thinking", "medium", {"include_thoughts": True, "thinking_budget": 8192}),
        ("claude-opus-4-6-thinking", "high", {"include_thoughts": True, "thinking_budget": 24576}),
        ("claude-opus-4-6-thinking", "none", None),
        ("claude-sonnet-4-6", "high", None),
        ("gemini-3-flash-agent", "minimal", {"includeThoughts": True, "thinkingLevel": "minimal"}),
        ("gemini-3-flash-agent", "xhigh", {"includeThoughts": True, "thinkingLevel": "high"}),
        ("gemini-3-flash-agent", "none", {"thinkingLevel": "minimal"}),
        ("gemini-pro-agent", "minimal", {"includeThoughts": True, "thinkingLevel": "low"}),
        ("gemini-pro-agent", "none", {"thinkingLevel": "low"}),
        ("gemini-3.1-flash-lite", "medium", {"includeThoughts": True, "thinkingLevel": "medium"}),
        ("gemini-3.8-flash", "minimal", {"includeThoughts": True, "thinkingLevel": "low"}),
        ("gemini-3.8-flash-high", None, {"thinkingLevel": "high"}),
    ],
)
def test_reasoning_effort_mapping(oai, fake, model, effort, expected) -> None:
    oai.chat.completions.create(model=model, messages=HELLO, **({"reasoning_effort": effort} if effort else {}))
    generate = fake.generate_requests()[-1].body
    assert generate["request"]["generationConfig"].get("thinkingConfig") == expected
    # A tier suffix and a public name both land on the -tiered id, which the upstream resolves.
    assert generate["model"] == ("gemini-3.8-flash-tiered" if "3.8" in model else model)


def test_reasoning_effort_max_stays_below_the_output_limit(oai, fake) -> None:
    oai.chat.completions.create(model="claude-opus-4-6-thinking", messages=HELLO, reasoning_effort="max")
    config = last_generate(fake)["generationConfig"]
    assert config["thinkingConfig"]["thinking_budget"] < config["maxOutputTokens"] <= 64000


# -- JSON mode --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_mode(oai, fake, stream) -> None:
    fake.enqueue(Reply.text('{"ok": true}'))
    completion = create(oai, stream, model="gemini-3-flash-agent", messages=HELLO, response_format={"type": "json_object"})
    assert json.loads(completion.choices[0].message.content) == {"ok": True}
    config = last_generate(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json" and "responseSchema" not in config


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_mode(oai, fake, stream) -> None:
    fake.enqueue(Reply.text('{"city": "Oslo", "degrees": 3}'))
    schema = {"type": "object", "additionalProperties": False, "required": ["city", "degrees"],
              "properties": {"city": {"type": "string"}, "degrees": {"type": "integer", "minimum": -100}}}
    completion = create(oai, stream, model="claude-sonnet-4-6", messages=HELLO, response_format={
        "type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": schema}})
    assert json.loads(completion.choices[0].message.content)["city"] == "Oslo"
    config = last_generate(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    sent = config["responseSchema"]
    assert sent["properties"]["city"] == {"type": "string"} and sent["required"] == ["city", "degrees"]
    assert "additionalProperties" not in sent and "minimum" not in sent["properties"]["degrees"]


def test_text_response_format_is_plain(oai, fake) -> None:
    oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, response_format={"type": "text"})
    assert "responseMimeType" not in last_generate(fake)["generationConfig"]


# -- models -----------------------------------------------------------------------------------------


def test_models_list_and_retrieve(oai) -> None:
    listed = {m.id: m for m in oai.models.list()}
    assert listed["gemini-3-flash-agent"].owned_by == "google"
    model = oai.models.retrieve("claude-opus-4-6-thinking")
    assert model.id == "claude-opus-4-6-thinking" and model.owned_by == "anthropic" and model.object == "model"
    assert model.created == listed["claude-opus-4-6-thinking"].created
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("gpt-99")
    assert info.value.code == "model_not_found" and "/v1/models" in info.value.message


def test_keep_alive_comments_during_a_silent_upstream(fake, accounts_file) -> None:
    """A long thinking phase sends SSE comments, which every OpenAI client skips."""
    url, _, server = serve(gateway_settings(fake, accounts_file, ping_interval=0.1))
    try:
        fake.enqueue(Reply(text="after a pause", chunks=2, stall_after=1, stall_seconds=0.6))
        response = requests.post(f"{url}/v1/chat/completions", stream=True, timeout=10,
                                 json={"model": "gemini-3-flash-agent", "stream": True, "messages": HELLO})
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
        assert ": ping" in lines and lines[-1] == "data: [DONE]"
        fake.enqueue(Reply(text="after a pause", chunks=2, stall_after=1, stall_seconds=0.6))
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        received = list(client.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in received) == "after a pause"
    finally:
        server.shutdown()


def test_waiting_for_a_rate_limited_account_pings_then_answers(fake, accounts_file) -> None:
    url, _, server = serve(gateway_settings(fake, accounts_file, ping_interval=0.1))
    try:
        fake.enqueue(Reply.error(429, retry_delay="0.6s", quota_reset_delay="0.6s"), Reply.text("worth the wait"))
        response = requests.post(f"{url}/v1/chat/completions", stream=True, timeout=10,
                                 json={"model": "gemini-3-flash-agent", "stream": True, "messages": HELLO})
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
        assert lines[0] == ": ping" and lines[-1] == "data: [DONE]"
        first = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert len(fake.generate_requests()) == 2
    finally:
        server.shutdown()


@pytest.mark.parametrize(("allowed", "param", "words"), [
    ({"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_time"}}]},
     "tool_choice.allowed_tools.tools[0].function.name", "not in tools: get_time"),
    ({"mode": "sometimes", "tools": [{"type": "function", "function": {"name": "get_weather"}}]},
     "tool_choice.allowed_tools.mode", "'auto' or 'required'"),
    ({"mode": "auto", "tools": []}, "tool_choice.allowed_tools.tools", "at least one function"),
])
def test_allowed_tools_naming_what_is_not_there_is_a_400(oai, fake, allowed, param, words) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model="gemini-3-flash-agent", messages=HELLO, tools=[WEATHER],
                                    tool_choice={"type": "allowed_tools", "allowed_tools": allowed})
    error = caught.value.body
    assert error["param"] == param and words in error["message"]
    assert fake.generate_requests() == []
