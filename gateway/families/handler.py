"""The one request handler behind every family's generation endpoint."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from ..api.streaming import prime, sse_response
from ..core.events import collect
from ..dispatch import Outcome
from ..runtime import current_gateway
from .registry import Family


def generate(family: Family, body: dict[str, Any]) -> Response:
    """Load the request, resolve its model once, run the attempts and render the answer in ``family``'s format.

    A stream is primed before its renderer exists: the attempts run there, so failures before any content still
    get a real HTTP status, and the renderer names the model that answered (a fallback may have).
    """
    gateway = current_gateway()
    call = family.load(body, gateway)
    canonical = call.request
    g.access.requested, g.access.stream = canonical.model, canonical.stream
    model = gateway.dispatcher.resolve_model(canonical)
    g.access.model = model.id  # metric labels take listed ids only, never the client's string
    g.outcome = outcome = Outcome()
    events = family.relay(gateway.web_search.events(canonical, outcome, model), call, gateway, model)
    if canonical.stream:
        events = prime(events)
        renderer = family.stream(call, outcome.model or model.id)
        response = sse_response(
            events,
            renderer.feed,
            renderer.error,
            ping=family.ping,
            ping_interval=gateway.settings.ping_interval,
            abort=outcome.abort,
            trailer=renderer.trailer,
        )
    else:
        answer = collect(model.id, events)
        response = jsonify(family.answer(call, answer, outcome.model or model.id))
    response.headers.update(outcome.response_headers())
    return response
