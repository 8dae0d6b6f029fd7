"""The client APIs the gateway speaks, each declared once.

A family says where it lives (its blueprint and the path prefixes it owns), how its requests load into the
canonical request, how answers and errors look on its wire, and in which headers its clients send their key.
``app.py`` asks the registry which family a path belongs to (error format, auth headers, the access log's
label) and ``handler.generate`` serves every family's generation endpoint with the same code. A new client API
is one schema, one renderer and one ``Family`` registered in ``gateway/families/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flask import Blueprint, Flask

from ..core.events import Event, Response
from ..core.request import Request
from ..errors import GatewayError
from ..render import openai as openai_render
from ..security import KEY_HEADERS

if TYPE_CHECKING:
    from ..catalog import ModelInfo
    from ..runtime import Gateway


class StreamRenderer(Protocol):
    """One answer's SSE: bytes for each canonical event, for a failure after the start, and for the end."""

    def feed(self, event: Event) -> list[bytes]: ...

    def error(self, error: GatewayError) -> bytes: ...

    def trailer(self) -> list[bytes]: ...


@dataclass
class Call:
    """A loaded request: the canonical request, and what only its family's renderer needs."""

    request: Request
    options: Any = None


class Family:
    """A client API. The base class is what answers outside every API (health, metrics, unknown paths):
    errors in OpenAI's shape, the key in ``x-api-key`` or ``Authorization: Bearer``."""

    name = "ops"
    # The paths this family answers (a prefix owns the path itself and everything under it).
    prefixes: tuple[str, ...] = ()
    auth_headers: tuple[str, ...] = KEY_HEADERS
    # A query parameter that may carry the key as well (Google's ``?key=``), or None.
    auth_query: str | None = None
    blueprint: Blueprint | None = None
    # What a stream sends while the upstream is silent.
    ping: bytes = openai_render.PING

    def owns(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)

    def error_response(self, error: GatewayError) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The body, status and headers that tell this family's clients about ``error``."""
        return (openai_render.error_body(error), openai_render.error_status(error),
                openai_render.error_headers(error))

    # -- generation (``handler.generate``) ------------------------------------------------------------

    def load(self, body: dict[str, Any], gateway: Gateway) -> Call:
        """Validate ``body`` and load it into the canonical request (raising InvalidRequest)."""
        raise NotImplementedError

    def relay(self, events: Iterator[Event], call: Call, gateway: Gateway, model: ModelInfo) -> Iterator[Event]:
        """The upstream's events as this family hands them to its renderer (by default, unchanged)."""
        return events

    def stream(self, call: Call, model: str) -> StreamRenderer:
        raise NotImplementedError

    def answer(self, call: Call, response: Response, model: str) -> dict[str, Any]:
        """The whole answer as this family's JSON body."""
        raise NotImplementedError


class Registry:
    def __init__(self, families: Iterable[Family], default: Family | None = None) -> None:
        self.families = tuple(families)
        self.default = default or Family()

    def for_path(self, path: str) -> Family:
        """The family that owns ``path``; the default one for paths outside every API."""
        return next((family for family in self.families if family.owns(path)), self.default)

    def install(self, app: Flask) -> None:
        for family in self.families:
            if family.blueprint is not None:
                app.register_blueprint(family.blueprint)
