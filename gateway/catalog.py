"""What the gateway knows about upstream models, and how client model names map onto them.

Google renames and retires model ids every few months (docs/upstream.md, "Models"), and clients keep sending
old names for much longer. So the upstream's own listing (fetchAvailableModels) is the truth as soon as one
arrives: it replaces the small built-in table, which only serves until then, and its deprecation map
forwards old ids. What a model is (who made it, how it thinks, its output limit) comes from its listing
entry, never from the shape of its id alone.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from typing import Any

from .errors import NotFound

ANTHROPIC, GOOGLE, OPENAI = "anthropic", "google", "openai"
#: Gemini 3 thinking levels, least to most.
LEVELS = ("minimal", "low", "medium", "high")
# The tiers a ``-tiered`` id takes as its thinking level.
TIER_LEVELS = ("low", "medium", "high")
TIERED = "-tiered"


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str
    max_output_tokens: int
    thinking: bool
    # Claude thinking ids always think; Gemini thinking is on only when the client asks for it.
    always_thinks: bool = False
    # Who made the model; it decides the dialect: signatures (Claude, Gemini, none for OpenAI), call ids.
    vendor: str = GOOGLE
    # The thinking levels a Gemini 3 model takes; empty where thinking is a token budget.
    thinking_levels: tuple[str, ...] = ()
    images: bool = True
    # The tier a name asked for on a ``-tiered`` id (``gemini-3.8-flash-high``): its thinking level.
    tier: str | None = None
    # Tokens of input plus output the model takes (the listing's ``maxTokens``), when known.
    context_window: int | None = None

    @property
    def owned_by(self) -> str:
        return self.vendor

    @property
    def signer(self) -> str | None:
        """Whose thought signatures the model issues and accepts: "claude", "gemini", or None (none at all)."""
        return {ANTHROPIC: "claude", GOOGLE: "gemini"}.get(self.vendor)

    def nearest_level(self, level: str) -> str:
        """``level`` if the model takes it, else the nearest one it takes (a tie goes to the higher one)."""
        levels = self.thinking_levels
        if not levels or level in levels:
            return level
        rank = LEVELS.index(level) if level in LEVELS else len(LEVELS) - 1
        return min(levels, key=lambda candidate: (abs(LEVELS.index(candidate) - rank), -LEVELS.index(candidate)))


_DATE_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_VERSION = re.compile(r"(\d+(?:[.-]\d+)*)")
_PROVIDERS = {"ANTHROPIC": ANTHROPIC, "GOOGLE": GOOGLE, "OPENAI": OPENAI}
# Claude Code's model lines and the public Gemini names: the line a name belongs to, and what picks its best.
_CLAUDE_LINE = re.compile(r"^claude-(?:\d+(?:[.-]\d+)*-)?(opus|sonnet|haiku)\b")
_GEMINI_LINE = re.compile(r"^gemini-(?:\d+(?:\.\d+)?-)?(flash-lite|flash|pro)\b")


def is_listed_id(model_id: str, entry: dict[str, Any] | None = None) -> bool:
    """Internal upstream ids (``chat_20706``, ``tab_*``) are not models a client can use."""
    return re.match(r"(chat|tab)_", model_id) is None and not (entry or {}).get("internal")


def _vendor(model_id: str, entry: dict[str, Any]) -> str:
    """The listing's provider field, else the display name's maker, else the id's."""
    provider = str(entry.get("modelProvider") or "")
    for key, vendor in _PROVIDERS.items():
        if key in provider.upper():
            return vendor
    name = f"{entry.get('displayName') or ''} {model_id}".lower()
    if "claude" in name:
        return ANTHROPIC
    if "gpt" in name:
        return OPENAI
    return GOOGLE


def _version(text: str) -> tuple[int, ...]:
    match = _VERSION.search(text)
    return tuple(int(n) for n in re.split(r"[.-]", match.group(1))) if match else ()


def _levels(model_id: str, display_name: str, vendor: str, thinking: bool) -> tuple[str, ...]:
    """Gemini 3 and later think in levels; which ones is not in the listing, so it follows Google's model card:
    tiered ids take their tiers, Flash models every level, the others low and high. Gemini 2 uses budgets."""
    if vendor != GOOGLE or not thinking:
        return ()
    version = _version(display_name.replace("Gemini", "")) or _version(model_id)
    if version and version[0] < 3:
        return ()
    if model_id.endswith(TIERED):
        return TIER_LEVELS
    if "flash" in model_id or "flash" in display_name.lower():
        return LEVELS
    return ("low", "high")


