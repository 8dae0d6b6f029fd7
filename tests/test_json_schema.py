"""Tests for the JSON Schema -> Google OpenAPI-subset cleaner.

The upstream answers 400 for any keyword outside its subset, so most tests pin an exact output; the
generated-schema tests at the end check the invariant itself on inputs nobody wrote by hand.
"""

from __future__ import annotations

import copy
import json
import random
import typing as t

import pytest

from gateway.translate.json_schema import clean_response_schema, clean_tool_schema

ALLOWED_KEYS = {"type", "description", "properties", "required", "items", "enum", "nullable", "format"}
TYPES = {"string", "number", "integer", "boolean", "array", "object"}
REASON = {"type": "string", "description": "Reason for calling this tool"}


def tool(schema: t.Any) -> dict:
    """Clean as for a non-Claude model: no placeholder properties, so expectations stay small."""
    return clean_tool_schema(schema, validated=False)


def prop(schema: t.Any) -> dict:
    """Clean ``schema`` as the single property ``p`` and return what became of it.

    Most rules are about nested schemas; wrapping keeps the top-level object rules out of the way.
    """
    return tool({"type": "object", "properties": {"p": schema}})["properties"]["p"]


# -- top level -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [None, {}, "not a schema", True])
def test_missing_or_empty_root_is_an_object(schema: t.Any) -> None:
    assert tool(schema) == {"type": "object"}
    assert clean_response_schema(schema) == {"type": "object"}
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {"reason": REASON},
        "required": ["reason"],
    }


def test_claude_code_bash_tool() -> None:
    schema = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command to execute"},
            "timeout": {
                "type": "number",
                "description": "Optional timeout in milliseconds",
                "maximum": 600000,
            },
        },
        "required": ["command"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command to execute"},
            "timeout": {"type": "number", "description": "Optional timeout in milliseconds (maximum: 600000)"},
        },
        "required": ["command"],
        "description": "(No extra properties allowed)",
    }


def test_claude_code_todowrite_tool() -> None:
    schema = {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "minLength": 1},
                        "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                        "activeForm": {"type": "string", "minLength": 1},
                    },
                    "required": ["content", "status", "activeForm"],
                    "additionalProperties": False,
                },
                "description": "The updated todo list",
            }
        },
        "required": ["todos"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {
            "todos": {
                "type": "array",
                "description": "The updated todo list",
                "items": {
                    "type": "object",
                    "properties": {
                        "content": {"type": "string", "description": "(minLength: 1)"},
                        "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                        "activeForm": {"type": "string", "description": "(minLength: 1)"},
                    },
                    "required": ["content", "status", "activeForm"],
                    "description": "(No extra properties allowed)",
                },
            }
        },
        "required": ["todos"],
        "description": "(No extra properties allowed)",
    }


def test_input_is_not_mutated_and_output_shares_nothing_with_it() -> None:
    definition = {"type": "object", "properties": {"x": {"type": "string", "enum": ["a"]}}}
    schema = {
        "type": "object",
        "properties": {
            "a": {"$ref": "#/$defs/D"},
            "b": {"allOf": [{"$ref": "#/$defs/D"}], "description": "b"},
            "c": {"anyOf": [{"$ref": "#/$defs/D"}, {"type": "null"}]},
            "d": {"type": "array", "items": {"type": "string", "format": "date-time"}},
        },
        "required": ["a", "d"],
        "$defs": {"D": definition},
    }
    before = copy.deepcopy(schema)
    out = clean_tool_schema(schema, validated=True)
    assert schema == before
    input_ids = {id(node) for node in _containers(schema)}
    assert not [node for node in _containers(out) if id(node) in input_ids]
    # Each use of a definition is its own copy: editing one leaves the others alone.
    out["properties"]["a"]["properties"]["x"]["enum"].append("zzz")
    assert out["properties"]["b"]["properties"]["x"]["enum"] == ["a"]


def test_output_is_plain_json_data() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "enum": [1, 2], "default": 1}}}
    out = tool(schema)
    assert json.loads(json.dumps(out)) == out


