"""The cache of cleaned tool schemas: exact hits, misses on any change, bounds, and no shared mutation."""

from __future__ import annotations

import copy
import math
import pickle
import threading
import typing as t

import orjson
import pytest
import requests

from gateway.catalog import KNOWN_MODELS
from gateway.core.request import Message, Request, Text, Tool
from gateway.translate.cloudcode import TOOL_SCHEMAS, build_request
from gateway.translate.frozen import FrozenDict, FrozenList
from gateway.translate.json_schema import clean_tool_schema
from gateway.translate.signatures import SignatureRegistry
from gateway.translate.tool_cache import ToolSchemaCache


def _schema(description: str = "A path", **extra: t.Any) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": description, "maxLength": 4096},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "limit": {"type": "integer", "minimum": 1, **extra},
            "files": {"type": "array", "items": {"type": "object", "properties": {"p": {"type": "string"}}}},
        },
        "required": ["path", "mode"],
        "additionalProperties": False,
    }


def _all_frozen(value: t.Any) -> bool:
    if isinstance(value, dict):
        return type(value) is FrozenDict and all(_all_frozen(item) for item in value.values())
    if isinstance(value, list):
        return type(value) is FrozenList and all(_all_frozen(item) for item in value)
    return True


def test_equal_schema_hits_and_gives_the_same_result() -> None:
    cache = ToolSchemaCache()
    first = cache.clean(_schema(), validated=True)
    second = cache.clean(_schema(), validated=True)  # equal, not the same object: a new request's JSON
    assert second is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert first == clean_tool_schema(_schema(), validated=True)
    assert orjson.dumps(first) == orjson.dumps(clean_tool_schema(_schema(), validated=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["properties"]["path"].update(description="Another path"),
        lambda s: s["properties"]["limit"].update(minimum=1.0),  # 1 and 1.0 render differently in hints
        lambda s: s["properties"]["limit"].update(minimum=True),
        lambda s: s["properties"]["mode"]["enum"].append("c"),
        lambda s: s.update(required=["mode", "path"]),  # order is kept in the output
        lambda s: s["properties"].update(files=s["properties"].pop("files") and {"type": "string"}),
        lambda s: s.pop("additionalProperties"),
        lambda s: s["properties"].update({"path": s["properties"].pop("path")}),  # property order
    ],
)
def test_any_change_in_the_schema_misses(change: t.Callable[[dict], t.Any]) -> None:
    cache = ToolSchemaCache()
    cache.clean(_schema(), validated=True)
    changed = _schema()
    change(changed)
    result = cache.clean(changed, validated=True)
    assert cache.misses == 2 and cache.hits == 0
    assert orjson.dumps(result) == orjson.dumps(clean_tool_schema(changed, validated=True))


def test_the_mode_is_part_of_the_key() -> None:
    cache = ToolSchemaCache()
    empty = {"type": "object", "properties": {}}
    claude, gemini = cache.clean(empty, validated=True), cache.clean(empty, validated=False)
    assert "reason" in claude["properties"] and "properties" not in gemini
    assert cache.misses == 2


def test_nan_never_reaches_the_cache_a_body_holding_it_is_not_json(gateway) -> None:  # noqa: ANN001
    """orjson writes NaN as null, so NaN and null would share a key: such bodies are refused first."""
    assert orjson.dumps(_schema(default=None)) == orjson.dumps(_schema(default=math.nan))
    for constant in ("NaN", "Infinity", "-Infinity"):
        body = ('{"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], '
                '"tools": [{"name": "t", "input_schema": {"type": "object", "default": %s}}]}' % constant)
        answer = requests.post(f"{gateway.url}/v1/messages", data=body, headers={"content-type": "application/json"},
                               timeout=10)
        assert answer.status_code == 400
        assert answer.json()["error"]["type"] == "invalid_request_error"
        assert constant in answer.json()["error"]["message"]


@pytest.mark.parametrize("value", [2**70, "\ud800"])
def test_what_orjson_refuses_is_cleaned_without_the_cache(value: t.Any) -> None:
    cache = ToolSchemaCache()
    schema = _schema(default=value)
    assert cache.clean(schema, validated=True) == clean_tool_schema(schema, validated=True)
    assert len(cache) == 0


def test_size_is_bounded_in_entries_least_recently_used_first() -> None:
    cache = ToolSchemaCache(max_entries=3)
    schemas = [_schema(f"path {i}") for i in range(5)]
    for schema in schemas[:3]:
        cache.clean(schema, validated=True)
    cache.clean(schemas[0], validated=True)  # now the most recently used
    for schema in schemas[3:]:
        cache.clean(schema, validated=True)
    assert len(cache) == 3
    hits = cache.hits
    cache.clean(schemas[0], validated=True)
    assert cache.hits == hits + 1
    cache.clean(schemas[1], validated=True)
    assert cache.hits == hits + 1  # evicted


def test_size_is_bounded_in_bytes() -> None:
    probe = ToolSchemaCache()
    probe.clean(_schema("path 00"), validated=True)
    one = probe.size_bytes
    cache = ToolSchemaCache(max_bytes=one * 4 + 100)
    for i in range(20):
        cache.clean(_schema(f"path {i:02d}"), validated=True)
    assert len(cache) == 4 and cache.size_bytes <= cache.max_bytes
    big = ToolSchemaCache(max_bytes=one * 2)  # one entry would take over a quarter: not cached at all
    big.clean(_schema(), validated=True)
    assert len(big) == 0


