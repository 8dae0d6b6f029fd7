"""The registry of API families: which family owns a path, and what each says about errors and keys."""

from __future__ import annotations

from werkzeug.datastructures import Headers

from gateway.errors import NotFound, RateLimited
from gateway.families import REGISTRY, Family
from gateway.security import presented_key


def test_each_path_belongs_to_the_family_that_declares_it() -> None:
    names = {path: REGISTRY.for_path(path).name for path in (
        "/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/models", "/v1/models/x",
        "/health", "/metrics", "/v1/messagesX", "/nowhere", "/v1/responses", "/responses/resp_1/input_items",
        "/v1beta/models", "/v1/models/gemini-3-flash:streamGenerateContent")}
    assert names == {
        "/v1/messages": "anthropic", "/v1/messages/count_tokens": "anthropic", "/v1/chat/completions": "openai",
        "/v1/models": "openai", "/v1/models/x": "openai", "/health": "ops", "/metrics": "ops",
        "/v1/messagesX": "ops", "/nowhere": "ops", "/v1/responses": "responses",
        "/responses/resp_1/input_items": "responses", "/v1beta/models": "gemini",
        "/v1/models/gemini-3-flash:streamGenerateContent": "gemini"}


def test_every_family_has_a_blueprint_and_a_distinct_name() -> None:
    names = [family.name for family in REGISTRY.families]
    assert len(set(names)) == len(names) and "ops" not in names
    assert all(family.blueprint is not None for family in REGISTRY.families)


def test_a_machine_readable_code_reaches_both_error_formats() -> None:
    error = NotFound("gone", code="thread_not_found")
    anthropic_body, status, _ = REGISTRY.for_path("/v1/messages").error_response(error)
    assert status == 404
    assert anthropic_body["error"] == {"type": "not_found_error", "message": "gone",
                                       "details": {"error_code": "thread_not_found"}}
    openai_body, status, _ = REGISTRY.for_path("/v1/chat/completions").error_response(error)
    assert status == 404 and openai_body["error"]["code"] == "thread_not_found"


def test_retry_after_in_each_family_s_headers() -> None:
    error = RateLimited("slow down", retry_after=1.2)
    assert REGISTRY.for_path("/v1/messages").error_response(error)[2] == {"retry-after": "2"}
    assert REGISTRY.for_path("/health").error_response(error)[2] == {"retry-after": "2", "retry-after-ms": "1200"}


def test_a_family_names_the_headers_its_clients_send_the_key_in() -> None:
    headers = Headers({"x-api-key": "from-x", "Authorization": "Bearer from-bearer", "x-goog-api-key": "from-goog"})
    assert presented_key(headers) == "from-x"
    assert presented_key(headers, ("authorization", "x-api-key")) == "from-bearer"
    assert presented_key(headers, ("x-goog-api-key",)) == "from-goog"
    assert presented_key(Headers({"Authorization": "Basic abc"}), ("authorization",)) is None
    assert Family().auth_headers == ("x-api-key", "x-goog-api-key", "authorization")
