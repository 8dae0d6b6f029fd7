"""Strict marshmallow fields and error flattening shared by the API families' schemas.

marshmallow's own Integer accepts ``True`` and ``"5"``, and Float accepts ``"0.5"``; an API gateway should
reject both with a message naming the field, as the real APIs do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, utils


class Invalid(ValidationError):
    """A validation error at ``path`` (``messages.0.content``), raised by the hand-written checks of both APIs."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, field_name=path)


def expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    """``value`` if it is a ``kind``, else Invalid "must be ``what``". A bool is no int here, unless ``kind``
    names bool itself: JSON's true is not a number."""
    if value.__class__ is kind:
        return value  # The common case, decided without the checks below.
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise Invalid(path, f"must be {what}")
    return value


class StrictInteger(fields.Integer):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictFloat(fields.Float):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    truthy = {True}
    falsy = {False}


class AnyOf(fields.Raw):
    """A field whose value must be one of some JSON types; the translator reads its structure."""

    def __init__(self, *types: type, type_names: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.types = types
        self.type_names = type_names

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) and bool not in self.types:
            raise ValidationError(f"must be {self.type_names}")
        if not isinstance(value, self.types):
            raise ValidationError(f"must be {self.type_names}")
        return value


class ItemList(fields.Field):
    """``fields.List(fields.Raw())``, or with ``objects`` ``fields.List(fields.Dict())``: same checks and messages.

    marshmallow's List calls its inner field once per item (and Dict copies each object), which was a good
    part of loading a Claude Code request with its dozens of messages and tools. The loader checks each item's
    structure anyway, so here the items are only checked for null (and for being objects), in one loop.
    """

    default_error_messages = {
        "invalid": "Not a valid list.",
        "null_item": "Field may not be null.",
        "not_object": "Not a valid mapping type.",
    }

    def __init__(self, *, objects: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.objects = objects

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if value.__class__ is not list:
            if not utils.is_collection(value):
                raise self.make_error("invalid")
            value = list(value)
        if self.objects:
            if all(item.__class__ is dict for item in value):
                return value
        elif None not in value:
            return value
        errors: dict[int, list[str]] = {}
        for index, item in enumerate(value):
            if item is None:
                errors[index] = [self.error_messages["null_item"]]
            elif self.objects and not isinstance(item, Mapping):
                errors[index] = [self.error_messages["not_object"]]
        if errors:
            raise ValidationError(errors)
        return value


def first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """(``messages.0.content``, ``Not a valid string.``) from marshmallow's nested error dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                return first_error(value, path)
            return first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(messages, list) and messages:
        if all(isinstance(m, str) for m in messages):
            return path, str(messages[0])
        return first_error(messages[0], path)
    return path, str(messages)
