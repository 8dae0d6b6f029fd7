"""The client APIs, one module each, and the registry that ``app.py`` serves them from."""

from __future__ import annotations

from . import anthropic, gemini, openai_chat, openai_responses
from .registry import Call, Family, Registry

# Gemini first: its :method calls under /v1/models are not the OpenAI model list's.
REGISTRY = Registry([gemini.FAMILY, anthropic.FAMILY, openai_chat.FAMILY, openai_responses.FAMILY])

__all__ = ["REGISTRY", "Call", "Family", "Registry"]
