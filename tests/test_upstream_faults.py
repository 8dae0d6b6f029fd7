"""Upstream failures: what the client sees, and that nothing is re-sent once the answer has started."""

from __future__ import annotations


import anthropic
import pytest
import requests

from tests.conftest import REFRESH_TOKEN, gateway_settings, serve
from tests.fake_cloudcode import FakeCloudCode, Reply
from tests.test_anthropic_api import sse_events

ASK = dict(model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "hi"}])


def test_rate_limit_with_one_account_is_a_429_with_retry_after(gateway, fake) -> None:
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h0m0s"))
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 3500 <= int(response.headers["retry-after"]) <= 3600
    # The account stays on cooldown for that model: the next request is refused without an upstream call.
    calls = len(fake.generate_requests())
    again = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert again.status_code == 429 and len(fake.generate_requests()) == calls
    # Another model is not affected.
    other = requests.post(f"{gateway.url}/v1/messages", json={**ASK, "model": "gemini-3-flash-agent"}, timeout=10)
    assert other.status_code == 200


def test_expired_token_is_refreshed_and_the_request_retried(client, fake) -> None:
    client.messages.create(**ASK)
    before = fake.refresh_count(REFRESH_TOKEN)
    fake.enqueue(Reply.error(401, message="Request had invalid authentication credentials."))
    message = client.messages.create(**ASK)
    assert message.content[0].text.startswith("Echo")
    assert fake.refresh_count(REFRESH_TOKEN) == before + 1


def test_revoked_refresh_token_marks_the_account_invalid(gateway, fake) -> None:
    fake.revoke(REFRESH_TOKEN)
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert response.status_code in (401, 503)
    body = response.json()
    assert body["type"] == "error"
    assert REFRESH_TOKEN not in response.text
    health = requests.get(f"{gateway.url}/health", timeout=5).json()
    assert health["activeAccounts"] == 0 and health["accounts"] == 1


def test_endpoint_fallback_on_5xx_and_connection_error(fake, accounts_file) -> None:
    second = FakeCloudCode()
    # The second "endpoint" is the same fake, reached through another URL: a dead port first.
    settings = gateway_settings(fake, accounts_file, cloudcode_urls=("http://127.0.0.1:9", fake.base_url))
    url, _, server = serve(settings)
    try:
        response = requests.post(f"{url}/v1/messages", json=ASK, timeout=10)
        assert response.status_code == 200
    finally:
        server.shutdown()
    del second


def test_server_error_then_success_on_the_next_endpoint(fake, accounts_file) -> None:
    settings = gateway_settings(fake, accounts_file, cloudcode_urls=(fake.base_url, fake.base_url))
    url, _, server = serve(settings)
    try:
        fake.enqueue(Reply.error(500, message="backend error"))
        response = requests.post(f"{url}/v1/messages", json=ASK, timeout=10)
        assert response.status_code == 200
        assert len(fake.generate_requests()) == 2
    finally:
        server.shutdown()


def test_persistent_server_errors_are_a_5xx_in_anthropic_format(gateway, fake) -> None:
    fake.enqueue(*[Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED",
                               message="No capacity available for model claude-sonnet-4-6 on the server")] * 5)
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert response.status_code in (502, 503, 529)
    assert response.json()["type"] == "error"


def test_upstream_400_is_passed_on_as_invalid_request(gateway, fake) -> None:
    fake.enqueue(Reply.error(400, message="Request contains an invalid argument."))
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": "Request contains an invalid argument."}


def test_mid_stream_drop_ends_with_an_error_event_and_no_resend(gateway, fake) -> None:
    fake.enqueue(Reply(text="this answer will be cut off somewhere", chunks=4, drop_after=2))
    response = requests.post(f"{gateway.url}/v1/messages", json={**ASK, "stream": True}, stream=True, timeout=10)
    assert response.status_code == 200
    events = sse_events(response)
    names = [n for n, _ in events]
    assert names.count("message_start") == 1
    assert names[-1] == "error"
    assert "message_stop" not in names
    assert len(fake.generate_requests()) == 1


def test_sdk_raises_on_mid_stream_error(client, fake) -> None:
    fake.enqueue(Reply(text="cut short here", chunks=3, drop_after=1))
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(**ASK) as stream:
            for _ in stream:
                pass


