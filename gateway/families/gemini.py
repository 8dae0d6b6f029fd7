"""Google's Gemini API as a family: its paths, its error format and where Google's clients put their key.

Its views stay in ``gateway/api/gemini.py``: a Gemini model is served by the passthrough lane, not by the one
handler the other families share.
"""

from __future__ import annotations

from typing import Any

from ..api import gemini
from ..errors import GatewayError
from ..render import gemini as render
from .registry import Family


class Gemini(Family):
    name = "gemini"
    blueprint = gemini.bp
    ping = render.PING
    # Older Google clients (and curl users) send ``?key=``.
    auth_query = "key"

    def owns(self, path: str) -> bool:
        """Everything under /v1beta, and Google's ``:method`` calls on /v1/models (the rest of /v1 is OpenAI's)."""
        return gemini.owns(path)

    def error_response(self, error: GatewayError) -> tuple[dict[str, Any], int, dict[str, str]]:
        return render.error_body(error), render.error_status(error), render.error_headers(error)


FAMILY = Gemini()
