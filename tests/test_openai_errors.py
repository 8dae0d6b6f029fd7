"""Errors on the OpenAI routes: OpenAI's envelope and status codes, before and after a stream started."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from tests.conftest import gateway_settings, serve
from tests.fake_cloudcode import Reply

OK = {"model": "gemini-3-flash-agent", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=30)


def post(url: str, body=None, **kwargs) -> requests.Response:  # noqa: ANN001
    return requests.post(f"{url}/v1/chat/completions", json=body, timeout=10, **kwargs)


def assert_openai_error(response: requests.Response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind and error["message"]
    return error


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": None}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": []}, "messages"),
        ({"model": 5}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"stop": 5}, "stop"),
        ({"stop": ["ok", 5]}, "stop[1]"),
        ({"reasoning_effort": "huge"}, "reasoning_effort"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio",
                                                     "input_audio": {"data": "aGk=", "format": ["wav"]}}]}]},
         "messages[0].content[0].input_audio.format"),
        ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
         "messages[0].content[0].file"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
         "messages[0].content[0].image_url.url"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                     "image_url": {"url": "data:image/png;base64,%%%"}}]}]},
         "messages[0].content[0].image_url.url"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": "nope"}]},
         "messages[1].tool_calls"),
        ({"messages": [{"role": "user", "content": "x"},
                       {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]},
         "messages[1].tool_calls[0].id"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "nope"}}]},
         "tools[0].function.parameters"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice.function.name"),
        ({"response_format": {"type": "yaml"}}, "response_format.type"),
        ({"n": 2}, "n"),
        ({"modalities": ["text", "audio"]}, "modalities"),
    ],
)
def test_invalid_fields_are_named(gateway, change: dict, param: str) -> None:
    body = {**OK, **change}
    if change.get("messages", ...) is None:
        del body["messages"]
    error = assert_openai_error(post(gateway.url, body), 400, "invalid_request_error")
    assert error["param"] == param
    assert param in error["message"]


def test_sdk_raises_bad_request_naming_n(oai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(n=2, **OK)
    assert info.value.param == "n" and "n=1" in info.value.message


def test_missing_messages_message(gateway) -> None:
    error = assert_openai_error(post(gateway.url, {"model": "gemini-3-flash-agent"}), 400, "invalid_request_error")
    assert error["message"] == "Missing required parameter: 'messages'."


def test_malformed_json_and_wrong_content_type(gateway) -> None:
    bad = post(gateway.url, data=b'{"model": ', headers={"Content-Type": "application/json"})
    assert_openai_error(bad, 400, "invalid_request_error")
    text = post(gateway.url, data=b"hello", headers={"Content-Type": "text/plain"})
    assert "Content-Type" in assert_openai_error(text, 400, "invalid_request_error")["message"]


def test_unknown_model_is_404_pointing_at_the_list(oai, gateway) -> None:
    error = assert_openai_error(post(gateway.url, {**OK, "model": "gpt-99"}), 404, "invalid_request_error")
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "GET /v1/models" in error["message"]
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(**{**OK, "model": "gpt-99", "stream": True})


def test_unknown_fields_are_ignored(gateway) -> None:
    response = post(gateway.url, {**OK, "logit_bias": {"1": 2}, "metadata": {"a": "b"}, "store": False,
                                  "some_future_field": {"x": 1}})
    assert response.status_code == 200, response.text


def test_rate_limit_is_a_429_with_retry_after(oai, gateway, fake) -> None:
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h0m0s"))
    response = post(gateway.url, OK)
    error = assert_openai_error(response, 429, "rate_limit_error")
    assert error["code"] == "rate_limit_exceeded"
    assert 3500 <= int(response.headers["retry-after"]) <= 3600
    assert 3_500_000 <= int(response.headers["retry-after-ms"]) <= 3_600_000
    with pytest.raises(openai.RateLimitError):  # the account is cooling down: no upstream call
        oai.chat.completions.create(**OK, stream=True)


def test_upstream_400_is_an_invalid_request(gateway, fake) -> None:
    fake.enqueue(Reply.error(400, message="Request contains an invalid argument."))
    error = assert_openai_error(post(gateway.url, OK), 400, "invalid_request_error")
    assert error["message"] == "Request contains an invalid argument."


def test_capacity_exhaustion_is_a_503(gateway, fake) -> None:
    fake.enqueue(*[Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED")] * 6)
    response = post(gateway.url, OK)
    assert response.status_code in (502, 503)
    assert response.json()["error"]["type"] == "server_error"


def test_no_accounts_is_a_503(fake, tmp_path) -> None:
    url, _, server = serve(gateway_settings(fake, tmp_path / "missing.json"))
    try:
        error = assert_openai_error(post(url, OK), 503, "server_error")
        assert "accounts add" in error["message"]
    finally:
        server.shutdown()


def test_mid_stream_failure_is_one_error_chunk_without_done(gateway, fake) -> None:
    fake.enqueue(Reply(text="this answer will be cut off somewhere", chunks=4, drop_after=2))
    response = post(gateway.url, {**OK, "stream": True}, stream=True)
    assert response.status_code == 200
    lines = [line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert "data: [DONE]" not in lines
    last = json.loads(lines[-1][6:])
    assert set(last) == {"error"} and last["error"]["type"] == "server_error"
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    assert len(fake.generate_requests()) == 1


def test_sdk_raises_on_mid_stream_error(oai, fake) -> None:
    fake.enqueue(Reply(text="cut short here", chunks=3, drop_after=1))
    with pytest.raises(openai.APIError) as info:
        for _ in oai.chat.completions.create(**OK, stream=True):
            pass
    assert "middle of the answer" in info.value.message


def test_wrong_method_and_unknown_path(gateway) -> None:
    wrong = requests.get(f"{gateway.url}/v1/chat/completions", timeout=5)
    assert_openai_error(wrong, 405, "invalid_request_error")
    missing = requests.post(f"{gateway.url}/v1/chat/nothing", json=OK, timeout=5)
    assert missing.status_code == 404 and "error" in missing.json()
