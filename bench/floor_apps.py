"""The stack's own floor: trivial apps served exactly like the gateway, for ``bench/run.py --only floor``.

They show what gunicorn with gevent workers, Flask and ``requests`` cost on this machine before the gateway
does any work, which bounds what optimising the gateway's own code can reach.

* ``raw``: a bare WSGI app that reads the body and answers ``{}``.
* ``flask``: a Flask view that parses the JSON body and answers with ``jsonify``.
* ``flask_upstream``: the same, plus one ``requests`` POST to the upstream whose SSE answer it reads.

The upstream's URL comes from ``BENCH_UPSTREAM``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import requests
from flask import Flask, jsonify, request

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9200") + "/v1internal:streamGenerateContent?alt=sse"


def raw(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


flask = Flask("floor")
flask_upstream = Flask("floor_upstream")
session = requests.Session()


@flask.post("/v1/messages")
def answer() -> Any:
    return jsonify({"ok": bool(request.get_json())})


@flask_upstream.post("/v1/messages")
def relay() -> Any:
    body = request.get_json()
    response = session.post(UPSTREAM, json=body, stream=True, timeout=(10, 300))
    try:
        size = sum(len(chunk) for chunk in iter(lambda: response.raw.read1(65536), b""))
    finally:
        response.close()
    return jsonify({"bytes": size})
