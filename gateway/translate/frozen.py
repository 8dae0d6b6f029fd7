"""Dicts and lists that refuse modification, for JSON data shared between requests.

Cached tool schemas (``tool_cache``) go into every request body that uses the tool. A step that modified
one in place would silently change other requests; with these types it fails loudly instead, at no cost
per request (a defensive copy per request would cost a tenth of the translation). They are ``dict`` and
``list`` subclasses, so JSON encoders (orjson, ``json``), ``==`` and ``isinstance`` treat them as such. A
copy (``dict(...)``, ``copy.deepcopy``, ``pickle``) is plain and the copier's own to modify.
"""

from __future__ import annotations

import typing as t

__all__ = ["FrozenDict", "FrozenList"]


def _refuse(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
    raise TypeError(f"this {type(self).__name__} is shared between requests and must not be modified: copy it first")


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that refuses modification."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type, tuple[dict]]:  # type: ignore[type-arg]
        # What copy and pickle build from: a plain dict (deepcopy also copies the values).
        return dict, (dict(self),)


class FrozenList(list):  # type: ignore[type-arg]
    """A list that refuses modification."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __reduce__(self) -> tuple[type, tuple[list]]:  # type: ignore[type-arg]
        return list, (list(self),)