# -- property names are not keywords -----------------------------------------------------------------


def test_property_names_that_look_like_keywords_are_kept() -> None:
    names = ["default", "format", "type", "title", "$ref", "properties", "items", "required", "enum", "x-y"]
    schema = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": ["default", "format", "$ref"],
    }
    assert tool(schema) == {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": ["default", "format", "$ref"],
    }


def test_keyword_named_properties_with_keyword_like_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": {"default": {"type": "integer", "default": 3}}},
            "format": {"type": "string", "format": "uri"},
        },
    }
    assert tool(schema) == {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {"default": {"type": "integer", "description": "(default: 3)"}},
            },
            "format": {"type": "string", "description": "(format: uri)"},
        },
    }


# -- $ref ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("defs_key", ["$defs", "definitions"])
def test_local_ref_is_inlined(defs_key: str) -> None:
    schema = {
        "type": "object",
        "properties": {"pet": {"$ref": f"#/{defs_key}/Pet"}},
        defs_key: {"Pet": {"type": "object", "title": "Pet", "properties": {"name": {"type": "string"}}}},
    }
    assert tool(schema) == {
        "type": "object",
        "properties": {"pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }


def test_ref_siblings_refine_the_target() -> None:
    schema = {
        "properties": {"when": {"$ref": "#/$defs/Stamp", "description": "When it happened"}},
        "$defs": {"Stamp": {"type": "string", "format": "date-time", "description": "A timestamp"}},
    }
    assert tool(schema)["properties"]["when"] == {
        "type": "string",
        "format": "date-time",
        "description": "When it happened",
    }


def test_ref_alias_chain_and_root_ref() -> None:
    schema = {
        "$ref": "#/$defs/Args",
        "$defs": {"Args": {"$ref": "#/$defs/Real"}, "Real": {"properties": {"q": {"type": "string"}}}},
    }
    assert tool(schema) == {"type": "object", "properties": {"q": {"type": "string"}}}


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("#/$defs/Missing", "Missing"),
        ("https://example.com/schemas/address.json", "address.json"),
        ("#anchor", "#anchor"),
        (42, "42"),
    ],
)
def test_unresolvable_ref_becomes_a_see_placeholder(ref: t.Any, name: str) -> None:
    assert prop({"$ref": ref}) == {"type": "object", "description": f"See: {name}"}


def test_self_referencing_definition_is_cut_at_the_cycle() -> None:
    schema = {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
            }
        },
    }
    assert tool(schema) == {
        "type": "object",
        "properties": {
            "root": {
                "type": "object",
                "properties": {
                    "value": {"type": "string"},
                    "children": {"type": "array", "items": {"type": "object", "description": "See: Node"}},
                },
            }
        },
    }


def test_mutual_and_root_cycles_terminate() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/A"}, "again": {"$ref": "#"}},
        "definitions": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/definitions/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/definitions/A"}}},
        },
    }
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {
                    "b": {
                        "type": "object",
                        "properties": {
                            "a": {"type": "object", "description": "See: A", "properties": {"reason": REASON}}
                        },
                    }
                },
            },
            "again": {"type": "object", "description": "See: #", "properties": {"reason": REASON}},
        },
    }


def test_alias_cycle_terminates() -> None:
    schema = {
        "properties": {"x": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}},
    }
    assert tool(schema)["properties"]["x"] == {"type": "object", "description": "See: A"}


def test_same_definition_used_twice_is_not_a_cycle() -> None:
    schema = {
        "properties": {"src": {"$ref": "#/$defs/P"}, "dst": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "string", "description": "A path"}},
    }
    assert tool(schema)["properties"] == {
        "src": {"type": "string", "description": "A path"},
        "dst": {"type": "string", "description": "A path"},
    }


