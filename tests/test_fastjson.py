"""gateway.fastjson encodes as the json module does, including where orjson alone would refuse."""

from __future__ import annotations

import json

import pytest

from gateway import fastjson


@pytest.mark.parametrize("value", [
    {"text": "é \u2028 \n \x00", "list": [1, 2.5, None, True], "nested": {"k": "v"}},
    {"big": 10**30},  # beyond 64 bits: orjson refuses, json does not
    {1: "int key"},  # orjson refuses non-string keys
])
def test_dumps_matches_json(value: object) -> None:
    assert json.loads(fastjson.dumps(value)) == json.loads(json.dumps(value))
    assert fastjson.dumps_text(value) == fastjson.dumps(value).decode()


def test_dumps_is_compact_utf8_like_the_json_module() -> None:
    value = {"a": "é", "b": [1, 2], "c": {"d": None}}
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_flask_answers_are_the_same_bytes_with_the_orjson_provider() -> None:
    from flask import Flask, jsonify

    from gateway.fastjson import FlaskJSONProvider

    plain, fast = Flask("plain"), Flask("fast")
    plain.json.sort_keys = False  # type: ignore[attr-defined]
    plain.json.ensure_ascii = False  # type: ignore[attr-defined]
    fast.json = FlaskJSONProvider(fast)
    value = {"z": "é \u2028", "a": [1, 2.5, None, True], "big": 10**30, "nested": {"k": "v"}}
    for answer in (value, {"z": 1, "a": 2}, [1, "two"]):
        with plain.app_context():
            expected = jsonify(answer).get_data()
        with fast.app_context():
            assert jsonify(answer).get_data() == expected
