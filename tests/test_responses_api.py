"""The Responses API end to end: the official openai SDK (``client.responses``) -> the gateway -> the strict fake.

The fake verifies Claude thinking signatures against the exact thinking text, so a tool loop it accepts proves
the gateway handed back what the client replayed (sealed reasoning, or a stored response).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from typing import Any

import openai
import pydantic
import pytest
import requests

from tests.conftest import PNG, gateway_settings, serve
from tests.fake_cloudcode import SENTINEL_SIGNATURE, Reply

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
    "strict": True,
}
APPLY_PATCH_GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch",
               "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR}}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
THINKING = "claude-opus-4-6-thinking"
ENCRYPTED = ["reasoning.encrypted_content"]


@pytest.fixture
def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=30)


def last_generate(fake) -> dict:
    return fake.generate_requests()[-1].body["request"]


def post(url: str, body: dict, path: str = "/v1/responses", **kwargs: Any) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, timeout=10, headers={"Authorization": "Bearer x"}, **kwargs)


def sse(response: requests.Response) -> list[dict]:
    """Every event of a stream, checking the framing: ``event:`` names the ``type``, and no ``[DONE]``."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            event = json.loads(line[6:])
            assert event["type"] == name
            events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def history(response, *outputs: dict) -> list[dict]:  # noqa: ANN001 - an SDK Response
    """The response's output items as a client sends them back, then ``outputs``."""
    return [item.model_dump(exclude_none=True) for item in response.output] + list(outputs)


# -- plain answers ----------------------------------------------------------------------------------


def test_plain_text_non_streaming(oai, fake) -> None:
    response = oai.responses.create(model="claude-sonnet-4-6", input="hello", instructions="Be brief.")
    assert response.output_text == "Echo: hello"
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == "claude-sonnet-4-6" and response.instructions == "Be brief."
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert response.usage.input_tokens > 0 and response.usage.total_tokens == (
        response.usage.input_tokens + response.usage.output_tokens)
    sent = last_generate(fake)
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_stream_event_sequence(gateway, fake) -> None:
    fake.enqueue(Reply.text("Two words.", chunks=2))
    events = sse(post(gateway.url, {"model": "claude-sonnet-4-6", "input": "hi", "stream": True}, stream=True))
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    assert {"id", "created_at", "model", "object", "output", "parallel_tool_calls", "tool_choice", "tools"} <= set(created)
    delta = events[4]
    assert delta["output_index"] == 0 and delta["content_index"] == 0 and delta["logprobs"] == []
    assert delta["item_id"] == events[2]["item"]["id"]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["text"] == "Two words."
    assert done["id"] == created["id"]


def test_sdk_stream_helper(oai, fake) -> None:
    fake.enqueue(Reply.text("streamed through the helper", chunks=3))
    with oai.responses.stream(model="gemini-3-flash-agent", input="hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "streamed through the helper"


def test_paths_without_v1(gateway) -> None:
    response = post(gateway.url, {"model": "claude-sonnet-4-6", "input": "no prefix"}, path="/responses")
    assert response.status_code == 200 and response.json()["output"][0]["content"][0]["text"] == "Echo: no prefix"


def test_reasoning_summary_only_when_asked(gateway, fake) -> None:
    fake.enqueue(Reply(thinking="Pondering.", text="Answer."))
    events = sse(post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "stream": True,
                                    "reasoning": {"effort": "low", "summary": "auto"}}, stream=True))
    names = [event["type"] for event in events]
    assert names[2:9] == [
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done"]
    reasoning = events[-1]["response"]["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [{"type": "summary_text", "text": "Pondering."}]
    assert "encrypted_content" not in reasoning  # not asked for

    fake.enqueue(Reply(thinking="Pondering.", text="Answer."))
    events = sse(post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "stream": True,
                                    "reasoning": {"effort": "low"}}, stream=True))
    assert not any("summary" in event["type"] for event in events)
    assert events[-1]["response"]["output"][0]["summary"] == []
    assert last_generate(fake)["generationConfig"]["thinkingConfig"]["includeThoughts"] is True