def test_exponential_ref_fan_out_is_bounded() -> None:
    # Each definition uses the next one twice: inlined naively, 2**16 leaves (kept small so that a
    # regression fails quickly instead of hanging; the bound is what matters, not the size).
    defs = {
        f"D{i}": {
            "type": "object",
            "properties": {"l": {"$ref": f"#/$defs/D{i + 1}"}, "r": {"$ref": f"#/$defs/D{i + 1}"}},
        }
        for i in range(16)
    }
    defs["D16"] = {"type": "string"}
    out = tool({"$ref": "#/$defs/D0", "$defs": defs})
    assert_clean(out)
    assert sum(1 for _ in _containers(out)) < 5000


def test_ref_expansion_is_budgeted_by_the_size_of_its_output() -> None:
    """Definitions that each use the next one twice, down to a 100 KB leaf: 100 KB of input inlined to 25 MB
    (a 3 MB request made gigabytes). Refused early instead."""
    import time

    from gateway.translate.json_schema import MAX_OUTPUT_BYTES, SchemaBudget, SchemaTooLarge

    defs = {f"D{i}": {"type": "object", "description": "d" * 100,
                      "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"}, "b": {"$ref": f"#/$defs/D{i + 1}"}}}
            for i in range(24)}
    defs["D24"] = {"type": "string", "description": "leaf " * 20_000, "maxLength": 5}
    bomb = {"$ref": "#/$defs/D0", "$defs": defs}
    started = time.perf_counter()
    with pytest.raises(SchemaTooLarge) as raised:
        clean_tool_schema(bomb, validated=True)
    assert time.perf_counter() - started < 2
    assert raised.value.status == 400 and "MB" in raised.value.message
    # The budget is the request's: two schemas that fit alone may not fit together.
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "w" * 1000}
                                             for i in range(MAX_OUTPUT_BYTES // 1500)}}
    budget = SchemaBudget()
    clean_tool_schema(wide, validated=True, budget=budget)
    assert 0 < budget.left < MAX_OUTPUT_BYTES // 2
    with pytest.raises(SchemaTooLarge):
        clean_tool_schema(wide, validated=True, budget=budget)


def test_the_size_estimate_follows_the_json_written() -> None:
    from gateway.translate.json_schema import SchemaBudget

    for schema in (_fan_out_for_estimate(), {"type": "object", "properties": {"q": {"type": "string",
                                                                                     "enum": ["a", "bb", "ccc"]}}}):
        budget = SchemaBudget()
        out = clean_tool_schema(schema, validated=True, budget=budget)
        written = len(json.dumps(out, separators=(",", ":"), ensure_ascii=False))
        assert 0.6 * written <= SchemaBudget().left - budget.left <= 1.5 * written


def _fan_out_for_estimate() -> dict:
    defs = {f"D{i}": {"type": "object", "description": "x" * 50, "required": ["l"],
                      "properties": {"l": {"$ref": f"#/$defs/D{i + 1}"}, "r": {"$ref": f"#/$defs/D{i + 1}"}}}
            for i in range(6)}
    defs["D6"] = {"type": "integer", "minimum": 0, "description": "leaf"}
    return {"$ref": "#/$defs/D0", "$defs": defs}


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    schema: dict = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"p": schema}}
    unions: dict = {"type": "string"}
    for _ in range(3000):
        unions = {"anyOf": [unions, {"type": "null"}], "allOf": [{"description": "x"}]}
    for out in (tool(schema), tool(unions), clean_tool_schema(schema, validated=True)):
        assert_clean(out)


# -- allOf -----------------------------------------------------------------------------------------


def test_all_of_is_merged() -> None:
    schema = {
        "allOf": [
            {"type": "object", "description": "First", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"description": "Second", "properties": {"b": {"type": "integer"}}, "required": ["b", "a"]},
        ]
    }
    assert prop(schema) == {
        "type": "object",
        "description": "First",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    }


def test_all_of_with_ref_and_own_description() -> None:
    # The shape pydantic v2 emits for a documented field of a model type.
    schema = {
        "properties": {"user": {"allOf": [{"$ref": "#/$defs/User"}], "description": "Who asks"}},
        "$defs": {
            "User": {"type": "object", "title": "User", "description": "A user", "properties": {"id": {"type": "integer"}}}
        },
    }
    assert tool(schema)["properties"]["user"] == {
        "type": "object",
        "description": "Who asks",
        "properties": {"id": {"type": "integer"}},
    }


