"""JSON encoding on the hot path: orjson where it gives what the ``json`` module gives, ``json`` otherwise.

Every request encodes the upstream's body, and a Claude Code request makes about 50 KB of it; every streamed
event is encoded too. For the 50 KB body the ``json`` module took about 0.5 ms of CPU on the benchmark machine,
orjson 0.03 ms, with the same bytes (docs/performance.md). orjson refuses a few values the ``json`` module
takes (integers beyond 64 bits, non-string keys); those fall back to ``json``.

Decoding stays with the ``json`` module: orjson turns integers beyond 64 bits into floats without a word,
which would change a tool's arguments.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, as ``json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()``."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def dumps_text(value: Any) -> str:
    return dumps(value).decode("utf-8")


class FlaskJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, with orjson writing compact output: every ``jsonify`` answer on the hot path.

    Keys keep their order and text stays UTF-8, as the gateway's answers always did; anything orjson refuses
    goes to Flask's own encoder, with its handling of dates, decimals and the rest.
    """

    sort_keys = False
    ensure_ascii = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs == {"separators": (",", ":")}:
            try:
                return orjson.dumps(obj).decode("utf-8")
            except TypeError:
                pass
        return super().dumps(obj, **kwargs)
