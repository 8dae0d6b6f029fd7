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


def _nested_input(levels: int) -> bytes:
    """A body whose arrays and objects nest ``levels`` deep, the innermost in a tool_use input."""
    inner = '{"a":' * (levels - 5) + "1" + "}" * (levels - 5)
    return ('{"model":"claude-sonnet-4-6","max_tokens":10,"tools":[{"name":"t","input_schema":{}}],"messages":['
            '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":%s}]},'
            '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"ok"}]}]}' % inner).encode()


def test_nesting_up_to_the_limit_is_served_and_beyond_it_is_a_400(gateway) -> None:
    from gateway.api.body import MAX_JSON_DEPTH

    headers = {"Content-Type": "application/json"}
    assert _post(gateway, data=_nested_input(MAX_JSON_DEPTH), headers=headers).status_code == 200
    for levels in (MAX_JSON_DEPTH + 1, 1000, 100_000):
        response = _post(gateway, data=_nested_input(levels), headers=headers)
        assert response.status_code == 400 and "levels deep" in response.json()["error"]["message"]
    openai = _post(gateway, data=b'{"model":"gemini-3-flash-agent","messages":' + b"[" * 1000 + b"]" * 1000 + b"}",
                   headers=headers, path="/v1/chat/completions")
    assert openai.status_code == 400 and openai.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b'"\\ud800"', b'"a\\udfffb"', b'"\\ude00\\ud83d"', b'"\xed\xa0\x80"'])
def test_lone_surrogates_are_a_400_in_each_family_format(gateway, raw) -> None:
    """Escaped, or as the UTF-8-like bytes of a surrogate (the json module decodes bytes with surrogatepass)."""
    headers = {"Content-Type": "application/json"}
    for path, body in (("/v1/messages", b'{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user",'
                                        b'"content":%s}]}' % raw),
                       ("/v1/chat/completions", b'{"model":%s,"messages":[{"role":"user","content":"x"}]}' % raw),
                       ("/v1/messages", b'{"model":"claude-sonnet-4-6","max_tokens":10,%s:1,"messages":[]}' % raw)):
        response = _post(gateway, data=body, headers=headers, path=path)
        assert response.status_code == 400, response.text
        assert "surrogate" in (response.json()["error"]["message"])
    assert _post(gateway, data=b'{"model":"claude-sonnet-4-6","max_tokens":10,"messages":[{"role":"user",'
                               b'"content":"\\ud83d\\ude00"}]}', headers=headers).status_code == 200  # a pair is fine


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/x.png", "http://127.0.0.1:abc/x.png", "http://[::1/x.png",
                                 "http://[zz]/x.png", "http://a b/x.png", "http://" + "a" * 300 + "/x.png"])
def test_image_urls_with_a_bad_host_or_port_are_a_400(gateway, url) -> None:
    anthropic = _post(gateway, {**OK, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": url}}]}]})
    assert anthropic.status_code == 400 and anthropic.json()["error"]["type"] == "invalid_request_error"
    openai = _post(gateway, {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}]}]}, path="/v1/chat/completions")
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "image.url"


def _schema_bomb() -> dict:
    """About 100 KB of schema whose $refs inline to 25 MB."""
    defs = {f"D{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"},
                                                       "b": {"$ref": f"#/$defs/D{i + 1}"}}} for i in range(24)}
    defs["D24"] = {"type": "string", "description": "leaf " * 20_000, "maxLength": 5}
    return {"$ref": "#/$defs/D0", "$defs": defs}


def test_tool_schemas_expanding_past_the_budget_are_a_400_in_each_family_format(gateway, fake) -> None:
    anthropic = _post(gateway, {**OK, "tools": [{"name": "t", "input_schema": _schema_bomb()}]})
    assert anthropic.status_code == 400 and anthropic.json()["error"]["type"] == "invalid_request_error"
    assert "$ref" in anthropic.json()["error"]["message"]
    openai = _post(gateway, {"model": "gemini-3-flash-agent", "messages": [{"role": "user", "content": "hi"}],
                             "tools": [{"type": "function", "function": {"name": "t", "parameters": _schema_bomb()}}]},
                   path="/v1/chat/completions")
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "tools"
    response_format = _post(gateway, {"model": "gemini-3-flash-agent", "messages": [{"role": "user", "content": "hi"}],
                                      "response_format": {"type": "json_schema", "json_schema": {
                                          "name": "x", "schema": _schema_bomb()}}}, path="/v1/chat/completions")
    assert response_format.status_code == 400 and response_format.json()["error"]["type"] == "invalid_request_error"
    assert not [r for r in fake.requests if r.method == "streamGenerateContent"]  # nothing reached the upstream