def test_all_of_first_declaration_of_a_property_wins() -> None:
    schema = {
        "allOf": [{"properties": {"a": {"type": "string"}}}, {"properties": {"a": {"type": "integer"}, "b": {}}}]
    }
    assert prop(schema)["properties"] == {"a": {"type": "string"}, "b": {"type": "string"}}


def test_all_of_keeps_a_branch_type_over_an_inferable_one() -> None:
    assert prop({"description": "Mode", "allOf": [{"type": "string", "enum": ["a", "b"]}]}) == {
        "type": "string",
        "description": "Mode",
        "enum": ["a", "b"],
    }


# -- anyOf / oneOf ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["anyOf", "oneOf"])
def test_union_with_null_becomes_nullable(key: str) -> None:
    assert prop({key: [{"type": "string", "maxLength": 10}, {"type": "null"}], "description": "Name"}) == {
        "type": "string",
        "description": "Name (maxLength: 10)",
        "nullable": True,
    }


def test_union_prefers_object_then_array() -> None:
    schema = {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "properties": {"x": {"type": "number"}}},
        ]
    }
    assert prop(schema) == {
        "type": "object",
        "description": "(Accepts: string | array | object)",
        "properties": {"x": {"type": "number"}},
    }
    assert prop({"oneOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]}) == {
        "type": "array",
        "description": "(Accepts: integer | array)",
        "items": {"type": "integer"},
    }


def test_union_of_scalars_keeps_the_first_and_hints_the_rest() -> None:
    assert prop({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}], "description": "Id"}) == {
        "type": "string",
        "description": "Id (Accepts: string | number)",
        "nullable": True,
    }


def test_union_of_one_type_has_no_hint() -> None:
    assert prop({"oneOf": [{"type": "string", "enum": ["a"]}, {"type": "string", "enum": ["b"]}]}) == {
        "type": "string",
        "enum": ["a"],
    }


def test_union_own_keywords_win_over_the_branch() -> None:
    schema = {
        "description": "Field doc",
        "default": "a",
        "anyOf": [{"type": "string", "description": "Type doc", "default": "b"}],
    }
    assert prop(schema) == {"type": "string", "description": 'Field doc (default: "a")'}


def test_union_of_only_null() -> None:
    assert prop({"anyOf": [{"type": "null"}]}) == {"type": "string", "nullable": True}


def test_union_branch_refs_are_resolved() -> None:
    schema = {
        "properties": {"item": {"anyOf": [{"$ref": "#/$defs/Item"}, {"type": "null"}], "default": None}},
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}},
    }
    assert tool(schema)["properties"]["item"] == {
        "type": "object",
        "description": "(default: null)",
        "properties": {"sku": {"type": "string"}},
        "required": ["sku"],
        "nullable": True,
    }


