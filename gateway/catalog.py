"""What the gateway knows about upstream models, and how client model names map onto them.

The upstream's own listing (fetchAvailableModels) is authoritative when an account can fetch it; the
static table is what the gateway falls back to before that, and gives limits the listing may omit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .errors import NotFound


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str
    max_output_tokens: int
    thinking: bool
    # Claude thinking ids always think; Gemini thinking is on only when the client asks for it.
    always_thinks: bool = False

    @property
    def family(self) -> str:
        return "claude" if self.id.startswith("claude") else "gemini"

    @property
    def owned_by(self) -> str:
        return "anthropic" if self.family == "claude" else "google"


def _m(id: str, name: str, max_out: int, thinking: bool, always: bool = False) -> ModelInfo:
    return ModelInfo(id, name, max_out, thinking, always)


KNOWN_MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in [
        _m("claude-sonnet-4-5", "Claude Sonnet 4.5", 64000, False),
        _m("claude-sonnet-4-5-thinking", "Claude Sonnet 4.5 (Thinking)", 64000, True, True),
        _m("claude-opus-4-5-thinking", "Claude Opus 4.5 (Thinking)", 64000, True, True),
        _m("claude-sonnet-4-6", "Claude Sonnet 4.6", 64000, False),
        _m("claude-sonnet-4-6-thinking", "Claude Sonnet 4.6 (Thinking)", 64000, True, True),
        _m("claude-opus-4-6", "Claude Opus 4.6", 64000, False),
        _m("claude-opus-4-6-thinking", "Claude Opus 4.6 (Thinking)", 64000, True, True),
        _m("gemini-3-flash", "Gemini 3 Flash", 65536, True),
        _m("gemini-3-pro-low", "Gemini 3 Pro (Low)", 65536, True),
        _m("gemini-3-pro-high", "Gemini 3 Pro (High)", 65536, True),
        _m("gemini-3.1-pro-low", "Gemini 3.1 Pro (Low)", 65536, True),
        _m("gemini-3.1-pro-high", "Gemini 3.1 Pro (High)", 65536, True),
        _m("gemini-2.5-flash", "Gemini 2.5 Flash", 65536, True),
        _m("gemini-2.5-pro", "Gemini 2.5 Pro", 65536, True),
    ]
}

# Claude Code asks for Anthropic's own model names; these land on the nearest upstream model.
DEFAULT_ALIASES: dict[str, str] = {
    "claude-opus": "claude-opus-4-5-thinking",
    "claude-sonnet": "claude-sonnet-4-5",
    "claude-haiku": "claude-sonnet-4-5",
}

_DATE_SUFFIX = re.compile(r"-\d{8}$")


def is_listed_id(model_id: str) -> bool:
    """Internal upstream ids (``chat_20706``, ``tab_*``) are not models a client can use."""
    return model_id.startswith(("claude", "gemini"))


def info_from_listing(model_id: str, entry: dict[str, Any]) -> ModelInfo:
    """Merge one fetchAvailableModels entry over what the static table knows."""
    base = KNOWN_MODELS.get(model_id) or ModelInfo(
        model_id,
        model_id,
        65536 if not model_id.startswith("claude") else 64000,
        thinking=model_id.endswith("-thinking") or model_id.startswith("gemini-3"),
        always_thinks=model_id.startswith("claude") and model_id.endswith("-thinking"),
    )
    max_out = entry.get("maxOutputTokens")
    return replace(
        base,
        display_name=entry.get("displayName") or base.display_name,
        max_output_tokens=int(max_out) if isinstance(max_out, (int, float)) and max_out > 0 else base.max_output_tokens,
        thinking=bool(entry.get("supportsThinking", base.thinking)) or base.thinking,
    )


class Catalog:
    """Resolves client model names to ModelInfo, over the static table plus the upstream listing."""

    def __init__(self, aliases: dict[str, str] | None = None) -> None:
        self._models: dict[str, ModelInfo] = dict(KNOWN_MODELS)
        self._aliases = {**DEFAULT_ALIASES, **(aliases or {})}

    def update_from_listing(self, listing: dict[str, Any]) -> None:
        models = listing.get("models") or {}
        for model_id, entry in models.items():
            if is_listed_id(model_id) and isinstance(entry, dict):
                self._models[model_id] = info_from_listing(model_id, entry)

    def models(self) -> list[ModelInfo]:
        return sorted(self._models.values(), key=lambda m: m.id)

    def resolve(self, name: str, *, thinking: bool = False) -> ModelInfo:
        """Map a client's model name to an upstream model, or raise NotFound naming /v1/models."""
        if name in self._aliases:
            name = self._aliases[name]
        if name in self._models:
            return self._models[name]
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped in self._aliases:
            stripped = self._aliases[stripped]
        if stripped in self._models:
            return self._models[stripped]
        for prefix, target in self._aliases.items():
            if stripped.startswith(prefix + "-") and target in self._models:
                return self._models[target]
        raise NotFound(
            f"model '{name}' is not available: GET /v1/models lists the model ids this gateway serves",
            param="model",
        )