def _fan_out(levels: int) -> dict:
    """A small schema whose definitions each use the next one twice: inlined, 2**levels leaves."""
    defs = {f"D{i}": {"type": "object", "description": "x" * 50,
                      "properties": {"l": {"$ref": f"#/$defs/D{i + 1}"}, "r": {"$ref": f"#/$defs/D{i + 1}"}}}
            for i in range(levels)}
    defs[f"D{levels}"] = {"type": "string", "description": "leaf " * 20}
    return {"$ref": "#/$defs/D0", "$defs": defs}


def test_entries_count_their_output_not_their_input() -> None:
    """Through $ref a 2 KB input cleans to far more: the cache must count what it holds."""
    schema = _fan_out(7)
    cache = ToolSchemaCache()
    cleaned = cache.clean(schema, validated=True)
    key, output = len(orjson.dumps(schema)), len(orjson.dumps(cleaned))
    assert output > 5 * key
    assert 0.8 * (key + output) <= cache.size_bytes <= 1.2 * (key + output)


def test_a_hit_spends_the_request_budget_as_the_cleaning_did() -> None:
    from gateway.translate.json_schema import SchemaBudget, SchemaTooLarge

    cache = ToolSchemaCache()
    first = SchemaBudget()
    cache.clean(_fan_out(7), validated=True, budget=first)
    spent = SchemaBudget().left - first.left
    assert spent > 0
    second = SchemaBudget()
    cache.clean(_fan_out(7), validated=True, budget=second)
    assert cache.hits == 1 and SchemaBudget().left - second.left == spent
    with pytest.raises(SchemaTooLarge):
        cache.clean(_fan_out(7), validated=True, budget=SchemaBudget(spent - 1))


def test_cached_result_is_frozen_and_copies_are_plain() -> None:
    cache = ToolSchemaCache()
    cached = cache.clean(_schema(), validated=True)
    assert _all_frozen(cached)
    with pytest.raises(TypeError):
        cached["properties"]["path"]["description"] = "changed"
    with pytest.raises(TypeError):
        cached["required"].append("files")
    with pytest.raises(TypeError):
        cached["properties"].pop("mode")
    for copied in (copy.deepcopy(cached), pickle.loads(pickle.dumps(cached))):
        assert copied == cached and type(copied) is dict and type(copied["required"]) is list
        copied["required"].append("files")
        copied["properties"]["path"]["description"] = "changed"
    assert cache.clean(_schema(), validated=True) == clean_tool_schema(_schema(), validated=True)


def test_frozen_output_is_the_plain_output() -> None:
    schemas = [
        _schema(),
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {"x": {"anyOf": [{"$ref": "#/$defs/D"}, {"type": "null"}]}},
         "$defs": {"D": {"type": "object", "properties": {"y": {"type": ["string", "null"], "enum": ["a", None]}}}}},
        {"type": "array", "items": {}},
        {},
    ]
    for schema in schemas:
        for validated in (True, False):
            frozen = clean_tool_schema(schema, validated=validated, frozen=True)
            assert _all_frozen(frozen)
            assert orjson.dumps(frozen) == orjson.dumps(clean_tool_schema(schema, validated=validated))


def _request(schema: dict) -> Request:
    return Request(model="claude-sonnet-4-6", messages=[Message("user", [Text("hi")])],
                   tools=[Tool("Read", "Reads a file", schema)])


def test_no_mutation_crosses_requests() -> None:
    """A client editing its schema after a turn, or a later step editing a body, changes no other request."""
    TOOL_SCHEMAS.clear()
    model = KNOWN_MODELS["claude-sonnet-4-6"]
    expected = clean_tool_schema(_schema(), validated=True)
    schema = _schema()
    first = build_request(_request(schema), model, project="p", signatures=SignatureRegistry()).body
    schema["properties"]["path"]["description"] = "edited by the client after the request"
    declarations = first["request"]["tools"][0]["functionDeclarations"]
    declarations[0]["description"] = "the declaration itself is the request's own"
    with pytest.raises(TypeError):
        declarations[0]["parameters"]["properties"]["path"]["description"] = "shared: refused"
    second = build_request(_request(_schema()), model, project="p", signatures=SignatureRegistry()).body
    declaration = second["request"]["tools"][0]["functionDeclarations"][0]
    assert declaration["parameters"] == expected and declaration["description"] == "Reads a file"
    assert declaration["parameters"] is declarations[0]["parameters"]  # a hit


def test_concurrent_use_keeps_the_books() -> None:
    cache = ToolSchemaCache(max_entries=8)
    schemas = [_schema(f"path {i}") for i in range(20)]
    expected = [orjson.dumps(clean_tool_schema(s, validated=True)) for s in schemas]
    failures: list[str] = []

    def work(offset: int) -> None:
        for round_ in range(50):
            index = (offset + round_) % len(schemas)
            if orjson.dumps(cache.clean(copy.deepcopy(schemas[index]), validated=True)) != expected[index]:
                failures.append(f"{offset}/{round_}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(cache) <= 8
    assert cache.size_bytes == sum(entry.size for entry in cache._entries.values())