# -- type ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": ["null", "integer"]}, {"type": "integer", "nullable": True}),
        ({"type": ["integer", "string"]}, {"type": "integer", "description": "(Accepts: integer | string)"}),
        (
            {"type": ["string", "number", "null"], "description": "V"},
            {"type": "string", "description": "V (Accepts: string | number)", "nullable": True},
        ),
        ({"type": "null"}, {"type": "string", "nullable": True}),
        ({"type": ["null"]}, {"type": "string", "nullable": True}),
        ({"type": "STRING"}, {"type": "string"}),
        ({"type": "Integer"}, {"type": "integer"}),
        ({"type": "string", "nullable": True}, {"type": "string", "nullable": True}),
    ],
)
def test_type(schema: dict, expected: dict) -> None:
    assert prop(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({}, {"type": "string"}),
        (True, {"type": "string"}),
        ({"properties": {"a": {}}}, {"type": "object", "properties": {"a": {"type": "string"}}}),
        ({"items": {"type": "integer"}}, {"type": "array", "items": {"type": "integer"}}),
        ({"enum": ["x", "y"]}, {"type": "string", "enum": ["x", "y"]}),
        ({"description": "Settings"}, {"type": "object", "description": "Settings"}),
        ({"type": "any", "description": "Whatever"}, {"type": "object", "description": "Whatever"}),
        ({"type": []}, {"type": "object"}),
    ],
)
def test_missing_type_is_inferred(schema: t.Any, expected: dict) -> None:
    assert prop(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "array"}, {"type": "array", "items": {"type": "string"}}),
        ({"type": "array", "items": {}}, {"type": "array", "items": {"type": "string"}}),
        (
            {"type": "array", "items": [{"type": "integer"}, {"type": "string"}]},
            {"type": "array", "items": {"type": "integer"}},
        ),
        ({"type": "array", "prefixItems": [{"type": "number"}]}, {"type": "array", "items": {"type": "number"}}),
    ],
)
def test_array_items(schema: dict, expected: dict) -> None:
    assert prop(schema) == expected


def test_keywords_of_other_types_are_dropped() -> None:
    assert prop({"type": "string", "properties": {"a": {}}, "items": {}, "required": ["a"]}) == {"type": "string"}
    assert prop({"type": "array", "items": {"type": "string"}, "properties": {"a": {}}}) == {
        "type": "array",
        "items": {"type": "string"},
    }


# -- enum and const --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"const": "fixed"}, {"type": "string", "enum": ["fixed"]}),
        ({"type": "string", "const": "fixed"}, {"type": "string", "enum": ["fixed"]}),
        ({"type": "string", "enum": ["a", 1, 2.5, True, "a"]}, {"type": "string", "enum": ["a", "1", "2.5", "true"]}),
        ({"enum": [1, 2, 3]}, {"type": "string", "enum": ["1", "2", "3"]}),
        ({"type": "integer", "enum": [1, 2, 3]}, {"type": "integer", "description": "(Allowed: 1, 2, 3)"}),
        ({"type": "boolean", "const": True}, {"type": "boolean", "description": "(Allowed: true)"}),
        (
            {"type": "number", "enum": [0.5, 1], "description": "Ratio"},
            {"type": "number", "description": "Ratio (Allowed: 0.5, 1)"},
        ),
        ({"type": ["string", "null"], "enum": ["a", None]}, {"type": "string", "enum": ["a"], "nullable": True}),
        ({"enum": [None]}, {"type": "string", "nullable": True}),
        ({"type": "string", "enum": []}, {"type": "string"}),
        ({"type": "string", "enum": "a"}, {"type": "string"}),
    ],
)
def test_enum(schema: dict, expected: dict) -> None:
    assert prop(schema) == expected


# -- constraints become hints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"type": "string", "description": "Name", "minLength": 1, "maxLength": 64},
            {"type": "string", "description": "Name (minLength: 1, maxLength: 64)"},
        ),
        ({"type": "string", "pattern": "^[a-z]+$"}, {"type": "string", "description": "(pattern: ^[a-z]+$)"}),
        (
            {"type": "integer", "minimum": 0, "maximum": 10, "multipleOf": 2},
            {"type": "integer", "description": "(minimum: 0, maximum: 10, multipleOf: 2)"},
        ),
        (
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5},
            {"type": "number", "description": "(exclusiveMinimum: 0, exclusiveMaximum: 1.5)"},
        ),
        (
            {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            {"type": "number", "description": "(minimum: 0, exclusiveMinimum: true)"},
        ),
        (
            {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 5, "uniqueItems": True},
            {
                "type": "array",
                "items": {"type": "string"},
                "description": "(minItems: 1, maxItems: 5, uniqueItems: true)",
            },
        ),
        ({"type": "string", "format": "uri"}, {"type": "string", "description": "(format: uri)"}),
        ({"type": "integer", "format": "int64"}, {"type": "integer", "description": "(format: int64)"}),
        ({"type": "integer", "format": "date-time"}, {"type": "integer", "description": "(format: date-time)"}),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        ({"type": "string", "format": "enum", "enum": ["a"]}, {"type": "string", "format": "enum", "enum": ["a"]}),
        ({"type": "string", "format": ["junk"]}, {"type": "string"}),
        ({"type": "string", "default": "x"}, {"type": "string", "description": '(default: "x")'}),
        ({"type": "integer", "default": 5}, {"type": "integer", "description": "(default: 5)"}),
        ({"type": "boolean", "default": False}, {"type": "boolean", "description": "(default: false)"}),
        ({"type": "string", "default": None}, {"type": "string", "description": "(default: null)"}),
        ({"type": "string", "examples": ["a", "b"]}, {"type": "string", "description": '(examples: "a", "b")'}),
        ({"type": "string", "examples": []}, {"type": "string"}),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "description": "(No extra properties allowed)",
            },
        ),
        ({"type": "object", "additionalProperties": True}, {"type": "object"}),
        ({"type": "object", "additionalProperties": {"type": "string"}}, {"type": "object"}),
    ],
)
def test_constraints_become_hints(schema: dict, expected: dict) -> None:
    assert prop(schema) == expected


