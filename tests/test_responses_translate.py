"""The Responses API's pure pieces, without sockets: input items -> canonical messages, events -> items."""

from __future__ import annotations

import pytest

from gateway.core.events import Finish, SignatureDelta, TextDelta, ThinkingDelta, ToolCallEvent, Usage, collect
from gateway.core.request import Message, Text, Thinking, ToolCall, ToolResult
from gateway.errors import InvalidRequest, RateLimited, UpstreamError
from gateway.render.responses import ResponseBuilder, events_of, failure
from gateway.schemas.common import Invalid
from gateway.schemas.responses import RESPONSES_SCHEMA, Replayed, ToolSpec, conversation, normalize

SIG_C = "R" + "c" * 80
SIG_G = "C" + "g" * 80


def builder(**options) -> tuple[ResponseBuilder, list[dict]]:  # noqa: ANN003
    stored: list[dict] = []
    made = ResponseBuilder(
        {"id": "resp_1", "object": "response", "model": "m", "tools": [], "tool_choice": "auto",
         "parallel_tool_calls": True},
        tools=options.pop("tools", {}), seal=lambda text, signature: f"sealed({text}|{signature})",
        summary=options.pop("summary", True), include_encrypted=options.pop("include_encrypted", True),
        on_finish=stored.append, **options)
    return made, stored


def run(made: ResponseBuilder, events: list) -> list[dict]:
    return [out for event in events for out in made.feed(event)]


