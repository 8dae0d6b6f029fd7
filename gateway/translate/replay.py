"""What OpenAI clients do not carry back, kept by the gateway under the tool calls they do carry.

Chat Completions clients send back no thinking and no signatures (docs/clients.md, "Thinking over OpenAI"),
and Responses API clients send reasoning back only when they asked for it sealed. So both OpenAI families give
tool calls the gateway's own random ``call_`` ids and keep, under those ids in the signature registry, what a
replay needs: a Gemini call's signature, and a Claude turn's signed thinking. The ids are unguessable, so one
client's conversation can never pick up another's thinking.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Generator
from dataclasses import replace

from ..core.events import Event, SignatureDelta, ThinkingDelta, ToolCallEvent
from ..core.request import Request, Thinking, ToolCall
from .signatures import SignatureRegistry

_ID_ALPHABET = string.ascii_letters + string.digits


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def restore_thinking(request: Request, signatures: SignatureRegistry) -> None:
    """Put back the signed thinking of earlier Claude turns, found by each turn's first tool-call id.

    A turn that already holds thinking keeps its own. The translator sends each signature only to the family
    that made it, so this is safe for any target.
    """
    for message in request.messages:
        if message.role != "assistant" or any(isinstance(part, Thinking) for part in message.parts):
            continue
        first = next((part for part in message.parts if isinstance(part, ToolCall)), None)
        if first is not None:
            message.parts[:0] = signatures.turn_thinking(first.id)


def replayable(
    events: Generator[Event, None, None], signatures: SignatureRegistry, signer: str | None
) -> Generator[Event, None, None]:
    """The events with tool calls renamed to ``call_`` ids, remembering what replays of this turn need."""
    thinking: list[Thinking] = []
    first_call = True
    try:
        for event in events:
            if isinstance(event, ThinkingDelta):
                if not thinking or thinking[-1].signature:
                    thinking.append(Thinking(""))
                thinking[-1].text += event.text
            elif isinstance(event, SignatureDelta) and thinking:
                thinking[-1].signature = event.signature
            elif isinstance(event, ToolCallEvent):
                event = replace(event, id=call_id())
                if event.signature and signer is not None:
                    signatures.remember_tool_call(event.id, event.signature, signer)
                if first_call and signer == "claude":
                    signatures.remember_turn_thinking(event.id, thinking)
                first_call = False
            yield event
    finally:
        events.close()
