"""Google's Gemini API: models, generateContent, streamGenerateContent and countTokens under /v1beta (and /v1).

Google's clients (gemini-cli, the google-genai SDKs) call ``POST /{version}/models/{model}:{method}``. A Gemini
model is served by the passthrough lane, with the client's body as Google's format has it; any other model through
the canonical model, as the other families are (docs/clients.md, "Gemini API"). Under ``/v1`` only the
``:method`` calls are this family's: ``GET /v1/models`` and ``/v1/models/{id}`` stay OpenAI's, and Google's model
list is served under ``/v1beta`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from ..catalog import ModelInfo
from ..core.events import KeepAlive, collect
from ..dispatch import Outcome
from ..engine import passthrough
from ..errors import GatewayError, NotFound
from ..render import gemini as render
from ..runtime import Gateway, current_gateway
from ..schemas.gemini import check_passthrough, count_body, load_generation
from ..translate.replay import replayable, restore_thinking
from .body import json_body
from .streaming import prime, sse_response

bp = Blueprint("gemini", __name__)

GENERATE, STREAM, COUNT = "generateContent", "streamGenerateContent", "countTokens"
# Google's model methods: the ones served, and others its clients call (answered 404 in Google's shape).
METHODS = frozenset({GENERATE, STREAM, COUNT, "embedContent", "batchEmbedContents", "batchGenerateContent",
                     "predict", "predictLongRunning", "generateAnswer"})


def owns(path: str) -> bool:
    """The paths of this family: everything under /v1beta, and Google's ``:method`` calls on /v1/models."""
    if path == "/v1beta" or path.startswith("/v1beta/"):
        return True
    return path.startswith("/v1/models/") and path.rpartition(":")[2] in METHODS


@bp.get("/v1beta/models")
def list_models() -> Response:
    gateway = current_gateway()
    gateway.listing.refresh()
    return jsonify({"models": [render.model_body(model) for model in gateway.catalog.models()]})


@bp.get("/v1beta/models/<path:name>")
def get_model(name: str) -> Response:
    """One model (``models.get``); a name that resolves answers with the model it resolves to."""
    if name.rpartition(":")[2] in METHODS:
        raise GatewayError(f"Method GET not allowed on {request.path}: its methods are POSTed", status=405)
    return jsonify(render.model_body(resolve(current_gateway(), name, "get")))


@bp.post("/v1beta/models/<path:target>")
@bp.post("/v1/models/<path:target>")
def model_method(target: str) -> Response:
    name, _, method = target.rpartition(":")
    if not name or method not in (GENERATE, STREAM, COUNT):
        raise NotFound(f"Method {method or target} is not served by this gateway: it serves {GENERATE}, {STREAM} "
                       f"and {COUNT}")
    if method == COUNT:
        return count_tokens(name)
    return generate(name, stream=method == STREAM)


def resolve(gateway: Gateway, name: str, method: str) -> ModelInfo:
    """The model a client name stands for, or Google's 404 for an unknown model."""
    gateway.dispatcher.before_resolve()
    try:
        return gateway.catalog.resolve(name)
    except NotFound:
        raise NotFound(f"models/{name.removeprefix('models/')} is not found, or is not supported for {method}. "
                       "GET /v1beta/models lists the models this gateway serves.", param="model") from None


def generate(name: str, *, stream: bool) -> Response:
    body = json_body()
    gateway = current_gateway()
    model = resolve(gateway, name, STREAM if stream else GENERATE)
    g.access.requested, g.access.stream = name, stream
    g.outcome = outcome = Outcome()
    if passthrough.serves(model):
        model = _search_model(gateway, body, model)
        g.access.model = model.id  # metric labels take listed ids only, never the client's string
        response = _passthrough(gateway, check_passthrough(body), model, outcome, name, stream)
    else:
        g.access.model = model.id
        response = _canonical(gateway, body, model, outcome, name, stream)
    response.headers.update(outcome.response_headers())
    return response


def _search_model(gateway: Gateway, body: dict[str, Any], model: ModelInfo) -> ModelInfo:
    """A search request (gemini-cli's google_web_search) goes to a model the upstream lets search."""
    search_models = gateway.catalog.search_models
    if passthrough.searches(body) and search_models and model.id not in search_models:
        return gateway.catalog.resolve(search_models[0])
    return model


def _passthrough(
    gateway: Gateway, body: dict[str, Any], model: ModelInfo, outcome: Outcome, name: str, stream: bool
) -> Response:
    chunks = passthrough.chunks(gateway.dispatcher, body, model, outcome, name=name)
    if not stream:
        return jsonify(passthrough.whole(chunk for chunk in chunks if not isinstance(chunk, KeepAlive)))
    framing = render.Framing(sse=request.args.get("alt") == "sse")
    return _stream(gateway, prime(chunks), render.passthrough_feed(framing), framing.error, framing.trailer,
                   framing, outcome)


def _canonical(
    gateway: Gateway, body: dict[str, Any], model: ModelInfo, outcome: Outcome, name: str, stream: bool
) -> Response:
    """Another maker's model, through the canonical model: call ids become the gateway's, under which it keeps
    what a replay needs (Google's clients drop thoughts from the history they send back)."""
    generation = load_generation(body, name, stream=stream)
    canonical = generation.request
    restore_thinking(canonical, gateway.signatures)
    events = replayable(gateway.web_search.events(canonical, outcome, model), gateway.signatures, model.signer)
    if not stream:
        answer = collect(model.id, events)
        return jsonify(render.response_body(answer, outcome.model or model.id,
                                            include_thoughts=generation.include_thoughts))
    events = prime(events)  # the attempts run here: the model that answers is known after it
    framing = render.Framing(sse=request.args.get("alt") == "sse")
    renderer = render.StreamRenderer(framing, outcome.model or model.id, include_thoughts=generation.include_thoughts)
    return _stream(gateway, events, renderer.feed, renderer.error, renderer.trailer, framing, outcome)


def _stream(
    gateway: Gateway, items: Iterator[Any], feed: Callable[[Any], list[bytes]], error: Callable[[GatewayError], bytes],
    trailer: Callable[[], list[bytes]], framing: render.Framing, outcome: Outcome,
) -> Response:
    """The stream in its framing: SSE events with ``alt=sse``, else a JSON array (sse_response relays either)."""
    response = sse_response(items, feed, error, ping=render.PING, ping_interval=gateway.settings.ping_interval,
                            abort=outcome.abort, trailer=trailer)
    response.mimetype = framing.mimetype
    return response


def count_tokens(name: str) -> Response:
    body = count_body(json_body())
    gateway = current_gateway()
    model = resolve(gateway, name, COUNT)
    g.access.requested, g.access.model = name, model.id
    if passthrough.serves(model):
        counted = passthrough.count_request(check_passthrough(body), model, gateway.signatures)
        total = gateway.dispatcher.count(model, counted)
    else:
        total = gateway.dispatcher.count_tokens(load_generation(body, name, stream=False).request)
    return jsonify({"totalTokens": total})
