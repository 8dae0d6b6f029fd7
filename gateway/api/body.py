"""Reading a JSON request body within the size limit, for every API family.

A body is refused here, with a 400 in the caller's format, when what it holds could not be sent on: lone UTF-16
surrogates (``"\\ud800"``: the ``json`` module takes them, no UTF-8 encoder does) and nesting beyond
MAX_JSON_DEPTH (deeper bodies exhausted Python's recursion limit further on).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from flask import current_app, request

from ..errors import InvalidRequest, RequestTooLarge

#: Arrays and objects nested in one another, the body's own object included: orjson's limit (it encodes the
#: upstream body), far beyond any real request.
MAX_JSON_DEPTH = 254
_SURROGATE = re.compile("[\ud800-\udfff]")


def too_large() -> RequestTooLarge:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return RequestTooLarge(f"request body larger than {limit / (1024 * 1024):g} MB (GATEWAY_MAX_BODY_MB)")


def json_body() -> dict[str, Any]:
    """The body as a JSON object, or a 4xx naming what is wrong with it.

    Werkzeug rejects a too-large Content-Length before reading anything; a chunked body is cut at the limit
    without an error, so reaching the limit is treated as too large here.
    """
    if not request.is_json:
        raise InvalidRequest("the request body must be JSON sent with Content-Type: application/json")
    data = request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and len(data) >= limit:
        raise too_large()
    try:
        body = json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    check_encodable(body)
    return body


def check_encodable(body: Any) -> None:
    """InvalidRequest if ``body`` holds a lone surrogate or nests deeper than MAX_JSON_DEPTH.

    orjson refuses both, in C: about 7 us for a 50 KB Claude Code body, where walking it in Python takes 50.
    Only a body it refuses (also for an integer beyond 64 bits, which is fine) is walked, to say why.
    """
    try:
        orjson.dumps(body)
    except TypeError:
        _walk(body)


def _walk(body: Any) -> None:
    stack = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        for key, value in node.items() if node.__class__ is dict else enumerate(node):
            if key.__class__ is str and _SURROGATE.search(key) or value.__class__ is str and _SURROGATE.search(value):
                raise InvalidRequest("the request body holds a lone UTF-16 surrogate (such as \\ud800) in a "
                                     "string: that is not valid Unicode")
            if value.__class__ is dict or value.__class__ is list:
                stack.append((value, depth + 1))


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep")


def _not_json(constant: str) -> None:
    """NaN and the infinities: the ``json`` module takes them, JSON (and the upstream) does not."""
    raise ValueError(f"{constant} is not a JSON value")