def test_usage_counts_cached_and_reasoning_tokens(oai, fake) -> None:
    fake.enqueue(Reply(thinking="t", text="a", usage={"promptTokenCount": 100, "cachedContentTokenCount": 60,
                                                      "candidatesTokenCount": 7, "thoughtsTokenCount": 5}))
    usage = oai.responses.create(model="gemini-3-flash-agent", input="q", reasoning={"effort": "low"}).usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (100, 60)
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens, usage.total_tokens) == (12, 5, 112)


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_and_safety_leave_the_response_incomplete(gateway, fake, stream) -> None:
    for finish, reason in (("MAX_TOKENS", "max_output_tokens"), ("SAFETY", "content_filter")):
        fake.enqueue(Reply(text="cut", finish=finish))
        answer = post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "stream": stream,
                                    "max_output_tokens": 16}, stream=stream)
        if stream:
            last = sse(answer)[-1]
            assert last["type"] == "response.incomplete"
            body = last["response"]
        else:
            body = answer.json()
        assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": reason}
    assert last_generate(fake)["generationConfig"]["maxOutputTokens"] == 16


def test_a_blocked_prompt_is_a_refusal(oai, fake) -> None:
    fake.enqueue(Reply.blocked("SAFETY"))
    response = oai.responses.create(model="gemini-3-flash-agent", input="q")
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    assert response.output[0].content[0].type == "refusal"


