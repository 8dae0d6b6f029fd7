"""Relaying an event stream to a client as SSE, shared by the API families.

The first event is pulled before the response starts, so failures that happen before any content (no
account, 429 everywhere, bad request upstream) still get a real HTTP status in the caller's format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from flask import Response, stream_with_context

from ..core.events import Event
from ..errors import GatewayError, UpstreamError

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def prime(events: Iterator[Event]) -> Iterator[Event]:
    """Run the generator up to its first event (raising GatewayError if it fails before that)."""
    first = next(events, None)

    def chained() -> Iterator[Event]:
        try:
            if first is not None:
                yield first
            yield from events
        finally:
            events.close()

    return chained()


def sse_response(
    events: Iterator[Event],
    render: Callable[[Event], list[bytes]],
    render_error: Callable[[GatewayError], bytes],
    trailer: Callable[[], list[bytes]] | None = None,
) -> Response:
    """Stream ``events`` through ``render``; a failure mid-stream becomes one error event, then EOF."""

    def body() -> Iterator[bytes]:
        try:
            for event in events:
                for piece in render(event):
                    yield piece
            if trailer is not None:
                yield from trailer()
        except GatewayError as exc:
            log.warning("stream ended with an error: %s", exc.message)
            yield render_error(exc)
        except Exception:  # noqa: BLE001 - the client gets an error event, the log gets the trace
            log.exception("stream failed")
            yield render_error(UpstreamError("the gateway failed while relaying the answer"))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    return Response(stream_with_context(body()), mimetype="text/event-stream", headers=SSE_HEADERS)
