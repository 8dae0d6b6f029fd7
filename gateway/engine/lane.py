"""What one kind of upstream call sends and how its answer is read: the part of a request the engine does not own.

The dispatcher drives attempts (accounts, retries, failover, keep-alives, disconnects) for any lane. The canonical
lane translates a canonical request for Cloud Code and its answer into canonical events; a passthrough lane (a
client that already speaks Google's format) only wraps the body in the envelope and unwraps the chunks.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..catalog import ANTHROPIC, ModelInfo
from ..core.events import Event, Finish, SignatureDelta, TextDelta, ToolCallEvent, Usage
from ..core.request import Request
from ..translate.cloudcode import ResponseParser, build_request, session_id
from ..translate.signatures import SignatureRegistry

NO_RESPONSE_TEXT = "[No response after retries - please try again]"


class Reader(Protocol):
    """Reads one attempt's answer, chunk by chunk."""

    #: True once the answer holds something the client must see: from then on nothing is re-sent.
    saw_content: bool
    #: The usage the answer reported, once it ended.
    usage: Usage

    def feed(self, chunk: dict[str, Any]) -> list[Any]: ...

    def finish(self) -> list[Any]:
        """What ends the answer (the canonical lane's Finish event), once the upstream closed it."""
        ...


class Lane(Protocol):
    model: ModelInfo
    #: The conversation's key: the upstream prompt cache and the account affinity go by it.
    session: str

    def prepare(self, project: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The upstream body for the account's project, and the extra headers it needs."""
        ...

    def reader(self) -> Reader: ...

    def nothing(self) -> list[Any]:
        """What the client gets when every attempt came back without content."""
        ...


class CanonicalLane:
    """A canonical request translated for Cloud Code; the answer as canonical events."""

    def __init__(self, request: Request, model: ModelInfo, signatures: SignatureRegistry) -> None:
        self.request = request
        self.model = model
        self.signatures = signatures
        self.session = session_id(request)
        self._tool_names: dict[str, str] = {}

    def prepare(self, project: str) -> tuple[dict[str, Any], dict[str, str]]:
        translation = build_request(self.request, self.model, project=project, signatures=self.signatures)
        self._tool_names = translation.tool_names
        headers = {}
        if self.model.vendor == ANTHROPIC and translation.thinking:
            headers["anthropic-beta"] = "interleaved-thinking-2025-05-14"
        return translation.body, headers

    def reader(self) -> EventReader:
        return EventReader(ResponseParser(self._tool_names), self.model, self.signatures)

    def nothing(self) -> list[Event]:
        return [TextDelta(NO_RESPONSE_TEXT), Finish(reason="end_turn", usage=Usage())]


class EventReader:
    """The canonical parser, remembering who made every signature that passes (for later replays)."""

    def __init__(self, parser: ResponseParser, model: ModelInfo, signatures: SignatureRegistry) -> None:
        self._parser = parser
        self._signer = model.signer
        self._signatures = signatures

    @property
    def saw_content(self) -> bool:
        return self._parser.saw_content

    @property
    def usage(self) -> Usage:
        return self._parser.usage

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = self._parser.feed(chunk)
        if self._signer is not None:
            for event in events:
                if isinstance(event, SignatureDelta):
                    self._signatures.remember(event.signature, self._signer)
                elif isinstance(event, ToolCallEvent) and event.signature:
                    self._signatures.remember_tool_call(event.id, event.signature, self._signer)
        return events

    def finish(self) -> list[Event]:
        return [self._parser.finish()]