def test_empty_answer_is_retried_before_anything_is_sent(client, fake) -> None:
    fake.enqueue(Reply.empty(), Reply.text("second time lucky"))
    message = client.messages.create(**ASK)
    assert message.content[0].text == "second time lucky"
    assert len(fake.generate_requests()) == 2


def test_always_empty_gives_a_clear_message(client, fake) -> None:
    fake.enqueue(Reply.empty(), Reply.empty(), Reply.empty())
    message = client.messages.create(**ASK)
    assert "No response after retries" in message.content[0].text
    assert len(fake.generate_requests()) == 3


def test_wire_variants_crlf_and_split_writes(client, fake) -> None:
    fake.enqueue(Reply(text="split across writes", chunks=3, crlf=True, split_writes=True, no_final_newline=True))
    with client.messages.stream(**ASK) as stream:
        text = "".join(stream.text_stream)
    assert text == "split across writes"


def test_a_blocked_prompt_is_a_refusal_not_an_empty_answer_to_retry(client, fake) -> None:
    """Google answers a prompt it refuses with promptFeedback.blockReason and no candidates."""
    fake.enqueue(Reply.blocked("PROHIBITED_CONTENT"), Reply.blocked("SAFETY"))
    message = client.messages.create(**ASK)
    assert message.stop_reason == "refusal"
    assert "".join(block.text for block in message.content) == ""  # the model said nothing
    assert message.usage.input_tokens > 0
    with client.messages.stream(**ASK) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "refusal" and "".join(block.text for block in final.content) == ""
    assert len(fake.generate_requests()) == 2  # no re-send: a refusal is an answer


def test_a_blocked_prompt_is_content_filter_with_a_refusal_for_openai(gateway, fake) -> None:
    import openai

    oai = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    ask = dict(model="gemini-3-flash-agent", messages=[{"role": "user", "content": "hi"}])
    fake.enqueue(Reply.blocked("SAFETY"), Reply.blocked("BLOCKLIST"))
    completion = oai.chat.completions.create(**ask)
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None and "blocked this prompt (SAFETY)" in choice.message.refusal
    chunks = list(oai.chat.completions.create(**ask, stream=True))
    refusal = "".join(c.choices[0].delta.refusal or "" for c in chunks if c.choices)
    assert "blocked this prompt (BLOCKLIST)" in refusal
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"
    assert len(fake.generate_requests()) == 2


def test_a_started_answer_no_longer_holds_the_request(gateway, fake) -> None:
    """Once content flows nothing re-sends the request, so a long stream must not keep its conversation alive."""
    import gc
    import weakref

    from gateway.core.events import TextDelta
    from gateway.schemas.anthropic import MESSAGES_SCHEMA

    dispatcher = gateway.app.extensions["gateway"].dispatcher
    fake.enqueue(Reply.text("one two three four", chunks=4))
    request = MESSAGES_SCHEMA.load({**ASK, "messages": [{"role": "user", "content": "x" * 100_000}]})
    held = weakref.ref(request)
    with gateway.app.app_context():
        events = dispatcher.events(request)
        first = next(events)
        del request
        gc.collect()
        assert isinstance(first, TextDelta) and held() is None  # mid-answer, the request is gone
        rest = [event.text for event in events if isinstance(event, TextDelta)]
    assert first.text + "".join(rest) == "one two three four"


def test_an_error_answer_to_a_json_call_reaches_the_client_with_its_message(fake, tmp_path) -> None:
    """loadCodeAssist (project discovery) is read whole, not streamed: its error body must still be read."""
    from tests.conftest import write_accounts

    accounts = write_accounts(tmp_path / "accounts.json", [{"email": "alice@example.com", "refreshToken": REFRESH_TOKEN}])
    fake.inject("loadCodeAssist", status=403, body={"error": {
        "code": 403, "message": "Gemini for Google Cloud API has not been used in project 123", "status": "PERMISSION_DENIED"}})
    url, _, server = serve(gateway_settings(fake, accounts))
    try:
        response = requests.post(f"{url}/v1/messages", json=ASK, timeout=10)
    finally:
        server.shutdown()
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert "has not been used in project 123" in response.json()["error"]["message"]
