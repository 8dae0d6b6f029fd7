"""API-neutral errors.

Code anywhere in the gateway raises these; each API family renders them into its own wire format at the
edge, so a 429 from the pool looks like an Anthropic error to Anthropic clients and an OpenAI error to
OpenAI clients without the pool knowing either.
"""

from __future__ import annotations

from .redact import redact


class GatewayError(Exception):
    """Base class: ``kind`` is a neutral name the renderers map, ``status`` the HTTP status, and ``code`` an
    optional machine-readable reason that a client acts on (``previous_response_not_found``)."""

    kind = "internal"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.code = code
        if status is not None:
            self.status = status


class InvalidRequest(GatewayError):
    kind = "invalid_request"
    status = 400


class AuthenticationFailed(GatewayError):
    kind = "authentication"
    status = 401


class PermissionDenied(GatewayError):
    kind = "permission"
    status = 403


class NotFound(GatewayError):
    kind = "not_found"
    status = 404


class RequestTooLarge(GatewayError):
    kind = "too_large"
    status = 413


class RateLimited(GatewayError):
    kind = "rate_limited"
    status = 429


class UpstreamError(GatewayError):
    """The upstream failed in a way retries did not cure."""

    kind = "upstream"
    status = 502


class Overloaded(GatewayError):
    kind = "overloaded"
    status = 529


class ServiceUnavailable(GatewayError):
    """Nothing can serve the request: no usable account, or every endpoint unreachable."""

    kind = "unavailable"
    status = 503