# -- tools ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_and_its_round_trip(oai, fake, stream) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Oslo"})]), Reply.text("Snowing in Oslo."))
    ask = dict(model="gemini-3-flash-agent", tools=[WEATHER], store=False)
    if stream:
        with oai.responses.stream(input="weather?", **ask) as events:
            argument_deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
            first = events.get_final_response()
        assert argument_deltas == ['{"city":"Oslo"}']
    else:
        first = oai.responses.create(input="weather?", **ask)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert call.call_id.startswith("call_") and call.id.startswith("fc_") and call.status == "completed"
    declared = last_generate(fake)["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "get_weather" and "additionalProperties" not in json.dumps(declared)

    second = oai.responses.create(input=[{"role": "user", "content": "weather?"}, *history(first, {
        "type": "function_call_output", "call_id": call.call_id, "output": "snow"})], **ask)
    assert second.output_text == "Snowing in Oslo."
    contents = last_generate(fake)["contents"]
    assert contents[1]["parts"][-1]["functionCall"]["name"] == "get_weather"
    assert contents[2]["parts"][0]["functionResponse"] == {
        "id": call.call_id, "name": "get_weather", "response": {"result": "snow"}}


def test_parallel_tool_calls(oai, fake) -> None:
    calls = [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    fake.enqueue(Reply(tool_calls=calls), Reply.text("Both."), Reply(tool_calls=calls))
    first = oai.responses.create(model="claude-sonnet-4-6", input="two cities", tools=[WEATHER])
    made = [item for item in first.output if item.type == "function_call"]
    assert [json.loads(item.arguments)["city"] for item in made] == ["Oslo", "Rome"]
    outputs = [{"type": "function_call_output", "call_id": item.call_id, "output": item.call_id[-4:]} for item in made]
    second = oai.responses.create(model="claude-sonnet-4-6", tools=[WEATHER], input=[
        {"role": "user", "content": "two cities"}, *history(first, *outputs[::-1])])
    assert second.output_text == "Both."
    results = [part["functionResponse"]["id"] for part in last_generate(fake)["contents"][2]["parts"]]
    assert results == [item.call_id for item in made]  # in call order, whatever order the outputs came in
    single = oai.responses.create(model="claude-sonnet-4-6", input="two cities", tools=[WEATHER],
                                  parallel_tool_calls=False)
    assert [item.type for item in single.output] == ["function_call"] and single.parallel_tool_calls is False


def test_function_output_with_an_image(oai, fake) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Oslo"})]))
    first = oai.responses.create(model="gemini-3-flash-agent", input="weather?", tools=[WEATHER])
    call = first.output[-1]
    oai.responses.create(model="gemini-3-flash-agent", tools=[WEATHER], input=[
        {"role": "user", "content": "weather?"}, *history(first, {
            "type": "function_call_output", "call_id": call.call_id,
            "output": [{"type": "input_text", "text": "a map"},
                       {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]})])
    parts = last_generate(fake)["contents"][2]["parts"]
    assert parts[0]["functionResponse"]["response"] == {"result": "a map"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PNG}}


@pytest.mark.parametrize("stream", [False, True])
def test_custom_tool_with_a_grammar(gateway, fake, stream) -> None:
    """Codex's apply_patch: declared upstream as a function of one string, answered as a custom_tool_call."""
    fake.enqueue(Reply(tool_calls=[("apply_patch", {"input": PATCH})]), Reply.text("Patched."))
    ask = {"model": "gemini-3-flash-agent", "tools": [APPLY_PATCH], "stream": stream}
    answer = post(gateway.url, {**ask, "input": "add hello.txt"}, stream=stream)
    if stream:
        events = sse(answer)
        names = [event["type"] for event in events]
        assert "response.custom_tool_call_input.delta" in names
        assert events[names.index("response.custom_tool_call_input.done")]["input"] == PATCH
        output = events[-1]["response"]["output"]
    else:
        output = answer.json()["output"]
    call = output[-1]
    assert call["type"] == "custom_tool_call" and call["name"] == "apply_patch" and call["input"] == PATCH
    declared = last_generate(fake)["tools"][0]["functionDeclarations"][0]
    assert declared["parameters"]["required"] == ["input"] and APPLY_PATCH_GRAMMAR.strip() in declared["description"]

    second = post(gateway.url, {**ask, "stream": False, "input": [
        {"role": "user", "content": "add hello.txt"}, *output,
        {"type": "custom_tool_call_output", "call_id": call["call_id"], "output": "Done!"}]})
    assert second.status_code == 200, second.text
    parts = [p for c in last_generate(fake)["contents"] for p in c["parts"]]
    assert next(p["functionCall"] for p in parts if "functionCall" in p)["args"] == {"input": PATCH}
    assert next(p["functionResponse"] for p in parts if "functionResponse" in p)["response"] == {"result": "Done!"}


def test_local_shell_and_namespace_tools(gateway, fake) -> None:
    namespace = {"type": "namespace", "name": "agents", "description": "Sub-agents",
                 "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}]}
    tools = [{"type": "local_shell"}, namespace, {"type": "web_search", "external_web_access": False}]
    fake.enqueue(Reply(tool_calls=[("local_shell", {"command": ["ls", "-a"], "workdir": "/tmp"}),
                                   ("agents__spawn", {})]), Reply.text("Listed."))
    first = post(gateway.url, {"model": "claude-sonnet-4-6", "input": "list", "tools": tools}).json()
    shell, spawn = first["output"]
    assert shell["type"] == "local_shell_call" and shell["action"] == {
        "type": "exec", "command": ["ls", "-a"], "env": {}, "working_directory": "/tmp"}
    assert spawn["type"] == "function_call" and (spawn["namespace"], spawn["name"]) == ("agents", "spawn")
    declared = [d["name"] for d in last_generate(fake)["tools"][0]["functionDeclarations"]]
    assert declared == ["local_shell", "agents__spawn"]  # a cache-only web_search is dropped, not refused
    second = post(gateway.url, {"model": "claude-sonnet-4-6", "tools": tools, "input": [
        {"role": "user", "content": "list"}, shell, spawn,
        {"type": "local_shell_call_output", "call_id": shell["call_id"], "output": "a b"},
        {"type": "function_call_output", "call_id": spawn["call_id"], "output": "spawned"}]})
    assert second.status_code == 200, second.text
    calls = [p["functionCall"] for p in last_generate(fake)["contents"][1]["parts"]]
    assert calls[0]["args"] == {"command": ["ls", "-a"], "workdir": "/tmp"} and calls[1]["name"] == "agents__spawn"


def test_an_unservable_tool_kind_is_a_400_naming_it(oai, fake) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="claude-sonnet-4-6", input="q",
                             tools=[WEATHER, {"type": "file_search", "vector_store_ids": ["vs_1"]}])
    assert caught.value.body["param"] == "tools[1].type" and "'file_search'" in caught.value.body["message"]
    assert fake.generate_requests() == []


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"mode": "AUTO"}),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "name": "get_weather"}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ({"type": "custom", "name": "apply_patch"}, {"mode": "ANY", "allowedFunctionNames": ["apply_patch"]}),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ({"type": "web_search"}, {"mode": "AUTO"}),
])
def test_tool_choice(gateway, fake, choice, expected) -> None:
    answer = post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "tools": [WEATHER, APPLY_PATCH],
                                "tool_choice": choice})
    assert answer.status_code == 200, answer.text
    assert last_generate(fake)["toolConfig"]["functionCallingConfig"] == expected
    assert answer.json()["tool_choice"] == choice


