"""Canonical request -> Cloud Code body, and Cloud Code chunks -> canonical events (no sockets)."""

from __future__ import annotations

from gateway.catalog import KNOWN_MODELS
from gateway.core.events import Finish, SignatureDelta, TextDelta, ThinkingDelta, ToolCallEvent, UsageEvent, collect
from gateway.core.request import (
    Image,
    Message,
    Request,
    Text,
    Thinking,
    ThinkingConfig,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from gateway.translate.cloudcode import ResponseParser, build_request, session_id
from gateway.translate.signatures import SKIP_SIGNATURE, SignatureRegistry

CLAUDE = KNOWN_MODELS["claude-sonnet-4-6"]
CLAUDE_THINKING = KNOWN_MODELS["claude-opus-4-6-thinking"]
GEMINI = KNOWN_MODELS["gemini-3-flash-agent"]
SIG_C = "R" + "c" * 80
SIG_G = "C" + "g" * 80
WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})


def _build(request: Request, model=CLAUDE, registry: SignatureRegistry | None = None) -> dict:
    return build_request(request, model, project="proj", signatures=registry or SignatureRegistry()).body


def _tool_history(thinking: Thinking | None = None) -> list[Message]:
    assistant_parts = ([thinking] if thinking else []) + [ToolCall("toolu_1", "get_weather", {"city": "Paris"})]
    return [
        Message("user", [Text("Weather in Paris?")]),
        Message("assistant", assistant_parts),
        Message("user", [ToolResult("toolu_1", [Text("sunny")])]),
    ]


def test_envelope_and_basic_mapping() -> None:
    body = _build(
        Request(
            model="claude-sonnet-4-6",
            messages=[Message("user", [Text("hi"), Text("  ")]), Message("assistant", [Text("hello")])],
            system=["be brief"],
            max_tokens=128000,
            temperature=0.5,
            stop=["END"],
        )
    )
    assert set(body) == {"project", "model", "userAgent", "requestType", "requestId", "request"}
    assert body["project"] == "proj" and body["model"] == "claude-sonnet-4-6"
    inner = body["request"]
    assert inner["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
    ]
    assert inner["systemInstruction"] == {"role": "user", "parts": [{"text": "be brief"}]}
    # Claude Code asks for 128000; the model allows 64000.
    assert inner["generationConfig"] == {"temperature": 0.5, "stopSequences": ["END"], "maxOutputTokens": 64000}
    assert "thinkingConfig" not in inner["generationConfig"]


def test_session_id_is_stable_across_turns() -> None:
    first = Request(model="m", messages=[Message("user", [Text("start")])])
    later = Request(model="m", messages=[Message("user", [Text("start")]), Message("assistant", [Text("x")]),
                                         Message("user", [Text("more")])])
    assert session_id(first) == session_id(later)
    assert len(session_id(first)) == 32


def test_tool_round_trip_mapping() -> None:
    body = _build(Request(model="m", messages=_tool_history(), tools=[WEATHER]))
    contents = body["request"]["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}}}]
    assert contents[2]["parts"] == [
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"result": "sunny"}}}
    ]
    declaration = body["request"]["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather"
    assert declaration["parameters"]["properties"] == {"city": {"type": "string"}}
    assert body["request"]["toolConfig"] == {"functionCallingConfig": {"mode": "VALIDATED"}}


def test_tool_choice_modes() -> None:
    def mode(choice: ToolChoice, model=GEMINI) -> dict:
        return _build(Request(model="m", messages=_tool_history(), tools=[WEATHER], tool_choice=choice), model)[
            "request"]["toolConfig"]["functionCallingConfig"]

    assert mode(ToolChoice("auto")) == {"mode": "AUTO"}
    assert mode(ToolChoice("any")) == {"mode": "ANY"}
    assert mode(ToolChoice("none")) == {"mode": "NONE"}
    assert mode(ToolChoice("tool", "get_weather")) == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}


def test_error_tool_result_and_images() -> None:
    history = _tool_history()
    history[2] = Message("user", [ToolResult("toolu_1", [Text("boom"), Image("image/png", "aGk=")], is_error=True),
                                  Text("and this"), Image("image/jpeg", "aGk=")])
    parts = _build(Request(model="m", messages=history, tools=[WEATHER]))["request"]["contents"][2]["parts"]
    assert parts == [
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"error": "boom"}}},
        {"inlineData": {"mimeType": "image/png", "data": "aGk="}},
        {"text": "and this"},
        {"inlineData": {"mimeType": "image/jpeg", "data": "aGk="}},
    ]


