"""The application factory; ``python app.py`` serves it with gevent's WSGI server.

Production runs ``gunicorn -k gevent wsgi:app`` (see the Procfile); this entry point is for one command on
a laptop.
"""

from __future__ import annotations

if __name__ == "__main__":  # patch before anything imports ssl or socket (see wsgi.py)
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway.accounts.pool import AccountPool
from gateway.api import anthropic, ops
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.render import anthropic as anthropic_render
from gateway.runtime import Gateway

log = logging.getLogger("gateway")

_KINDS = {400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found", 405: "invalid_request",
          413: "too_large", 429: "rate_limited"}


def _error_for_path(error: GatewayError) -> tuple[Response, int]:
    """Errors raised outside a blueprint (404, 405, crashes) in the caller's API format."""
    if request.path.startswith("/v1/messages"):
        return jsonify(anthropic_render.error_body(error)), error.status
    return jsonify({"error": {"message": error.message, "type": _openai_type(error), "param": error.param,
                              "code": None}}), error.status


def _openai_type(error: GatewayError) -> str:
    return {"invalid_request": "invalid_request_error", "not_found": "invalid_request_error",
            "authentication": "authentication_error", "permission": "permission_error",
            "rate_limited": "rate_limit_error"}.get(error.kind, "api_error")


def configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gateway").setLevel(level)


def create_app(settings: Settings | None = None, *, pool: AccountPool | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["gateway"] = Gateway(settings, pool)
    app.register_blueprint(anthropic.bp)
    app.register_blueprint(ops.bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 404:
            message = f"Endpoint {request.method} {request.path} not found"
        elif status == 405:
            message = f"Method {request.method} not allowed on {request.path}"
        else:
            message = exc.description or exc.name
        error = GatewayError(message, status=status)
        error.kind = _KINDS.get(status, "internal")
        return _error_for_path(error)

    @app.errorhandler(GatewayError)
    def gateway_error(error: GatewayError) -> tuple[Response, int]:
        return _error_for_path(error)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_for_path(GatewayError("internal gateway error"))

    return app


def main() -> None:
    from gevent.pywsgi import WSGIServer

    settings = Settings.from_env()
    app = create_app(settings)
    log.info("serving on http://%s:%d", settings.host, settings.port)
    WSGIServer((settings.host, settings.port), app, log=None).serve_forever()


if __name__ == "__main__":
    main()