def test_json_schema_output(oai, fake) -> None:
    class City(pydantic.BaseModel):
        name: str
        population: int

    fake.enqueue(Reply.text('{"name": "Oslo", "population": 700000}'))
    parsed = oai.responses.parse(model="gemini-3-flash-agent", input="a city", text_format=City)
    assert parsed.output_parsed == City(name="Oslo", population=700000)
    config = last_generate(fake)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert set(config["responseSchema"]["properties"]) == {"name", "population"}
    oai.responses.create(model="gemini-3-flash-agent", input="json", text={"format": {"type": "json_object"}})
    assert "responseSchema" not in last_generate(fake)["generationConfig"]


def test_images_inline_and_by_url(oai, fake, image_server) -> None:
    oai.responses.create(model="gemini-3-flash-agent", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "two images"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
        {"type": "input_image", "image_url": f"{image_server}/cat.png"}]}])
    parts = last_generate(fake)["contents"][0]["parts"]
    assert parts[0] == {"text": "two images"}
    assert parts[1]["inlineData"] == {"mimeType": "image/png", "data": PNG}
    assert base64.b64decode(parts[2]["inlineData"]["data"]) == base64.b64decode(PNG)


def test_developer_messages_are_system_instructions_after_instructions(gateway, fake) -> None:
    post(gateway.url, {"model": "claude-sonnet-4-6", "instructions": "first", "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "second"}]},
        {"role": "user", "content": "question", "id": "msg_client"}]})
    sent = last_generate(fake)
    assert [p["text"] for p in sent["systemInstruction"]["parts"]] == ["first", "second"]
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "question"}]}]


def test_prompt_cache_key_keeps_the_upstream_session(gateway, fake) -> None:
    for text in ("one", "two"):
        post(gateway.url, {"model": "gemini-3-flash-agent", "input": text, "prompt_cache_key": "conv-42"})
    sessions = {r.body["request"]["sessionId"] for r in fake.generate_requests()}
    assert sessions == {hashlib.sha256(b"conv-42").hexdigest()[:32]}


# -- state ------------------------------------------------------------------------------------------


def test_retrieve_input_items_and_delete(oai, fake) -> None:
    created = oai.responses.create(model="claude-sonnet-4-6", input=[
        {"role": "user", "content": "first"}, {"role": "user", "content": "second"}], metadata={"k": "v"})
    retrieved = oai.responses.retrieve(created.id)
    assert retrieved.output_text == created.output_text and retrieved.metadata == {"k": "v"}
    items = oai.responses.input_items.list(created.id)
    assert [item.content[0].text for item in items.data] == ["second", "first"]  # newest first, as OpenAI
    ascending = oai.responses.input_items.list(created.id, order="asc", limit=1)
    assert [item.content[0].text for item in ascending.data] == ["first"] and ascending.has_more
    assert all(item.id for item in items.data)
    oai.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.retrieve(created.id)
    assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(created.id)


