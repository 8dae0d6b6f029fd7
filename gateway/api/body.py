"""Reading a JSON request body within the size and time limits, for every API family.

A worker holds about three times a body's size while it reads, checks and translates it (docs/performance.md),
and up to 2,500 connections: no per-body limit that real clients can live with keeps 2,500 bodies at that limit
inside a machine. So the bodies a worker holds at once are also capped together, by GATEWAY_BODY_MEMORY_MB:
a request whose body would go past it is answered 503 (529 for Anthropic clients) with ``retry-after``, before
its body is read, and its share is given back when its view returns (a stream has let its request go by then).

A body must arrive within GATEWAY_BODY_TIMEOUT_SECONDS in all: a client sending a byte now and then would
otherwise hold its connection, and the part of the body read so far, for as long as it likes. Under gevent
(gunicorn's workers, ``python app.py``) a timer interrupts the read; the answer is a 408 in the caller's format,
and the connection closes after it.

A body is refused here, with a 400 in the caller's format, when what it holds could not be sent on: lone UTF-16
surrogates (``"\\ud800"``: the ``json`` module takes them, no UTF-8 encoder does) and nesting beyond
MAX_JSON_DEPTH (deeper bodies exhausted Python's recursion limit further on).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import gevent
import orjson
from flask import Response, after_this_request, current_app, request
from gevent import monkey

from ..errors import InvalidRequest, Overloaded, RequestTooLarge

#: Arrays and objects nested in one another, the body's own object included: orjson's limit (it encodes the
#: upstream body), far beyond any real request.
MAX_JSON_DEPTH = 254
_SURROGATE = re.compile("[\ud800-\udfff]")
_CHUNK = 65536


class _Late(Exception):
    """The body's time is up (raised into the reading greenlet by gevent's timer)."""


class BodyBudget:
    """The bytes of request bodies one worker holds at once (its share of GATEWAY_BODY_MEMORY_MB)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.size and self.held > 0:
                return False
            self.held += size
            return True

    def give_back(self, size: int) -> None:
        with self._lock:
            self.held -= size


def _budget() -> BodyBudget:
    budget = current_app.extensions.get("gateway.bodies")
    if budget is None:
        budget = current_app.extensions["gateway.bodies"] = BodyBudget(
            current_app.extensions["gateway"].settings.body_memory_bytes)
    return budget


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
    data = read_body()
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


def read_body() -> bytearray:
    """The raw body, if it arrives within GATEWAY_BODY_TIMEOUT_SECONDS; else a 408 and the connection closes.

    Its size (the declared length, or the limit for a chunked body) is taken from the worker's BodyBudget first,
    and given back when the view returns; a 503 when the budget cannot take it now.
    """
    seconds = current_app.extensions["gateway"].settings.body_timeout
    deadline = time.monotonic() + seconds
    stream = request.stream  # a declared length over the limit is a 413 here, before anything is read
    declared = request.content_length
    share = declared if declared is not None else current_app.config["MAX_CONTENT_LENGTH"] or 0
    budget = _budget()
    if not budget.take(share):
        raise Overloaded("the gateway holds as many request bodies as it may at once (GATEWAY_BODY_MEMORY_MB); "
                         "retry shortly", retry_after=1)
    after_this_request(lambda response: _give_back(response, budget, share))
    body = bytearray()
    try:
        with _interrupted_after(seconds):
            while chunk := stream.read(_CHUNK):
                body += chunk
                if time.monotonic() > deadline:
                    raise _Late
    except _Late:
        _close_after_answer()
        raise InvalidRequest(f"the request body did not arrive within {seconds:g}s (GATEWAY_BODY_TIMEOUT_SECONDS)",
                             status=408) from None
    return body


@contextlib.contextmanager
def _interrupted_after(seconds: float) -> Iterator[None]:
    """Raise _Late into a read that blocks past ``seconds``: possible where sockets are gevent's.

    Elsewhere (Werkzeug's development server in tests) only the check between chunks applies.
    """
    if not monkey.is_module_patched("socket"):
        yield
        return
    with gevent.Timeout(seconds, _Late):
        yield


def _close_after_answer() -> None:
    """Close the connection once the 408 is out: the rest of the body would come as slowly.

    gevent's WSGI server closes on a ``Connection: close`` header; gunicorn drops that header and would read
    the rest of the body before the next request, for as long as the client trickles it. There, the answer is
    followed by the end of our side, a short wait for the client to close its side (closing on unread data
    would reset the connection, and a client could lose the answer with it), and then the end of reading.
    """
    after_this_request(_connection_close)
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        after_this_request(lambda response: _on_close(response, lambda: _linger(sock)))


def _give_back(response: Response, budget: BodyBudget, share: int) -> Response:
    budget.give_back(share)
    return response


def _connection_close(response: Response) -> Response:
    response.headers["Connection"] = "close"
    return response


def _on_close(response: Response, action: Any) -> Response:
    response.call_on_close(action)  # after the server has written the whole answer
    return response


#: How long a connection cut for a late body waits for the client to close its side.
LINGER_SECONDS = 2.0


def _linger(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(LINGER_SECONDS, False):
            while sock.recv(_CHUNK):
                pass
        sock.shutdown(socket.SHUT_RD)  # gunicorn's next read sees the end: it closes the connection


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
