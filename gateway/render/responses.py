"""Canonical events as the OpenAI Responses API's response object and its event stream.

One state machine (``ResponseBuilder``) serves both: a stream sends its events as SSE, a whole answer is the
response object it ends with. Items are strictly sequential (an item's ``.done`` comes before the next item's
``.added``), ``sequence_number`` counts every event from 0, and every stream ends with ``response.completed``,
``response.incomplete`` or, after ``error``, ``response.failed``. docs/clients.md ("Responses API") holds
the sequence and what the openai SDK and Codex rely on.

Reasoning items carry ``encrypted_content``: what the upstream needs to see again on the next turn, sealed by
a callable the family passes (the renderer knows no keys). The full items, sealed content included, are what a
stored response keeps; the client sees the sealed content only when it asked for it (``include``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .. import fastjson
from ..core.events import (
    Citation,
    Event,
    Finish,
    KeepAlive,
    Response,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallEvent,
    Usage,
    UsageEvent,
    WebSearchEvent,
)
from ..errors import GatewayError
from . import openai as openai_render

# An SSE comment: the openai SDK's decoder and Codex's both skip it.
PING = b": keepalive\n\n"
# Stop reasons that leave a response incomplete, and the reason OpenAI gives for each.
INCOMPLETE = {"max_tokens": "max_output_tokens", "content_filter": "content_filter", "refusal": "content_filter"}
# Words in an upstream refusal that mean the conversation no longer fits the model.
TOO_LONG = ("too long", "exceeds the maximum", "context length", "context window", "too many tokens")


class ToolKind(Protocol):
    """How calls of a declared tool come back: ``function``, ``custom`` or ``local_shell``, under which names."""

    kind: str
    name: str
    namespace: str | None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def usage_body(usage: Usage) -> dict[str, Any]:
    """OpenAI counts cached tokens inside input tokens and reasoning tokens inside output tokens."""
    output = usage.output_tokens + usage.thinking_tokens
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": usage.thinking_tokens},
        "total_tokens": usage.prompt_tokens + output,
    }


def failure(error: GatewayError) -> dict[str, str]:
    """A response's ``error``: the codes Codex acts on (retry after a delay, a context too long, ...)."""
    message = error.message
    if error.code:
        code = error.code
    elif error.kind == "rate_limited":
        code = "rate_limit_exceeded"
        if error.retry_after is not None:
            message = f"{message} (try again in {max(1, round(error.retry_after))}s)"
    elif error.kind == "invalid_request" and any(words in message.lower() for words in TOO_LONG):
        code = "context_length_exceeded"
    elif error.kind == "invalid_request":
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": message}


def public(item: dict[str, Any], include_encrypted: bool) -> dict[str, Any]:
    """An item as the client sees it: without the sealed reasoning unless it asked for it."""
    if include_encrypted or "encrypted_content" not in item:
        return item
    return {key: value for key, value in item.items() if key != "encrypted_content"}


def public_response(response: dict[str, Any], include_encrypted: bool) -> dict[str, Any]:
    return {**response, "output": [public(item, include_encrypted) for item in response["output"]]}