def test_store_false_keeps_nothing(oai) -> None:
    created = oai.responses.create(model="claude-sonnet-4-6", input="q", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(created.id)


def test_stored_responses_belong_to_the_key_that_made_them(gateway) -> None:
    made = openai.OpenAI(base_url=gateway.url + "/v1", api_key="alice", max_retries=0).responses.create(
        model="claude-sonnet-4-6", input="q")
    other = openai.OpenAI(base_url=gateway.url + "/v1", api_key="bob", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model="claude-sonnet-4-6", input="more", previous_response_id=made.id)


def test_previous_response_id_continues_the_stored_conversation(oai, fake) -> None:
    first = oai.responses.create(model="claude-sonnet-4-6", input="my name is Ada", instructions="Old rules.")
    second = oai.responses.create(model="claude-sonnet-4-6", input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    sent = last_generate(fake)
    assert [[p["text"] for p in c["parts"]] for c in sent["contents"]] == [
        ["my name is Ada"], ["Echo: my name is Ada"], ["what is my name?"]]
    assert "systemInstruction" not in sent  # instructions are not carried over
    third = oai.responses.create(model="claude-sonnet-4-6", input="and again?", previous_response_id=second.id)
    assert len(last_generate(fake)["contents"]) == 5 and third.output_text == "Echo: and again?"
    assert [i.content[0].text for i in oai.responses.input_items.list(third.id).data] == ["and again?"]


def test_an_unknown_previous_response_is_a_400_with_its_code(gateway, fake) -> None:
    answer = post(gateway.url, {"model": "claude-sonnet-4-6", "input": "q", "previous_response_id": "resp_nope"})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"message": "Previous response with id 'resp_nope' not found.",
                                      "type": "invalid_request_error", "param": "previous_response_id",
                                      "code": "previous_response_not_found"}
    assert fake.generate_requests() == []


def test_item_reference_names_an_item_of_the_previous_response(oai, fake) -> None:
    first = oai.responses.create(model="claude-sonnet-4-6", input="remember this")
    oai.responses.create(model="claude-sonnet-4-6", previous_response_id=first.id, input=[
        {"type": "item_reference", "id": first.output[0].id}, {"role": "user", "content": "again"}])
    texts = [p["text"] for c in last_generate(fake)["contents"] for p in c["parts"]]
    assert texts == ["remember this", "Echo: remember this", "Echo: remember this", "again"]


# -- Claude thinking tool loops -----------------------------------------------------------------------


def thinking_loop(first_client: openai.OpenAI, second_client: openai.OpenAI, fake, **ask: Any) -> None:
    """Turn 1 on one gateway calls a tool; turn 2 on another sends the result back. The fake accepts turn 2
    only with the signed thinking of turn 1 replayed exactly."""
    fake.enqueue(Reply(thinking="I should call the weather tool.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                 Reply(thinking="Now answer.", text="Snow in Oslo."))
    base = dict(model=THINKING, tools=[WEATHER], reasoning={"effort": "low"})
    first = first_client.responses.create(input="weather in Oslo?", **base, **ask)
    call = next(item for item in first.output if item.type == "function_call")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "snow"}
    if ask.get("store") is False:
        second = second_client.responses.create(input=[{"role": "user", "content": "weather in Oslo?"},
                                                       *history(first, output)], **base, **ask)
    else:
        second = second_client.responses.create(input=[output], previous_response_id=first.id, **base, **ask)
    assert second.output_text == "Snow in Oslo."
    replayed = last_generate(fake)["contents"][1]["parts"][0]
    assert replayed["thought"] is True and replayed["text"] == "I should call the weather tool."


def test_claude_thinking_loop_replayed_from_sealed_reasoning_on_another_gateway(fake, accounts_file) -> None:
    """store: false keeps nothing anywhere: the second gateway (same key, its own memory) has only what the
    client sent back, the sealed reasoning."""
    clients, servers = [], []
    for _ in range(2):
        url, _, server = serve(gateway_settings(fake, accounts_file, secret_key="shared secret"))
        servers.append(server)
        clients.append(openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0))
    try:
        thinking_loop(clients[0], clients[1], fake, store=False, include=ENCRYPTED)
    finally:
        for server in servers:
            server.shutdown()


def test_claude_thinking_loop_replayed_from_a_stored_response_on_another_gateway(
        fake, accounts_file, tmp_path, monkeypatch) -> None:
    """Two gateways sharing their state, as two workers do; the thinking kept under call ids is turned off, so
    only the stored response can give it back."""
    clients, servers = [], []
    for _ in range(2):
        url, app, server = serve(gateway_settings(fake, accounts_file, shared_state_dir=tmp_path / "state"))
        monkeypatch.setattr(app.extensions["gateway"].signatures, "turn_thinking", lambda call_id: [])
        servers.append(server)
        clients.append(openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0))
    try:
        thinking_loop(clients[0], clients[1], fake)
    finally:
        for server in servers:
            server.shutdown()


