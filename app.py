"""The application factory; ``python app.py`` serves it with gevent's WSGI server.

Production runs ``gunicorn -k gevent wsgi:app`` (see the Procfile); this entry point is for one command on
a laptop.
"""

from __future__ import annotations

if __name__ == "__main__":  # patch before anything imports ssl or socket (see wsgi.py)
    from gevent import monkey

    monkey.patch_all()

import logging  # noqa: E402
import socket  # noqa: E402

from flask import Flask, Response, g, jsonify, request  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

from gateway import fastjson, logs  # noqa: E402
from gateway.accounts.pool import AccountPool  # noqa: E402
from gateway.api import anthropic, gemini, openai, ops  # noqa: E402
from gateway.api.body import too_large  # noqa: E402
from gateway.config import Settings  # noqa: E402
from gateway.errors import GatewayError  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.render import anthropic as anthropic_render  # noqa: E402
from gateway.render import gemini as gemini_render  # noqa: E402
from gateway.render import openai as openai_render  # noqa: E402
from gateway.runtime import Gateway  # noqa: E402
from gateway.security import KeyChecker, exposure_error, loopback_name  # noqa: E402

log = logging.getLogger("gateway")

_KINDS = {400: "invalid_request", 401: "authentication", 403: "permission", 404: "not_found",
          405: "invalid_request", 413: "too_large", 415: "invalid_request", 429: "rate_limited"}


def api_family(path: str) -> str:
    if gemini.owns(path):
        return "gemini"
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/chat/completions") or path.startswith("/v1/models"):
        return "openai"
    return "ops"


def error_response(error: GatewayError) -> tuple[Response, int, dict[str, str]]:
    """Any error, in the API format of the path it happened on (OpenAI's shape outside the other families)."""
    family = api_family(request.path)
    if family == "gemini":
        return jsonify(gemini_render.error_body(error)), gemini_render.error_status(error), gemini_render.error_headers(error)
    if family == "anthropic":
        headers = {}
        if error.retry_after is not None:
            headers["retry-after"] = str(max(1, int(error.retry_after + 0.999)))
        return jsonify(anthropic_render.error_body(error)), error.status, headers
    return jsonify(openai_render.error_body(error)), openai_render.error_status(error), openai_render.error_headers(error)


def check_exposure(host: str, settings: Settings) -> None:
    """Refuse to listen beyond loopback without API keys; warn when GATEWAY_ALLOW_NO_AUTH says it is meant."""
    problem = exposure_error([host], settings.api_keys, settings.allow_no_auth)
    if problem:
        raise SystemExit(f"error: {problem}")
    if not settings.api_keys and not loopback_name(host):
        log.warning("listening on %s without API keys (GATEWAY_ALLOW_NO_AUTH): whatever is in front of the "
                    "gateway must check who connects", host)


def create_app(settings: Settings | None = None, *, pool: AccountPool | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level, settings.log_format == "json", secrets=tuple(settings.api_keys) + (
        (settings.admin_key,) if settings.admin_key else ()))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = fastjson.FlaskJSONProvider(app)
    app.extensions["gateway"] = Gateway(settings, pool)
    app.extensions["metrics"] = metrics = Metrics()
    app.extensions["gateway"].pool.on_rate_limit = lambda account, model: metrics.rate_limits.labels(
        account.label, model).inc()
    keys = KeyChecker(settings.api_keys, settings.admin_key,
                      local_only=not (settings.api_keys or settings.allow_no_auth))
    app.register_blueprint(anthropic.bp)
    app.register_blueprint(openai.bp)
    app.register_blueprint(gemini.bp)
    app.register_blueprint(ops.bp)

    @app.before_request
    def start_request() -> Response | None:
        g.access = logs.AccessRecord(request.method, request.path, api_family(request.path))
        if request.method == "OPTIONS" and settings.cors_origins:
            return Response(status=204)
        keys.check(request.path, request.headers, query_key=request.args.get("key") if gemini.owns(request.path) else None)
        return None

    @app.after_request
    def finish_request(response: Response) -> Response:
        _cors(response)
        record = g.get("access")
        if record is not None and request.path != "/metrics":
            record.status = response.status_code
            outcome = g.get("outcome")
            response.call_on_close(lambda: _account(record, outcome, metrics))
        return response

    def _cors(response: Response) -> None:
        origin = request.headers.get("Origin")
        if not origin or not settings.cors_origins:
            return
        if "*" in settings.cors_origins or origin in settings.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers",
                "authorization, content-type, x-api-key, x-goog-api-key, anthropic-version, anthropic-beta")
            response.headers["Access-Control-Max-Age"] = "600"

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
        status = exc.code or 500
        if status == 404:
            message = f"Endpoint {request.method} {request.path} not found"
        elif status == 405:
            message = f"Method {request.method} not allowed on {request.path}"
        elif status == 413:
            return error_response(too_large())
        else:
            message = exc.description or exc.name
        error = GatewayError(message, status=status)
        error.kind = _KINDS.get(status, "internal")
        return error_response(error)

    @app.errorhandler(GatewayError)
    def gateway_error(error: GatewayError) -> tuple[Response, int, dict[str, str]]:
        return error_response(error)

    @app.errorhandler(Exception)
    def crash(exc: Exception) -> tuple[Response, int, dict[str, str]]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(GatewayError("internal gateway error"))

    return app


def _account(record: logs.AccessRecord, outcome, metrics: Metrics) -> None:  # noqa: ANN001
    """At the very end of a response (after the last streamed byte): the access line and the metrics."""
    record.emit(outcome)
    if record.family == "ops":
        return
    model = record.model or "unknown"  # a resolved id: a client's own string could grow the metrics without bound
    metrics.requests.labels(record.family, model, str(record.status)).inc()
    metrics.latency.labels(record.family).observe(record.elapsed())
    if outcome is not None:
        if outcome.attempts > 1:
            metrics.retries.labels(record.family).inc(outcome.attempts - 1)
        usage = outcome.usage
        metrics.tokens.labels(record.family, model, "in").inc(usage.prompt_tokens)
        metrics.tokens.labels(record.family, model, "out").inc(usage.output_tokens + usage.thinking_tokens)


def listener(host: str, port: int) -> socket.socket:
    """The listening socket, with Nagle's algorithm off for every connection accepted from it.

    gevent's WSGI server sends a response's headers and body in separate writes; with Nagle on, the body
    waited for the client's delayed ACK of the headers: 40 ms added to every answer (gunicorn turns it off).
    Linux hands TCP_NODELAY down from the listening socket to the accepted ones.
    """
    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                backlog=2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def main() -> None:
    from gevent.pywsgi import WSGIServer

    settings = Settings.from_env()
    app = create_app(settings)
    check_exposure(settings.host, settings)
    log.info("serving on http://%s:%d", settings.host, settings.port)
    WSGIServer(listener(settings.host, settings.port), app, log=None).serve_forever()


if __name__ == "__main__":
    main()