def test_claude_thinking_replayed_exactly_and_budget_below_max() -> None:
    request = Request(model="m", messages=_tool_history(Thinking("let me check", SIG_C)), tools=[WEATHER],
                      max_tokens=4000, thinking=ThinkingConfig(budget_tokens=10000))
    body = _build(request, CLAUDE_THINKING)
    model_parts = body["request"]["contents"][1]["parts"]
    assert model_parts[0] == {"text": "let me check", "thought": True, "thoughtSignature": SIG_C}
    config = body["request"]["generationConfig"]
    assert config["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 10000}
    assert config["maxOutputTokens"] > 10000
    assert body["request"]["systemInstruction"]["parts"][-1]["text"].startswith("Interleaved thinking")


def test_claude_tool_loop_without_thinking_is_closed() -> None:
    """A model switch can leave an open tool loop without signed thinking; Claude would reject it."""
    body = _build(Request(model="m", messages=_tool_history(), tools=[WEATHER]), CLAUDE_THINKING)
    contents = body["request"]["contents"]
    assert contents[-2] == {"role": "model", "parts": [{"text": "[Tool execution completed.]"}]}
    assert contents[-1] == {"role": "user", "parts": [{"text": "[Continue]"}]}


def test_signatures_never_cross_families() -> None:
    registry = SignatureRegistry()
    registry.remember(SIG_G, "gemini")
    registry.remember(SIG_C, "claude")
    # A Gemini signature is not replayed to Claude: the thinking block is dropped.
    claude_body = _build(Request(model="m", messages=_tool_history(Thinking("t", SIG_G)), tools=[WEATHER]),
                         CLAUDE_THINKING, registry)
    assert all(not p.get("thought") for c in claude_body["request"]["contents"] for p in c["parts"])
    # A Claude signature never reaches Gemini: the call gets the skip sentinel instead.
    gemini_body = _build(Request(model="m", messages=_tool_history(Thinking("t", SIG_C)), tools=[WEATHER]),
                         GEMINI, registry)
    call = gemini_body["request"]["contents"][1]["parts"]
    assert call == [{"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}},
                     "thoughtSignature": SKIP_SIGNATURE}]


def test_a_signature_in_either_base64_alphabet_is_one_signature() -> None:
    """The google-genai SDK decodes signatures and sends them back URL-safe: still the signature the gateway saw."""
    registry = SignatureRegistry()
    standard = "CiQB+/8/" + "A" * 56 + "=="
    registry.remember(standard, "claude")
    assert registry.family_of("CiQB-_8_" + "A" * 56) == "claude"
    assert registry.family_of("CiQB-_8_" + "B" * 56) is None


def test_gemini_call_signature_from_registry_or_turn() -> None:
    registry = SignatureRegistry()
    registry.remember_tool_call("toolu_1", SIG_G, "gemini")
    body = _build(Request(model="m", messages=_tool_history(), tools=[WEATHER]), GEMINI, registry)
    assert body["request"]["contents"][1]["parts"][0]["thoughtSignature"] == SIG_G
    registry2 = SignatureRegistry()
    registry2.remember(SIG_G, "gemini")
    body2 = _build(Request(model="m", messages=_tool_history(Thinking("t", SIG_G)), tools=[WEATHER]), GEMINI, registry2)
    assert body2["request"]["contents"][1]["parts"] == [
        {"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG_G}
    ]


def test_tool_names_are_sanitised_and_restored() -> None:
    tool = Tool("my tool/v2", "", {"type": "object", "properties": {"a": {"type": "string"}}})
    translation = build_request(Request(model="m", messages=[Message("user", [Text("x")])], tools=[tool]), CLAUDE,
                                project="p", signatures=SignatureRegistry())
    assert translation.body["request"]["tools"][0]["functionDeclarations"][0]["name"] == "my_tool_v2"
    parser = ResponseParser(translation.tool_names)
    events = parser.feed({"candidates": [{"content": {"parts": [{"functionCall": {"name": "my_tool_v2", "args": {}}}]}}]})
    assert isinstance(events[0], ToolCallEvent) and events[0].name == "my tool/v2"


def test_parser_events_and_finish() -> None:
    parser = ResponseParser()
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "", "thought": True, "thoughtSignature": SIG_C}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "Hello"}, {"text": "\n\n"}]}}]},
        {"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "MAX_TOKENS"}],
         "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 2,
                           "cachedContentTokenCount": 4}},
    ]
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    assert [type(e) for e in events] == [ThinkingDelta, SignatureDelta, TextDelta, TextDelta, UsageEvent]
    finish = parser.finish()
    assert isinstance(finish, Finish) and finish.reason == "max_tokens"
    response = collect("m", events + [finish])
    assert response.content[0].text == "hmm" and response.content[0].signature == SIG_C
    assert response.content[1].text == "Hello\n\n"
    assert response.usage.cached_tokens == 4


def test_function_call_wins_over_stop() -> None:
    parser = ResponseParser()
    parser.feed({"candidates": [{"content": {"parts": [{"thoughtSignature": SIG_G, "functionCall": {"name": "f", "args": {"a": 1}}}]},
                                 "finishReason": "STOP"}]})
    assert parser.finish().reason == "tool_use"
