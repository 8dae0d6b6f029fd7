"""ItemList (messages, tools, functions) refuses what marshmallow's List(Raw()/Dict()) refused, in the same words."""

from __future__ import annotations

import typing as t

import pytest
from marshmallow import Schema, ValidationError, fields

from gateway.schemas.common import ItemList, first_error


class _Old(Schema):
    raw = fields.List(fields.Raw(), allow_none=True)
    objects = fields.List(fields.Dict(), allow_none=True)


class _New(Schema):
    raw = ItemList(allow_none=True)
    objects = ItemList(objects=True, allow_none=True)


@pytest.mark.parametrize("field", ["raw", "objects"])
@pytest.mark.parametrize(
    "value",
    [None, [], [{}], [{}, {"a": 1}], "x", 5, True, {}, {"a": 1}, [None], [1, None, "s", None], [{}, "s"],
     [[]], [{}, None, 3], (1, {}), ["a"]],
)
def test_same_result_or_same_messages(field: str, value: t.Any) -> None:
    def outcome(schema: Schema) -> t.Any:
        try:
            return schema.load({field: value})
        except ValidationError as exc:
            return exc.messages, first_error(exc.messages)

    assert outcome(_New()) == outcome(_Old())