def _m(id: str, name: str, max_out: int, thinking: bool, always: bool = False, vendor: str = GOOGLE) -> ModelInfo:
    window = 200_000 if vendor == ANTHROPIC else 1_048_576
    return ModelInfo(id, name, max_out, thinking, always, vendor, _levels(id, name, vendor, thinking),
                     context_window=window)


# Until the first listing arrives (or when no account can fetch one): the models of late 2026.
KNOWN_MODELS: dict[str, ModelInfo] = {
    m.id: m
    for m in [
        _m("claude-sonnet-4-6", "Claude Sonnet 4.6", 64000, False, vendor=ANTHROPIC),
        _m("claude-opus-4-6-thinking", "Claude Opus 4.6 (Thinking)", 64000, True, True, vendor=ANTHROPIC),
        _m("gemini-3-flash-agent", "Gemini 3 Flash", 65536, True),
        _m("gemini-pro-agent", "Gemini 3.1 Pro (High)", 65536, True),
        _m("gemini-3.1-pro-low", "Gemini 3.1 Pro (Low)", 65536, True),
        _m("gemini-3.8-flash-tiered", "Gemini 3.8 Flash", 65536, True),
        _m("gemini-3.1-flash-lite", "Gemini 3.1 Flash Lite", 65536, True),
    ]
}

def info_from_listing(model_id: str, entry: dict[str, Any]) -> ModelInfo:
    """One fetchAvailableModels entry as a ModelInfo, with the built-in table's values where it is silent."""
    vendor = _vendor(model_id, entry)
    display = str(entry.get("displayName") or model_id)
    known = KNOWN_MODELS.get(model_id)
    thinking = bool(entry.get("supportsThinking")) or (known.thinking if known else False)
    max_out = entry.get("maxOutputTokens")
    window = entry.get("maxTokens")
    default_max = known.max_output_tokens if known else (64000 if vendor == ANTHROPIC else 65536)
    return ModelInfo(
        id=model_id,
        display_name=display,
        max_output_tokens=int(max_out) if isinstance(max_out, (int, float)) and max_out > 0 else default_max,
        thinking=thinking,
        always_thinks=vendor == ANTHROPIC and thinking and ("thinking" in model_id or "(Thinking)" in display),
        vendor=vendor,
        thinking_levels=_levels(model_id, display, vendor, thinking),
        images=bool(entry.get("supportsImages", known.images if known else False)),  # proto3 omits false
        context_window=int(window) if isinstance(window, (int, float)) and window > 0 else (
            known.context_window if known else None),
    )


@dataclass(frozen=True)
class Listing:
    """One fetchAvailableModels answer, reduced to what name resolution needs."""

    models: dict[str, ModelInfo]
    deprecated: dict[str, str]
    search_models: tuple[str, ...] = ()

    @classmethod
    def parse(cls, listing: dict[str, Any]) -> Listing:
        raw = listing.get("models")
        models = {
            model_id: info_from_listing(model_id, entry)
            for model_id, entry in (raw.items() if isinstance(raw, dict) else [])
            if isinstance(entry, dict) and is_listed_id(model_id, entry)
        }
        deprecated: dict[str, str] = {}
        forwards = listing.get("deprecatedModelIds")
        for old, target in (forwards.items() if isinstance(forwards, dict) else []):
            new = target.get("newModelId") if isinstance(target, dict) else target
            if isinstance(new, str) and new:
                deprecated[old] = new
        search = listing.get("webSearchModelIds")
        return cls(models, deprecated, tuple(s for s in search if isinstance(s, str)) if isinstance(search, list) else ())