def sse(event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (event["type"].encode(), fastjson.dumps(event))


def events_of(response: Response) -> Iterator[Event]:
    """A collected answer as the events it came from, so whole answers go through the same builder."""
    last_signature = None
    for block in response.content:
        if isinstance(block, ThinkingBlock):
            if block.text:
                yield ThinkingDelta(block.text)
            if block.signature:
                yield SignatureDelta(block.signature)
            last_signature = block.signature
        elif isinstance(block, TextBlock):
            yield TextDelta(block.text, block.citations)
        elif isinstance(block, WebSearchEvent):
            yield block
        else:
            if block.signature and block.signature != last_signature:
                yield SignatureDelta(block.signature)  # a Gemini call's, which collecting set apart
            last_signature = None
            yield block
    yield Finish(response.stop_reason, response.usage, response.stop_sequence, response.refusal)


class ResponseBuilder:
    """The response object and its stream events, built from canonical events.

    ``base`` holds the fields the response echoes from the request; ``seal(text, signature)`` makes a
    reasoning item's ``encrypted_content``; ``on_finish`` receives the finished response with every item whole
    (to be stored) before the client hears it is done.
    """

    def __init__(
        self,
        base: dict[str, Any],
        *,
        tools: dict[str, ToolKind],
        seal: Callable[[str, str], str | None],
        summary: bool,
        include_encrypted: bool,
        parallel_tool_calls: bool = True,
        on_finish: Callable[[dict[str, Any]], None] = lambda response: None,
    ) -> None:
        self.response: dict[str, Any] = {
            **base, "status": "in_progress", "error": None, "incomplete_details": None, "output": [],
            "usage": None}
        self.tools = tools
        self.seal = seal
        self.summary = summary
        self.include_encrypted = include_encrypted
        self.parallel_tool_calls = parallel_tool_calls
        self.on_finish = on_finish
        self.started = False
        self.finished = False
        self._sequence = 0
        self._usage = Usage()
        # The item being streamed: its dict (whole, as stored), its text so far, and that text's citations.
        self._open: dict[str, Any] | None = None
        self._text = ""
        self._annotations: list[dict[str, Any]] = []
        self._signature: str | None = None
        # A Gemini signature that arrived on a call or text part: it goes into a reasoning item before the call.
        self._pending: str | None = None
        self._calls = 0

    @property
    def output(self) -> list[dict[str, Any]]:
        return self.response["output"]

    # -- events ---------------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.started:
            out += self._start()
        if isinstance(event, KeepAlive):
            return out
        if isinstance(event, UsageEvent):
            self._usage = event.usage
        elif isinstance(event, ThinkingDelta):
            if event.text:
                out += self._reasoning_delta(event.text)
        elif isinstance(event, SignatureDelta):
            if self._open is not None and self._open["type"] == "reasoning" and self._signature is None:
                self._signature = event.signature
                out += self._close()
            else:
                self._pending = event.signature
        elif isinstance(event, TextDelta):
            if event.text:
                self._pending = None  # a signature on text: Gemini needs it back only on calls
                out += self._text_delta(event.text, event.citations)
        elif isinstance(event, WebSearchEvent):
            out += self._search(event)
        elif isinstance(event, ToolCallEvent):
            out += self._call(event)
        elif isinstance(event, Finish):
            out += self._finish(event)
        return out

    def fail(self, error: GatewayError) -> list[dict[str, Any]]:
        """``error``, then ``response.failed``: the SDK raises on the first, Codex acts on the second."""
        out = [] if self.started else self._start()
        self._open = None
        details = failure(error)
        kind, _ = openai_render.ERRORS.get(error.kind, ("server_error", None))
        out.append(self._event("error", code=details["code"], message=details["message"], param=error.param,
                               error={"type": kind, **details, "param": error.param}))
        self.response.update(status="failed", error=details, usage=usage_body(self._usage))
        self.finished = True
        out.append(self._event("response.failed", response=self._public_response()))
        return out

    def result(self) -> dict[str, Any]:
        """The finished response, as the client sees it."""
        return self._public_response()

    # -- items ----------------------------------------------------------------------------------------

    def _start(self) -> list[dict[str, Any]]:
        self.started = True
        return [self._event("response.created", response=self._public_response()),
                self._event("response.in_progress", response=self._public_response())]

    def _reasoning_delta(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._open is None or self._open["type"] != "reasoning":
            out += self._close()
            out += self._add({"id": new_id("rs"), "type": "reasoning", "summary": []})
            if self.summary:
                out.append(self._item_event("response.reasoning_summary_part.added", summary_index=0,
                                            part={"type": "summary_text", "text": ""}))
        self._text += text
        if self.summary:
            out.append(self._item_event("response.reasoning_summary_text.delta", summary_index=0, delta=text))
        return out

    def _text_delta(self, text: str, citations: tuple[Citation, ...] = ()) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._open is None or self._open["type"] != "message":
            out += self._close()
            out += self._add({"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                              "content": []})
            out.append(self._item_event("response.content_part.added", content_index=0, part=_text_part("")))
        start = len(self._text)
        self._text += text
        out.append(self._item_event("response.output_text.delta", content_index=0, delta=text, logprobs=[]))
        for citation in citations:  # the span just sent, backed by a search result
            annotation = {"type": "url_citation", "start_index": start, "end_index": len(self._text),
                          "url": citation.url, "title": citation.title}
            out.append(self._item_event("response.output_text.annotation.added", content_index=0,
                                        annotation_index=len(self._annotations), annotation=annotation))
            self._annotations.append(annotation)
        return out

    def _search(self, search: WebSearchEvent) -> list[dict[str, Any]]:
        """A search the gateway ran: a ``web_search_call`` item, searching then completed (or failed)."""
        out = self._close()
        item = {"id": new_id("ws"), "type": "web_search_call", "status": "in_progress",
                "action": {"type": "search", "query": search.query}}
        out += self._add(item)
        out.append(self._item_event("response.web_search_call.in_progress"))
        out.append(self._item_event("response.web_search_call.searching"))
        if search.error is None:
            out.append(self._item_event("response.web_search_call.completed"))
        item["status"] = "completed" if search.error is None else "failed"
        item["action"]["sources"] = [{"type": "url", "url": result.url} for result in search.results]
        return out + self._done()

    def _call(self, call: ToolCallEvent) -> list[dict[str, Any]]:
        out = self._close()
        if self._calls and not self.parallel_tool_calls:
            return out  # the client asked for one call per turn: the first is the one
        self._calls += 1
        if self._pending is not None:
            signature, self._pending = self._pending, None
            out += self._add({"id": new_id("rs"), "type": "reasoning", "summary": []})
            self._signature = signature
            out += self._close()
        spec = self.tools.get(call.name)
        kind = spec.kind if spec is not None else "function"
        name = spec.name if spec is not None else call.name
        namespace = {"namespace": spec.namespace} if spec is not None and spec.namespace else {}
        if kind == "custom":
            value = call.arguments.get("input")
            text = value if isinstance(value, str) else json.dumps(call.arguments, ensure_ascii=False)
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "call_id": call.id, **namespace, "name": name,
                    "input": ""}
            out += self._add(item)
            out.append(self._item_event("response.custom_tool_call_input.delta", delta=text))
            out.append(self._item_event("response.custom_tool_call_input.done", input=text))
            item["input"] = text
        elif kind == "local_shell":
            action: dict[str, Any] = {"type": "exec", "command": _command(call.arguments.get("command")),
                                      "env": {}}
            if isinstance(call.arguments.get("workdir"), str):
                action["working_directory"] = call.arguments["workdir"]
            if isinstance(call.arguments.get("timeout_ms"), int):
                action["timeout_ms"] = call.arguments["timeout_ms"]
            item = {"id": new_id("lsh"), "type": "local_shell_call", "call_id": call.id, "status": "in_progress",
                    "action": action}
            out += self._add(item)
            item["status"] = "completed"
        else:
            arguments = fastjson.dumps_text(call.arguments)
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": call.id,
                    **namespace, "name": name, "arguments": ""}
            out += self._add(item)
            out.append(self._item_event("response.function_call_arguments.delta", delta=arguments))
            out.append(self._item_event("response.function_call_arguments.done", arguments=arguments))
            item.update(status="completed", arguments=arguments)
        out += self._done()
        return out

    def _refusal(self, text: str) -> list[dict[str, Any]]:
        out = self._add({"id": new_id("msg"), "type": "message", "role": "assistant", "status": "in_progress",
                         "content": []})
        out.append(self._item_event("response.content_part.added", content_index=0,
                                    part={"type": "refusal", "refusal": ""}))
        out.append(self._item_event("response.refusal.delta", content_index=0, delta=text))
        out.append(self._item_event("response.refusal.done", content_index=0, refusal=text))
        part = {"type": "refusal", "refusal": text}
        out.append(self._item_event("response.content_part.done", content_index=0, part=part))
        self._open.update(status="completed", content=[part])  # type: ignore[union-attr]
        return out + self._done()

    def _add(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self._open, self._text, self._signature, self._annotations = item, "", None, []
        self.output.append(item)
        return [self._event("response.output_item.added", output_index=len(self.output) - 1,
                            item=public(dict(item), self.include_encrypted))]

    def _close(self) -> list[dict[str, Any]]:
        """Finish the reasoning or message item being streamed, if any."""
        item = self._open
        if item is None:
            return []
        out: list[dict[str, Any]] = []
        text = self._text
        if item["type"] == "reasoning":
            if self.summary and text:
                part = {"type": "summary_text", "text": text}
                out.append(self._item_event("response.reasoning_summary_text.done", summary_index=0, text=text))
                out.append(self._item_event("response.reasoning_summary_part.done", summary_index=0, part=part))
                item["summary"] = [part]
            if self._signature:
                sealed = self.seal(text, self._signature)
                if sealed is not None:
                    item["encrypted_content"] = sealed
        elif item["type"] == "message":
            part = _text_part(text, self._annotations)
            out.append(self._item_event("response.output_text.done", content_index=0, text=text, logprobs=[]))
            out.append(self._item_event("response.content_part.done", content_index=0, part=part))
            item.update(status="completed", content=[part])
        return out + self._done()

    def _done(self) -> list[dict[str, Any]]:
        item, self._open = self._open, None
        return [self._event("response.output_item.done", output_index=len(self.output) - 1,
                            item=public(item, self.include_encrypted))]  # type: ignore[arg-type]

    def _finish(self, finish: Finish) -> list[dict[str, Any]]:
        out = self._close()
        if finish.refusal:
            out += self._refusal(finish.refusal)
        self._usage = finish.usage
        reason = INCOMPLETE.get(finish.reason)
        self.response.update(status="incomplete" if reason else "completed", usage=usage_body(finish.usage),
                             incomplete_details={"reason": reason} if reason else None)
        self.finished = True
        self.on_finish(self.response)
        kind = "response.incomplete" if reason else "response.completed"
        out.append(self._event(kind, response=self._public_response()))
        return out

    # -- wire -----------------------------------------------------------------------------------------

    def _public_response(self) -> dict[str, Any]:
        return public_response(self.response, self.include_encrypted)

    def _event(self, kind: str, **payload: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **payload}
        self._sequence += 1
        return event

    def _item_event(self, kind: str, **payload: Any) -> dict[str, Any]:
        return self._event(kind, item_id=self._open["id"], output_index=len(self.output) - 1,  # type: ignore[index]
                           **payload)


def _text_part(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": list(annotations or ()), "logprobs": []}


def _command(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(piece) for piece in value]
    return ["bash", "-lc", value] if isinstance(value, str) else []


class StreamRenderer:
    """The builder's events as SSE: ``event:`` line and JSON with its ``type``, no ``[DONE]``."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self.builder = builder

    def feed(self, event: Event) -> list[bytes]:
        if isinstance(event, KeepAlive) and self.builder.started:
            return [PING]
        return [sse(item) for item in self.builder.feed(event)]

    def error(self, error: GatewayError) -> bytes:
        return b"".join(sse(item) for item in self.builder.fail(error))

    def trailer(self) -> list[bytes]:
        return []