def test_think_then_call_is_the_documented_sequence() -> None:
    made, stored = builder()
    out = run(made, [ThinkingDelta("Need the "), ThinkingDelta("weather."), SignatureDelta(SIG_C),
                     ToolCallEvent("call_1", "get_weather", {"city": "Oslo"}), Finish("tool_use", Usage(10, 2, 3))])
    assert [(e["sequence_number"], e["type"]) for e in out] == list(enumerate([
        "response.created", "response.in_progress", "response.output_item.added",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]))
    reasoning = out[8]["item"]
    assert reasoning == {"id": reasoning["id"], "type": "reasoning",
                         "summary": [{"type": "summary_text", "text": "Need the weather."}],
                         "encrypted_content": f"sealed(Need the weather.|{SIG_C})"}
    assert out[9]["item"]["arguments"] == "" and out[9]["output_index"] == 1
    assert out[-1]["response"]["usage"] == {
        "input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 15}
    assert stored[0]["output"][0]["encrypted_content"]


def test_sealed_reasoning_reaches_the_client_only_when_included_but_is_always_stored() -> None:
    made, stored = builder(include_encrypted=False, summary=False)
    out = run(made, [ThinkingDelta("hidden"), SignatureDelta(SIG_C), TextDelta("hi"), Finish("end_turn", Usage())])
    assert not any("summary" in e["type"] for e in out)
    assert "encrypted_content" not in str(out)
    assert stored[0]["output"][0]["encrypted_content"] == f"sealed(hidden|{SIG_C})"
    assert stored[0]["output"][0]["summary"] == []


def test_a_gemini_signature_becomes_a_reasoning_item_before_its_call_only() -> None:
    made, _ = builder()
    run(made, [SignatureDelta(SIG_G), TextDelta("text first"),
               SignatureDelta(SIG_G), ToolCallEvent("call_1", "f", {}, signature=SIG_G), Finish("tool_use", Usage())])
    assert [item["type"] for item in made.result()["output"]] == ["message", "reasoning", "function_call"]
    assert made.result()["output"][1]["encrypted_content"] == f"sealed(|{SIG_G})"


def test_a_whole_answer_builds_the_same_items_as_its_stream() -> None:
    events = [ThinkingDelta("t"), SignatureDelta(SIG_G), ToolCallEvent("call_1", "f", {"a": 1}, signature=SIG_G),
              ToolCallEvent("call_2", "f", {"a": 2}), Finish("tool_use", Usage())]
    streamed, _ = builder()
    run(streamed, events)
    whole, _ = builder()
    run(whole, list(events_of(collect("m", events))))

    def shape(made: ResponseBuilder) -> list:
        return [{k: v for k, v in item.items() if k != "id"} for item in made.result()["output"]]

    assert shape(whole) == shape(streamed)


def test_tools_come_back_as_their_kind_and_one_call_without_parallel_calls() -> None:
    tools = {"apply_patch": ToolSpec("custom", "apply_patch"), "ns__spawn": ToolSpec("function", "spawn", "ns")}
    made, _ = builder(tools=tools, parallel_tool_calls=False)
    out = run(made, [ToolCallEvent("call_1", "apply_patch", {"input": "*** Begin Patch"}),
                     ToolCallEvent("call_2", "ns__spawn", {}), Finish("tool_use", Usage())])
    assert [item["type"] for item in made.result()["output"]] == ["custom_tool_call"]
    assert [e["type"] for e in out if "custom" in e["type"]] == [
        "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"]
    made, _ = builder(tools=tools)
    run(made, [ToolCallEvent("call_2", "ns__spawn", {}), Finish("tool_use", Usage())])
    call = made.result()["output"][0]
    assert (call["namespace"], call["name"]) == ("ns", "spawn")


def test_a_failure_is_error_then_response_failed() -> None:
    made, stored = builder()
    run(made, [TextDelta("partial")])
    out = made.fail(UpstreamError("the upstream connection broke"))
    assert [e["type"] for e in out] == ["error", "response.failed"]
    assert out[0]["error"]["message"] == out[0]["message"] == "the upstream connection broke"
    assert out[1]["response"]["error"] == {"code": "server_error", "message": "the upstream connection broke"}
    assert stored == []


@pytest.mark.parametrize(("error", "expected"), [
    (RateLimited("rate limited on m", retry_after=11.2),
     {"code": "rate_limit_exceeded", "message": "rate limited on m (try again in 11s)"}),
    (InvalidRequest("prompt is too long: 250000 tokens > 200000 maximum"),
     {"code": "context_length_exceeded", "message": "prompt is too long: 250000 tokens > 200000 maximum"}),
    (InvalidRequest("Request contains an invalid argument."),
     {"code": "invalid_prompt", "message": "Request contains an invalid argument."}),
    (InvalidRequest("gone", code="previous_response_not_found"), {"code": "previous_response_not_found", "message": "gone"}),
])
def test_a_failed_response_says_what_codex_acts_on(error, expected) -> None:
    """Codex retries rate limits after the delay it reads in the message, and gives up on a context too long."""
    assert failure(error) == expected


# -- input items ------------------------------------------------------------------------------------


def test_normalized_items_have_types_and_part_lists() -> None:
    assert normalize("hi") == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    assert normalize([{"role": "assistant", "content": "yes"}]) == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yes"}]}]
    with pytest.raises(Invalid):
        normalize([{"role": "robot", "content": "x"}])


def test_conversation_replays_what_the_sealed_reasoning_held() -> None:
    opened = {"claude": Replayed(thinking=[Thinking("why", SIG_C)]), "gemini": Replayed(call_signature=SIG_G)}
    items = normalize([
        {"role": "user", "content": "q"},
        {"type": "reasoning", "summary": [], "encrypted_content": "claude"},
        {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_a", "output": "ra"},
        {"type": "reasoning", "summary": [], "encrypted_content": "gemini"},
        {"type": "function_call", "call_id": "call_b", "name": "f", "arguments": '{"x": 1}'},
        {"type": "function_call", "call_id": "call_c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_c", "output": "rc"},
        {"type": "function_call_output", "call_id": "call_b", "output": "rb"},
        {"type": "web_search_call", "id": "ws_1"},
    ])
    messages, system = conversation(items, open_reasoning=opened.get)
    assert system == []
    assert messages[1] == Message("assistant", [Thinking("why", SIG_C), ToolCall("call_a", "f", {})])
    assert messages[3].parts == [ToolCall("call_b", "f", {"x": 1}, signature=SIG_G), ToolCall("call_c", "f", {})]
    assert [p.tool_call_id for p in messages[4].parts] == ["call_b", "call_c"]  # in call order
    assert messages[4].parts[0] == ToolResult("call_b", [Text("rb")])


def test_an_unresolved_item_reference_names_its_index() -> None:
    with pytest.raises(Invalid) as caught:
        conversation(normalize([{"role": "user", "content": "q"}, {"type": "item_reference", "id": "msg_x"}]))
    assert caught.value.field_name == "input[1].id"


def test_the_schema_loads_options_into_the_canonical_request() -> None:
    loaded = RESPONSES_SCHEMA.load({
        "model": "m", "input": "q", "instructions": "sys", "max_output_tokens": 100, "temperature": 0.2,
        "reasoning": {"effort": "high", "summary": "auto"}, "prompt_cache_key": "conv", "store": False,
        "include": ["reasoning.encrypted_content"], "text": {"format": {"type": "json_schema", "name": "x",
                                                                        "schema": {"type": "object"}}},
        "tools": [{"type": "function", "name": "f"}, {"type": "web_search"}], "service_tier": "auto"})
    request = loaded.request
    assert (request.system, request.max_tokens, request.temperature, request.session_key) == (["sys"], 100, 0.2, "conv")
    assert request.thinking.effort == "high" and loaded.summary and loaded.include_encrypted and not loaded.store
    assert request.response_format.schema == {"type": "object"}
    assert [tool.name for tool in request.tools] == ["f"]
