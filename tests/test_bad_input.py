"""Bad requests get a 4xx in Anthropic's error format naming the problem, never a 500."""

from __future__ import annotations

import pytest
import requests

OK = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def _post(gateway, body=None, data=None, headers=None, path="/v1/messages"):
    return requests.post(f"{gateway.url}{path}", json=body, data=data, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"messages": None}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"model": 5}, "model"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages.0.content.0.text"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
          "media_type": "image/png", "data": "%%%"}}]}]}, "messages.0.content.0.source.data"),
        ({"tools": [{"name": "t", "input_schema": "nope"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled", "budget_tokens": "lots"}}, "thinking.budget_tokens"),
        ({"system": 42}, "system"),
    ],
)
def test_invalid_fields_are_named(gateway, change: dict, field: str) -> None:
    body = {**OK, **change}
    if change.get("messages") is None and "messages" in change:
        del body["messages"]
    response = _post(gateway, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(field)


def test_missing_max_tokens(gateway) -> None:
    body = dict(OK)
    del body["max_tokens"]
    response = _post(gateway, body)
    assert response.status_code == 400
    assert "max_tokens" in response.json()["error"]["message"]


def test_malformed_json_and_wrong_content_type(gateway) -> None:
    bad = _post(gateway, data=b'{"model": ', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    text = _post(gateway, data=b"hello", headers={"Content-Type": "text/plain"})
    assert text.status_code == 400 and "Content-Type" in text.json()["error"]["message"]
    array = _post(gateway, body=[1, 2])
    assert array.status_code == 400 and "object" in array.json()["error"]["message"]


def test_unknown_model_is_404_pointing_at_the_list(gateway) -> None:
    response = _post(gateway, {**OK, "model": "gpt-99"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert "/v1/models" in response.json()["error"]["message"]


def test_unknown_fields_are_ignored(gateway, fake) -> None:
    response = _post(gateway, {**OK, "some_future_field": {"x": 1}, "service_tier": "auto"})
    assert response.status_code == 200


def test_unknown_path_and_method(gateway) -> None:
    missing = requests.get(f"{gateway.url}/v1/messages/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["type"] == "error"
    wrong = requests.get(f"{gateway.url}/v1/messages", timeout=5)
    assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