def test_reasoning_sealed_under_another_key_or_changed_is_ignored(fake, accounts_file) -> None:
    """Another gateway's (or a forged) blob opens to nothing: the loop is closed as for a client that sent no
    reasoning, and the upstream accepts the request. Each turn 2 goes to a gateway with memory of its own."""
    urls, servers = [], []
    for key in ("key one", "key two", "key one", "key one"):
        url, _, server = serve(gateway_settings(fake, accounts_file, secret_key=key))
        servers.append(server)
        urls.append(url)
    try:
        fake.enqueue(Reply(thinking="Call it.", tool_calls=[("get_weather", {"city": "Oslo"})]))
        ask = {"model": THINKING, "tools": [WEATHER], "store": False, "include": ENCRYPTED, "reasoning": {"effort": "low"}}
        first = post(urls[0], {**ask, "input": "weather?"}).json()
        reasoning, call = first["output"]
        assert reasoning["encrypted_content"]
        forged = {**reasoning, "encrypted_content": reasoning["encrypted_content"][:-4] + "AAAA"}
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "snow"}
        for url, item, kept in ((urls[1], reasoning, False), (urls[2], forged, False), (urls[3], reasoning, True)):
            answer = post(url, {**ask, "input": [{"role": "user", "content": "weather?"}, item, call, output]})
            assert answer.status_code == 200, answer.text
            parts = last_generate(fake)["contents"][1]["parts"]
            assert bool(parts[0].get("thought")) is kept
    finally:
        for server in servers:
            server.shutdown()


def test_gemini_call_signature_rides_in_the_sealed_reasoning(fake, accounts_file) -> None:
    urls, servers = [], []
    for _ in range(2):
        url, _, server = serve(gateway_settings(fake, accounts_file, secret_key="k"))
        servers.append(server)
        urls.append(url)
    try:
        fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Oslo"})]))
        ask = {"model": "gemini-3-flash-agent", "tools": [WEATHER], "store": False, "include": ENCRYPTED}
        first = post(urls[0], {**ask, "input": "weather?"}).json()
        reasoning, call = first["output"]
        assert reasoning["type"] == "reasoning" and reasoning["summary"] == [] and reasoning["encrypted_content"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "snow"}
        assert post(urls[1], {**ask, "input": [{"role": "user", "content": "weather?"},
                                               reasoning, call, output]}).status_code == 200
        replayed = last_generate(fake)["contents"][1]["parts"][0]
        assert replayed["thoughtSignature"] not in (None, SENTINEL_SIGNATURE)
    finally:
        for server in servers:
            server.shutdown()


# -- errors -----------------------------------------------------------------------------------------


def test_errors_before_the_stream_have_openai_s_shape_and_status(gateway, fake) -> None:
    missing = post(gateway.url, {"input": "q"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
    unknown = post(gateway.url, {"model": "gpt-99", "input": "q", "stream": True})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    fake.enqueue(Reply.error(400, message="Request contains an invalid argument."))
    refused = post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "stream": True})
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
    bad_item = post(gateway.url, {"model": "gemini-3-flash-agent", "input": [{"type": "message", "role": "robot"}]})
    assert bad_item.status_code == 400 and bad_item.json()["error"]["param"] == "input[0].role"