class Catalog:
    """Resolves client model names to ModelInfo over the live listing (the built-in table until one arrives)."""

    def __init__(self, aliases: dict[str, str] | None = None) -> None:
        self._listing = Listing(dict(KNOWN_MODELS), {})
        self.live = False
        self._aliases = dict(aliases or {})
        self._lock = threading.Lock()

    def update_from_listing(self, listing: dict[str, Any]) -> bool:
        """Take a new listing; False (and the old one kept) when it lists no model at all."""
        parsed = Listing.parse(listing)
        if not parsed.models:
            return False
        with self._lock:
            self._listing = parsed
            self.live = True
        return True

    def models(self) -> list[ModelInfo]:
        return sorted(self._listing.models.values(), key=lambda m: m.id)

    @property
    def search_models(self) -> tuple[str, ...]:
        return self._listing.search_models

    def names(self, name: str, model: ModelInfo) -> bool:
        """Whether ``name`` stands for ``model``: its id, a name resolving to it, or its line (``claude-opus``)."""
        if name in (model.id, line_of(model)):
            return True
        resolved = _resolve(name, self._listing, self._aliases)
        return resolved is not None and resolved.id == model.id

    def resolve(self, name: str) -> ModelInfo:
        """Map a client's model name to an upstream model, or raise NotFound naming /v1/models.

        In order: GATEWAY_MODEL_ALIASES; an exact listed id; a deprecated id's successor; a tier suffix onto
        its ``-tiered`` base; the best model the listing offers of the name's line (Claude Code's
        ``claude-opus-*``, ``claude-sonnet-*``, ``claude-haiku-*``, the public Gemini names).
        """
        listing = self._listing
        model = _resolve(name.removeprefix("models/"), listing, self._aliases)
        if model is None:
            raise NotFound(
                f"model '{name}' is not available: GET /v1/models lists the model ids this gateway serves",
                param="model",
            )
        return model


def _resolve(name: str, listing: Listing, aliases: dict[str, str], depth: int = 0) -> ModelInfo | None:
    if depth > 4:  # aliases and deprecations that go round in circles
        return None
    models = listing.models
    target = aliases.get(name) or aliases.get(_DATE_SUFFIX.sub("", name))
    if target is not None and target != name:
        return _resolve(target, listing, aliases, depth + 1)
    if name in models:
        return models[name]
    if name in listing.deprecated:
        return _resolve(listing.deprecated[name], listing, {}, depth + 1)
    tiered = _tiered(name, models)
    if tiered is not None:
        return tiered
    return _best_of_line(_DATE_SUFFIX.sub("", name), models)


def _tiered(name: str, models: dict[str, ModelInfo]) -> ModelInfo | None:
    """``gemini-3.8-flash-high`` -> the ``-tiered`` id at level high; ``gemini-3.8-flash`` -> the tiered id."""
    if name + TIERED in models:
        return models[name + TIERED]
    base, _, tier = name.rpartition("-")
    if tier in LEVELS and base + TIERED in models:
        model = models[base + TIERED]
        return replace(model, tier=model.nearest_level(tier))
    return None


def line_of(model: ModelInfo) -> str | None:
    """The model line (``claude-opus``, ``gemini-flash``, ``gemini-flash-lite``, ``gemini-pro``), if any."""
    if model.vendor == ANTHROPIC:
        claude = re.search(r"opus|sonnet|haiku", model.id)
        return f"claude-{claude.group(0)}" if claude else None
    if model.vendor == GOOGLE:
        text = f"{model.id} {model.display_name}".lower()
        for line in ("flash-lite", "flash lite", "flash", "pro"):
            if line in text:
                return "gemini-" + line.replace(" ", "-")
    return None


def _best_of_line(name: str, models: dict[str, ModelInfo]) -> ModelInfo | None:
    """The newest listed model of the name's line; for Opus its thinking variant (Anthropic's Opus thinks)."""
    claude = _CLAUDE_LINE.match(name)
    if claude:
        line = claude.group(1)
        candidates = [m for m in models.values() if m.vendor == ANTHROPIC and line in m.id]
        if not candidates and line == "haiku":  # the upstream serves no Haiku: the lighter Sonnet line
            candidates = [m for m in models.values() if m.vendor == ANTHROPIC and "sonnet" in m.id]
        wants_thinking = line == "opus" or name.endswith("-thinking")
        return max(candidates, key=lambda m: (_version(m.id), m.always_thinks == wants_thinking, -len(m.id)),
                   default=None)
    gemini = _GEMINI_LINE.match(name)
    if gemini:
        line = gemini.group(1)
        candidates = [
            m for m in models.values()
            if m.vendor == GOOGLE and line in m.id.replace("_", "-")
            and (line == "flash-lite" or "lite" not in m.id) and "image" not in m.id
        ]
        if line == "pro":
            candidates += [m for m in models.values() if m.vendor == GOOGLE and "Pro" in m.display_name
                           and m not in candidates]
        return max(candidates, key=lambda m: (_version(m.display_name.replace("Gemini", "")), "low" not in m.id),
                   default=None)
    return None