def test_hints_keep_a_stable_order_after_the_description() -> None:
    schema = {
        "type": ["integer", "string"],
        "description": "Level",
        "enum": [1, 2],
        "maximum": 2,
        "minimum": 1,
        "default": 1,
        "examples": [2],
    }
    assert prop(schema) == {
        "type": "integer",
        "description": (
            "Level (Accepts: integer | string) (Allowed: 1, 2) (maximum: 2, minimum: 1) (default: 1) (examples: 2)"
        ),
    }


def test_long_values_are_shortened_in_hints() -> None:
    description = prop({"type": "string", "default": "x" * 500})["description"]
    assert description.startswith('(default: "xxx')
    assert description.endswith("...)")
    assert len(description) < 140


def test_unsupported_keywords_are_dropped_silently() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/s",
        "$comment": "internal",
        "title": "Thing",
        "deprecated": True,
        "readOnly": True,
        "writeOnly": False,
        "strict": True,
        "patternProperties": {"^x-": {"type": "string"}},
        "propertyNames": {"pattern": "^[a-z]+$"},
        "if": {"properties": {"a": {"const": 1}}},
        "then": {"required": ["b"]},
        "else": {"required": ["c"]},
        "not": {"required": ["d"]},
        "dependentRequired": {"a": ["b"]},
        "unevaluatedProperties": False,
        "minProperties": 1,
        "contentMediaType": "text/plain",
        "enumDescriptions": ["x"],
        "example": "e",
        "x-google-foo": 1,
        "type": "object",
        "properties": {"a": {"type": "string", "title": "A", "x-order": 1}},
    }
    assert tool(schema) == {"type": "object", "properties": {"a": {"type": "string"}}}


# -- required --------------------------------------------------------------------------------------


def test_required_keeps_only_declared_non_nullable_names() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string"},
            "b": {"type": ["string", "null"]},
            "c": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "d": {"type": "string", "nullable": True},
        },
        "required": ["a", "b", "c", "d", "ghost", "a", 7],
    }
    assert tool(schema)["required"] == ["a"]


@pytest.mark.parametrize("required", [[], ["ghost"], ["b"], "a", None])
def test_empty_required_is_dropped(required: t.Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "null"}}, "required": required}
    assert "required" not in tool(schema)


# -- validated mode placeholder ----------------------------------------------------------------------


def test_validated_empty_objects_get_a_reason_property() -> None:
    schema = {
        "type": "object",
        "properties": {
            "opts": {"type": "object", "additionalProperties": {"type": "string"}},
            "n": {"type": "integer"},
        },
        "required": ["opts"],
    }
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {"opts": {"type": "object", "properties": {"reason": REASON}}, "n": {"type": "integer"}},
        "required": ["opts"],
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {}},
        {"type": "object", "properties": {}, "required": ["x"]},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False},
    ],
)
def test_validated_empty_tool_input(schema: dict) -> None:
    out = clean_tool_schema(schema, validated=True)
    assert out["properties"] == {"reason": REASON}
    assert out["required"] == ["reason"]
    assert "properties" not in tool(schema)
    assert "required" not in tool(schema)


