"""What OpenAI clients cannot carry, kept server-side: unit tests of the pieces (no sockets)."""

from __future__ import annotations

from gateway.translate.replay import call_id, replayable, restore_thinking
from gateway.catalog import KNOWN_MODELS
from gateway.state import local as local_state
from gateway.core.events import Finish, SignatureDelta, TextDelta, ThinkingDelta, ToolCallEvent, Usage
from gateway.core.request import Message, Request, Text, Thinking, ToolCall, ToolResult
from gateway.schemas.openai import CHAT_COMPLETION_SCHEMA
from gateway.translate import signatures as signatures_module
from gateway.translate.cloudcode import build_request
from gateway.translate.signatures import SignatureRegistry

SIG_C = "R" + "c" * 80
SIG_G = "C" + "g" * 80


def test_turn_thinking_keeps_only_signed_blocks_as_fresh_copies() -> None:
    registry = SignatureRegistry()
    registry.remember_turn_thinking("call_a", [Thinking("unsigned"), Thinking("first", SIG_C), Thinking("x", None)])
    restored = registry.turn_thinking("call_a")
    assert restored == [Thinking("first", SIG_C)]
    restored[0].text = "edited"
    assert registry.turn_thinking("call_a") == [Thinking("first", SIG_C)]
    assert registry.turn_thinking("call_b") == []
    registry.remember_turn_thinking("call_c", [Thinking("never signed")])
    assert registry.turn_thinking("call_c") == []


def test_turn_thinking_expires_and_is_bounded(monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(local_state.time, "monotonic", lambda: now[0])
    registry = SignatureRegistry()
    registry.remember_turn_thinking("call_old", [Thinking("t", SIG_C)])
    now[0] += 2 * 3600 + 1
    assert registry.turn_thinking("call_old") == []
    for n in range(signatures_module.MAX_THINKING_TURNS + 1):
        registry.remember_turn_thinking(f"call_{n}", [Thinking("t", SIG_C)])
    assert registry.turn_thinking("call_0") == []
    assert registry.turn_thinking(f"call_{signatures_module.MAX_THINKING_TURNS}") != []


def _events() -> list:
    return [
        ThinkingDelta("Let me "), ThinkingDelta("think."), SignatureDelta(SIG_C),
        TextDelta("Checking."),
        ToolCallEvent("toolu_up1", "get_weather", {"city": "Oslo"}),
        ToolCallEvent("toolu_up2", "get_weather", {"city": "Rome"}, signature=SIG_G),
        Finish("tool_use", Usage()),
    ]


def _generator(events: list):  # noqa: ANN202 - replayable() needs a closable generator
    yield from events


def test_replayable_renames_calls_and_keeps_claude_thinking_under_the_first() -> None:
    registry = SignatureRegistry()
    out = list(replayable(_generator(_events()), registry, "claude"))
    first, second = [e for e in out if isinstance(e, ToolCallEvent)]
    assert first.id.startswith("call_") and second.id.startswith("call_") and first.id != second.id
    assert registry.turn_thinking(first.id) == [Thinking("Let me think.", SIG_C)]
    assert registry.turn_thinking(second.id) == []
    assert registry.tool_call_signature(second.id) == (SIG_G, "claude")


def test_replayable_keeps_no_thinking_for_gemini_but_the_call_signature() -> None:
    registry = SignatureRegistry()
    out = list(replayable(_generator(_events()), registry, "gemini"))
    calls = [e for e in out if isinstance(e, ToolCallEvent)]
    assert registry.turn_thinking(calls[0].id) == []
    assert registry.tool_call_signature(calls[1].id) == (SIG_G, "gemini")


def test_replayable_closes_the_upstream_generator() -> None:
    closed = []

    def upstream():  # noqa: ANN202
        try:
            yield TextDelta("a")
            yield TextDelta("b")
        finally:
            closed.append(True)

    wrapped = replayable(upstream(), SignatureRegistry(), "claude")
    next(wrapped)
    wrapped.close()
    assert closed == [True]


def test_call_ids_are_random_and_openai_shaped() -> None:
    ids = {call_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("call_") and len(i) == 29 and i[5:].isalnum() for i in ids)


def test_restored_thinking_reaches_only_claude_targets() -> None:
    registry = SignatureRegistry()
    registry.remember(SIG_C, "claude")
    registry.remember_turn_thinking("call_x", [Thinking("why", SIG_C)])

    def request() -> Request:
        return Request(model="m", messages=[
            Message("user", [Text("q")]),
            Message("assistant", [Text("calling"), ToolCall("call_x", "f", {})]),
            Message("user", [ToolResult("call_x", [Text("r")], name="f")]),
        ])

    claude = request()
    restore_thinking(claude, registry)
    assert claude.messages[1].parts[0] == Thinking("why", SIG_C)
    body = build_request(claude, KNOWN_MODELS["claude-opus-4-6-thinking"], project="p", signatures=registry).body
    assert body["request"]["contents"][1]["parts"][0] == {"text": "why", "thought": True, "thoughtSignature": SIG_C}

    gemini = request()
    restore_thinking(gemini, registry)
    body = build_request(gemini, KNOWN_MODELS["gemini-3-flash-agent"], project="p", signatures=registry).body
    assert SIG_C not in str(body)


def test_client_thinking_is_not_overwritten() -> None:
    registry = SignatureRegistry()
    registry.remember_turn_thinking("call_x", [Thinking("cached", SIG_C)])
    own = Thinking("client's", "R" + "z" * 80)
    request = Request(model="m", messages=[Message("assistant", [own, ToolCall("call_x", "f", {})])])
    restore_thinking(request, registry)
    assert request.messages[0].parts == [own, ToolCall("call_x", "f", {})]


def test_legacy_function_call_ids_are_stable_across_turns() -> None:
    """Derived from the message position, so the upstream prompt cache sees the same history each turn."""
    history = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "r"},
    ]
    first = CHAT_COMPLETION_SCHEMA.load({"model": "m", "messages": history}).request
    later = CHAT_COMPLETION_SCHEMA.load({"model": "m", "messages": history + [
        {"role": "assistant", "content": "done"}, {"role": "user", "content": "again"}]}).request
    call = first.messages[1].parts[0]
    assert call.id == "call_legacy_1" and later.messages[1].parts[0] == call
    assert first.messages[2].parts[0].tool_call_id == call.id