def test_a_failure_mid_stream_is_error_then_response_failed(gateway, fake, oai) -> None:
    fake.enqueue(Reply(text="this answer will be cut off", chunks=4, drop_after=2))
    events = sse(post(gateway.url, {"model": "gemini-3-flash-agent", "input": "q", "stream": True}, stream=True))
    assert [event["type"] for event in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["error"]["message"] == events[-2]["message"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert len(fake.generate_requests()) == 1
    fake.enqueue(Reply(text="cut short here", chunks=3, drop_after=1))
    with pytest.raises(openai.APIError):
        with oai.responses.stream(model="gemini-3-flash-agent", input="q") as stream:
            for _ in stream:
                pass


def test_keep_alive_comments_while_the_upstream_is_silent(fake, accounts_file) -> None:
    url, _, server = serve(gateway_settings(fake, accounts_file, ping_interval=0.1))
    try:
        fake.enqueue(Reply(text="after a pause", chunks=2, stall_after=1, stall_seconds=0.6))
        response = post(url, {"model": "gemini-3-flash-agent", "input": "q", "stream": True}, stream=True)
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
        assert lines.count(": keepalive") >= 3 and lines[-2] == "event: response.completed"
        fake.enqueue(Reply.error(429, retry_delay="0.5s", quota_reset_delay="0.5s"), Reply.text("worth the wait"))
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with client.responses.stream(model="gemini-3-flash-agent", input="q") as stream:
            assert stream.get_final_response().output_text == "worth the wait"
    finally:
        server.shutdown()


def test_client_disconnect_releases_the_upstream(fake, accounts_file) -> None:
    url, _, server = serve(gateway_settings(fake, accounts_file, ping_interval=30))
    try:
        fake.enqueue(Reply(text="long silence follows", chunks=3, stall_after=1, stall_seconds=20))
        body = json.dumps({"model": "gemini-3-flash-agent", "input": "q", "stream": True}).encode()
        sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
        sock.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        sock.settimeout(10)
        received = b""
        while b"response.output_text.delta" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        sock.close()
        deadline = time.monotonic() + 3
        while fake.closed_by_client == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.closed_by_client == 1
    finally:
        server.shutdown()


# -- compaction -------------------------------------------------------------------------------------


def test_compact_then_continue_from_the_sealed_summary(gateway, fake) -> None:
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Oslo"})]))
    first = post(gateway.url, {"model": "claude-sonnet-4-6", "input": "weather?", "tools": [WEATHER]}).json()
    call = first["output"][-1]
    fake.enqueue(Reply.text("The user asked about Oslo's weather; it snows."))
    compacted = post(gateway.url, {"model": "claude-sonnet-4-6", "input": [
        {"role": "user", "content": "weather?"}, call,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "snow"}]},
        path="/v1/responses/compact")
    assert compacted.status_code == 200, compacted.text
    body = compacted.json()
    assert body["object"] == "response.compaction"
    kept, compaction = body["output"]
    assert kept["role"] == "user" and compaction["type"] == "compaction"
    summarized = last_generate(fake)
    assert "tools" not in summarized and "called get_weather" in json.dumps(summarized["contents"])
    post(gateway.url, {"model": "claude-sonnet-4-6", "input": [*body["output"], {"role": "user", "content": "and?"}]})
    texts = [p["text"] for c in last_generate(fake)["contents"] for p in c["parts"]]
    assert texts[-2].endswith("The user asked about Oslo's weather; it snows.") and texts[-1] == "and?"


# -- web search -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_web_search_answers_with_a_search_call_and_url_citations(oai, fake, stream) -> None:
    from tests.test_web_search import ANSWER, CITED, SEARCH_MODEL

    ask = dict(model="claude-sonnet-4-6", input="flask streaming", tools=[{"type": "web_search"}])
    if stream:
        with oai.responses.stream(**ask) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert kinds[2:7] == ["response.output_item.added", "response.web_search_call.in_progress",
                              "response.web_search_call.searching", "response.web_search_call.completed",
                              "response.output_item.done"]
        assert kinds.count("response.output_text.annotation.added") == 4
    else:
        response = oai.responses.create(**ask)
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.action.query == "flask streaming" and len(search.action.sources) == 3
    assert response.output_text == ANSWER and response.model == SEARCH_MODEL
    text = message.content[0]
    spans = [(text.text[a.start_index:a.end_index], a.url) for a in text.annotations]
    assert spans == [(cited, url) for cited, urls in CITED for url in urls]
    assert {a.type for a in text.annotations} == {"url_citation"}


def test_web_search_beside_function_tools(oai, fake) -> None:
    response = oai.responses.create(model="claude-sonnet-4-6", tools=[WEATHER, {"type": "web_search"}],
                                    input='call tool web_search with {"query": "paris weather"}')
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    assert "https://docs.example.com/paris-weather" in response.output_text
    declared = [d["name"] for d in fake.generate_requests()[0].body["request"]["tools"][0]["functionDeclarations"]]
    assert declared == ["get_weather", "web_search"]
    assert [r.body["requestType"] for r in fake.generate_requests()] == ["agent", "web_search", "agent"]


def test_web_search_limited_to_the_cache_is_dropped(gateway, fake) -> None:
    """Codex's default: external_web_access false asks for OpenAI's cached results, which the gateway has none of."""
    answer = post(gateway.url, {"model": "claude-sonnet-4-6", "input": "flask streaming",
                                "tools": [WEATHER, {"type": "web_search", "external_web_access": False}],
                                "tool_choice": {"type": "web_search"}})
    assert answer.status_code == 200 and answer.json()["output"][0]["type"] == "message"
    assert [r.body["requestType"] for r in fake.generate_requests()] == ["agent"]
    assert [d["name"] for d in last_generate(fake)["tools"][0]["functionDeclarations"]] == ["get_weather"]