def test_validated_top_level_union_still_gets_a_required_reason() -> None:
    schema = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    assert clean_tool_schema(schema, validated=True) == {
        "type": "object",
        "properties": {"reason": REASON},
        "required": ["reason"],
        "nullable": True,
    }


# -- response schema ---------------------------------------------------------------------------------


def test_response_schema() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Answer",
        "type": "object",
        "properties": {
            "verdict": {"type": "boolean", "enum": [True, False]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object", "additionalProperties": False},
            "note": {"type": ["string", "null"]},
        },
        "required": ["verdict", "score", "note"],
        "additionalProperties": False,
    }
    assert clean_response_schema(schema) == {
        "type": "object",
        "properties": {
            "verdict": {"type": "boolean", "description": "(Allowed: true, false)"},
            "score": {"type": "number", "description": "(minimum: 0, maximum: 1)"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "meta": {"type": "object"},
            "note": {"type": "string", "nullable": True},
        },
        "required": ["verdict", "score"],
    }


def test_response_schema_resolves_refs_and_unions() -> None:
    schema = {
        "type": "object",
        "properties": {"steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}}},
        "$defs": {
            "Step": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"cmd": {"type": "string"}}}]}
        },
    }
    assert clean_response_schema(schema) == {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "description": "(Accepts: string | object)",
                    "properties": {"cmd": {"type": "string"}},
                },
            }
        },
    }


# -- invariants on generated schemas -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("validated", [True, False])
def test_generated_schemas_leave_only_supported_keys(seed: int, validated: bool) -> None:
    schema = _generated_schema(random.Random(seed))
    before = copy.deepcopy(schema)
    tool_schema = clean_tool_schema(schema, validated=validated)
    for out in (tool_schema, clean_response_schema(schema)):
        assert_clean(out)
        assert json.loads(json.dumps(out)) == out
    assert schema == before
    if validated:
        _assert_objects_have_properties(tool_schema)


def assert_clean(schema: t.Any, path: str = "#") -> None:
    """Assert that ``schema`` and everything under it uses only what the upstream accepts."""
    assert isinstance(schema, dict), path
    assert set(schema) <= ALLOWED_KEYS, (path, set(schema) - ALLOWED_KEYS)
    type_ = schema["type"]
    assert type_ in TYPES, path
    if "description" in schema:
        assert isinstance(schema["description"], str) and schema["description"], path
    if "nullable" in schema:
        assert schema["nullable"] is True, path
    if "format" in schema:
        assert type_ == "string" and schema["format"] in {"enum", "date-time"}, path
    if "enum" in schema:
        assert type_ == "string" and schema["enum"], path
        assert all(isinstance(member, str) for member in schema["enum"]), path
    if type_ == "array":
        assert "items" in schema, path
        assert_clean(schema["items"], f"{path}/items")
    else:
        assert "items" not in schema, path
    if "properties" in schema:
        assert type_ == "object" and isinstance(schema["properties"], dict), path
        for name, sub in schema["properties"].items():
            assert isinstance(name, str), path
            assert_clean(sub, f"{path}/properties/{name}")
    if "required" in schema:
        required = schema["required"]
        assert required and len(set(required)) == len(required), path
        assert all(not schema["properties"][name].get("nullable") for name in required), path


def _assert_objects_have_properties(schema: dict) -> None:
    """VALIDATED mode rejects any object schema without a property, nested ones included."""
    if schema["type"] == "object":
        assert schema["properties"]
    for sub in [*schema.get("properties", {}).values(), *([schema["items"]] if "items" in schema else [])]:
        _assert_objects_have_properties(sub)


