"""The client APIs, one module each, and the registry that ``app.py`` serves them from."""

from __future__ import annotations

from . import anthropic, openai_chat, openai_responses
from .registry import Call, Family, Registry

REGISTRY = Registry([anthropic.FAMILY, openai_chat.FAMILY, openai_responses.FAMILY])

__all__ = ["REGISTRY", "Call", "Family", "Registry"]