def _containers(node: t.Any) -> t.Iterator[t.Any]:
    """Every dict and list in ``node``, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        yield node
        for value in node:
            yield from _containers(value)


_NAMES = ["default", "format", "type", "title", "items", "properties", "$ref", "required", "name", "path", "x-id"]
_SCALARS = ["string", "number", "integer", "boolean", "null", "String", "any"]
_NOISE: dict[str, t.Callable[[random.Random], t.Any]] = {
    "title": lambda r: "T",
    "$comment": lambda r: "c",
    "$id": lambda r: "urn:x",
    "deprecated": lambda r: True,
    "readOnly": lambda r: True,
    "x-extra": lambda r: {"a": 1},
    "default": lambda r: r.choice([None, 1, "d", [1, 2], {"k": "v"}]),
    "examples": lambda r: ["e", 2],
    "minLength": lambda r: 1,
    "maxLength": lambda r: 9,
    "pattern": lambda r: "^a",
    "minimum": lambda r: 0,
    "maximum": lambda r: 2.5,
    "exclusiveMinimum": lambda r: r.choice([True, 0]),
    "multipleOf": lambda r: 3,
    "minItems": lambda r: 1,
    "uniqueItems": lambda r: True,
    "format": lambda r: r.choice(["uri", "date-time", "enum", "int32", "email"]),
    "const": lambda r: r.choice(["c", 1, None, True]),
    "enum": lambda r: r.choice([["a", "b"], [1, 2], [None, "x"], [True], []]),
    "additionalProperties": lambda r: r.choice([False, True, {"type": "string"}]),
    "patternProperties": lambda r: {"^x": {"type": "string"}},
    "propertyNames": lambda r: {"maxLength": 3},
    "if": lambda r: {"properties": {"a": {"const": 1}}},
    "then": lambda r: {"required": ["a"]},
    "not": lambda r: {"type": "null"},
    "nullable": lambda r: r.choice([True, False]),
}


def _generated_schema(rng: random.Random) -> dict:
    """A large schema using every keyword the cleaner knows, plus $defs with cycles between them."""
    defs = [f"D{i}" for i in range(6)]

    def node(depth: int) -> t.Any:
        roll = rng.random()
        if depth > 5 or roll < 0.15:
            leaf: t.Any = rng.choice(
                [{}, True, {"type": rng.choice(_SCALARS)}, {"$ref": f"#/$defs/{rng.choice(defs)}"}, {"$ref": "#/$defs/Nope"}]
            )
        elif roll < 0.45:
            leaf = {
                "type": rng.choice(["object", "OBJECT", ["object", "null"], None]),
                "properties": {rng.choice(_NAMES) + str(i): node(depth + 1) for i in range(rng.randint(0, 5))},
                "required": [rng.choice(_NAMES) + str(i) for i in range(4)] + ["ghost"],
            }
        elif roll < 0.6:
            items = rng.choice([node(depth + 1), [node(depth + 1)], None])
            leaf = {"type": rng.choice(["array", ["array", "null"]]), "items": items}
        elif roll < 0.75:
            branches = [node(depth + 1) for _ in range(rng.randint(1, 4))] + rng.choice([[], [{"type": "null"}]])
            leaf = {rng.choice(["anyOf", "oneOf"]): branches}
        elif roll < 0.85:
            leaf = {"allOf": [node(depth + 1) for _ in range(rng.randint(1, 3))]}
        else:
            leaf = {"type": rng.sample(_SCALARS, rng.randint(1, 3)), "description": "d"}
        if isinstance(leaf, dict):
            for key in rng.sample(sorted(_NOISE), rng.randint(0, 6)):
                leaf[key] = _NOISE[key](rng)
            leaf = {k: v for k, v in leaf.items() if v is not None}
        return leaf

    root = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {f"p{i}": node(0) for i in range(12)},
        "required": [f"p{i}" for i in range(0, 12, 2)],
        "additionalProperties": False,
        "$defs": {name: node(1) for name in defs},
        "definitions": {"Old": {"$ref": "#/$defs/D0"}},
    }
    root["properties"]["legacy"] = {"$ref": "#/definitions/Old"}
    return root
