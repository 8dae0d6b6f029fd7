"""Several Google accounts behind one gateway: strategies, rate limits, invalid tokens, retries, fallback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anthropic
import pytest
import requests

from gateway.dispatch import FALLBACK_HEADER
from tests.conftest import EMAILS, REFRESH_TOKEN, TOKENS, gateway_settings, saved_accounts, serve
from tests.fake_cloudcode import FakeCloudCode, Reply
from tests.test_anthropic_api import sse_events

MODEL = "claude-sonnet-4-6"
LONG_LIMIT = dict(reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h0m0s")


def ask(text: str = "hi", **extra) -> dict:
    return {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": text}], **extra}


@contextmanager
def running(fake: FakeCloudCode, path: Path, **overrides) -> Iterator[tuple[str, object]]:
    url, app, server = serve(gateway_settings(fake, path, **overrides))
    try:
        yield url, app
    finally:
        server.shutdown()


def served_by(fake: FakeCloudCode) -> list[str]:
    """The account of every generate call that got an answer, in order."""
    return [r.email.split("@")[0] for r in fake.generate_requests() if r.status == 200]


def post(url: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(f"{url}/v1/messages", json=body, timeout=20, **kwargs)


# -- strategies -----------------------------------------------------------------------------------


def test_round_robin_takes_the_next_account_every_time(fake, trio_file) -> None:
    with running(fake, trio_file, account_strategy="round-robin") as (url, _):
        for _ in range(6):
            assert post(url, ask("same conversation")).status_code == 200
    assert served_by(fake) == ["alice", "bob", "carol", "alice", "bob", "carol"]


def test_sticky_stays_on_one_account_until_it_is_limited(fake, trio_file) -> None:
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        for n in range(3):
            assert post(url, ask(f"conversation {n}")).status_code == 200
        fake.enqueue(Reply.error(429, **LONG_LIMIT), email="alice@example.com")
        for n in range(3):
            assert post(url, ask(f"later {n}")).status_code == 200
    assert served_by(fake) == ["alice"] * 3 + ["bob"] * 3


def test_hybrid_keeps_each_conversation_on_its_account_and_spreads_new_ones(fake, trio_file) -> None:
    with running(fake, trio_file) as (url, _):  # hybrid is the default
        for n in range(3):
            assert post(url, ask(f"conversation {n}")).status_code == 200
        first = served_by(fake)
        for n in (1, 0, 2, 1):
            assert post(url, ask(f"conversation {n}")).status_code == 200
    assert sorted(first) == ["alice", "bob", "carol"]
    assert served_by(fake)[3:] == [first[1], first[0], first[2], first[1]]


def test_hybrid_weighs_new_conversations_by_remaining_quota(fake, trio_file) -> None:
    fake.set_quota("bob@example.com", MODEL, 0.05, None)
    with running(fake, trio_file) as (url, _):
        assert requests.get(f"{url}/account-limits", timeout=10).status_code == 200  # the gateway learns quotas
        for n in range(6):
            assert post(url, ask(f"conversation {n}")).status_code == 200
    assert "bob" not in served_by(fake)
    assert served_by(fake).count("alice") == served_by(fake).count("carol") == 3


# -- rate limits ------------------------------------------------------------------------------------


def test_a_429_is_served_by_another_account_and_the_client_sees_200(fake, trio_file) -> None:
    fake.enqueue(Reply.error(429, **LONG_LIMIT), email="alice@example.com")
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        message = client.messages.create(**ask("hello"))
        assert message.content[0].text == "Echo: hello"
        with client.messages.stream(**ask("streamed")) as stream:
            assert "".join(stream.text_stream) == "Echo: streamed"
    calls = [(r.email, r.status) for r in fake.generate_requests()]
    assert calls == [("alice@example.com", 429), ("bob@example.com", 200), ("bob@example.com", 200)]


def test_limits_are_per_model(fake, trio_file) -> None:
    fake.enqueue(Reply.error(429, **LONG_LIMIT), email="alice@example.com")
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        assert post(url, ask()).status_code == 200
        assert post(url, ask(model="gemini-3-flash-agent")).status_code == 200
    # alice is limited on claude-sonnet-4-6 only; sticky moved to bob, which serves gemini too.
    assert [(r.email[0], r.body["model"], r.status) for r in fake.generate_requests()] == [
        ("a", MODEL, 429), ("b", MODEL, 200), ("b", "gemini-3-flash-agent", 200)]


def test_all_limited_with_a_short_reset_waits_and_streams_pings_meanwhile(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(429, retry_delay="1s", quota_reset_delay="1s"), email=email)
    with running(fake, trio_file, ping_interval=0.2) as (url, _):
        started = time.monotonic()
        response = post(url, ask("patience", stream=True), stream=True)
        headers_after = time.monotonic() - started
        events = sse_events(response)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    names = [name for name, _ in events]
    assert names.index("message_start") >= 2 and set(names[: names.index("message_start")]) == {"ping"}
    assert headers_after < 0.8 < elapsed  # the pings kept the client company during the wait
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Echo: patience"
    assert [r.status for r in fake.generate_requests()] == [429, 429, 429, 200]


def test_all_limited_with_a_short_reset_waits_for_a_json_client(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(429, retry_delay="1s", quota_reset_delay="1s"), email=email)
    with running(fake, trio_file) as (url, _):
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        started = time.monotonic()
        assert client.messages.create(**ask("wait for it")).content[0].text == "Echo: wait for it"
        assert time.monotonic() - started >= 0.9


def test_all_limited_with_a_long_reset_is_a_429_with_retry_after(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(429, **LONG_LIMIT), email=email)
    with running(fake, trio_file) as (url, _):
        started = time.monotonic()
        response = post(url, ask())
        assert time.monotonic() - started < 2
        assert response.status_code == 429
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert 3500 <= int(response.headers["retry-after"]) <= 3600
        streamed = post(url, ask(stream=True), stream=True)
        assert streamed.status_code == 429 and "retry-after" in streamed.headers
    assert len(fake.generate_requests()) == 3  # the second request did not even reach the upstream


def test_max_wait_zero_answers_429_at_once(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(429, retry_delay="1s", quota_reset_delay="1s"), email=email)
    with running(fake, trio_file, max_wait=0.0) as (url, _):
        response = post(url, ask())
    assert response.status_code == 429 and response.headers["retry-after"] == "1"


# -- invalid refresh tokens -----------------------------------------------------------------------------


def test_invalid_grant_marks_the_account_and_the_pool_goes_on(fake, trio_file) -> None:
    fake.revoke(REFRESH_TOKEN)
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        response = post(url, ask("still served"))
        assert response.status_code == 200
        assert REFRESH_TOKEN not in response.text
        assert post(url, ask("again")).status_code == 200
        health = requests.get(f"{url}/health", timeout=5).json()
    assert health == {"status": "ok", "accounts": 3, "activeAccounts": 2}
    assert served_by(fake) == ["bob", "bob"]
    assert fake.refresh_count(REFRESH_TOKEN) == 1  # tried once, then left alone
    alice = saved_accounts(trio_file, lambda data: data["accounts"][0].get("isInvalid"))["accounts"][0]
    assert alice["isInvalid"] is True and "invalid_grant" in alice["invalidReason"]
    assert alice["refreshToken"] == REFRESH_TOKEN and (trio_file.stat().st_mode & 0o777) == 0o600


def test_health_counts_accounts_that_can_serve(fake, trio_file) -> None:
    data = json.loads(trio_file.read_text())
    data["accounts"][2]["enabled"] = False
    trio_file.write_text(json.dumps(data))
    fake.revoke(REFRESH_TOKEN)
    with running(fake, trio_file) as (url, _):
        assert requests.get(f"{url}/health", timeout=5).json()["activeAccounts"] == 2
        assert post(url, ask()).status_code == 200
        assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok", "accounts": 3, "activeAccounts": 1}


# -- server errors ---------------------------------------------------------------------------------------


def test_server_errors_back_off_within_the_retry_count(fake, trio_file) -> None:
    fake.enqueue(*[Reply.error(500, message="backend error")] * 10)
    with running(fake, trio_file, server_error_delay=0.05, max_retries=3) as (url, _):
        started = time.monotonic()
        response = post(url, ask())
        elapsed = time.monotonic() - started
    assert response.status_code == 502 and "backend error" in response.json()["error"]["message"]
    assert len(fake.generate_requests()) == 4
    # Pauses of 0.05, 0.1 and 0.2 s, each jittered down by at most half.
    assert 0.175 <= elapsed < 1.5


def test_server_errors_stop_when_the_time_budget_is_spent(fake, trio_file) -> None:
    fake.enqueue(*[Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED")] * 20)
    with running(fake, trio_file, server_error_delay=0.2, max_retries=20, retry_budget=0.5) as (url, _):
        started = time.monotonic()
        response = post(url, ask())
        elapsed = time.monotonic() - started
    assert response.status_code == 529 and response.json()["error"]["type"] == "overloaded_error"
    assert 2 <= len(fake.generate_requests()) <= 3
    assert elapsed < 0.5 + 0.3


def test_a_server_error_is_retried_on_another_account(fake, trio_file) -> None:
    fake.enqueue(Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED"), email="alice@example.com")
    with running(fake, trio_file, account_strategy="sticky", server_error_delay=0.01) as (url, _):
        assert post(url, ask()).status_code == 200
    assert [(r.email[0], r.status) for r in fake.generate_requests()] == [("a", 503), ("b", 200)]


# -- tokens under concurrency ------------------------------------------------------------------------------


def test_concurrent_requests_refresh_each_token_exactly_once(fake, trio_file) -> None:
    with running(fake, trio_file, account_strategy="round-robin") as (url, _):
        for round_ in (1, 2):
            barrier = threading.Barrier(30)
            statuses: list[int] = []

            def one(n: int) -> None:
                barrier.wait()
                statuses.append(post(url, ask(f"request {n}")).status_code)

            threads = [threading.Thread(target=one, args=(n,)) for n in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert statuses == [200] * 30
            assert {email: fake.refresh_count(TOKENS[email]) for email in EMAILS} == dict.fromkeys(EMAILS, round_)
            fake.expire_access_tokens()  # the gateway learns it from 401s in the next round


# -- model fallback ---------------------------------------------------------------------------------------


def test_fallback_model_answers_when_every_account_is_out_of_quota(fake, trio_file) -> None:
    opus, fallback = "claude-opus-4-6-thinking", "gemini-pro-agent"
    for email in EMAILS:
        fake.enqueue(Reply.error(429, **LONG_LIMIT), email=email, model=opus)
    with running(fake, trio_file, model_fallbacks={opus: fallback}) as (url, _):
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        raw = client.messages.with_raw_response.create(**ask("fall back", model=opus))
        assert raw.headers[FALLBACK_HEADER] == fallback
        assert raw.parse().content[-1].text == "Echo: fall back"
        streamed = post(url, ask("stream too", model=opus, stream=True), stream=True)
        assert streamed.status_code == 200 and streamed.headers[FALLBACK_HEADER] == fallback
        assert sse_events(streamed)[-1][0] == "message_stop"
        chat = requests.post(f"{url}/v1/chat/completions", timeout=10, json={
            "model": opus, "messages": [{"role": "user", "content": "openai too"}]})
        assert chat.status_code == 200 and chat.headers[FALLBACK_HEADER] == fallback
        plain = post(url, ask("no fallback needed"))
        assert FALLBACK_HEADER not in plain.headers
    assert [r.body["model"] for r in fake.generate_requests() if r.status == 200] == [
        fallback, fallback, fallback, MODEL]


def test_without_fallback_every_account_out_of_quota_is_a_429(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(429, **LONG_LIMIT), email=email)
    with running(fake, trio_file) as (url, _):
        response = post(url, ask())
    assert response.status_code == 429 and FALLBACK_HEADER not in response.headers


@pytest.mark.parametrize("status, message", [
    (403, "The caller does not have permission"),
    (404, "Requested entity was not found."),
])
def test_an_account_refused_with_403_or_404_hands_the_request_to_another(fake, trio_file, status, message) -> None:
    """A suspended account or one whose tier lacks the model must not fail requests other accounts can serve."""
    fake.enqueue(Reply.error(status, message=message), email="alice@example.com")
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        answer = post(url, ask())
    assert answer.status_code == 200
    served = [(r.email, r.status) for r in fake.generate_requests()]
    assert served == [("alice@example.com", status), ("bob@example.com", 200)]


def test_when_every_account_refuses_the_client_gets_the_upstream_answer(fake, trio_file) -> None:
    for email in EMAILS:
        fake.enqueue(Reply.error(403, message="The caller does not have permission"), email=email)
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        answer = post(url, ask())
    assert answer.status_code == 403
    assert answer.json()["error"]["type"] == "permission_error"
    assert "does not have permission" in answer.json()["error"]["message"]
    assert len(fake.generate_requests()) == 3


def test_cooldowns_in_the_file_are_honoured_at_start(fake, trio_file) -> None:
    """antigravity-claude-proxy's modelRateLimits (and the gateway's own, from another worker or an earlier run)."""
    import json
    import time

    data = json.loads(trio_file.read_text())
    now_ms = int(time.time() * 1000)
    data["accounts"][0]["modelRateLimits"] = {
        "gemini-3-flash-agent": {"isRateLimited": True, "resetTime": now_ms + 3_600_000},
        MODEL: {"isRateLimited": True, "resetTime": now_ms - 1000},  # over already
        "claude-opus-4-6-thinking": {"isRateLimited": False, "resetTime": now_ms + 3_600_000},
        "gemini-pro-agent": "not a limit",
    }
    trio_file.write_text(json.dumps(data))
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        assert post(url, ask()).status_code == 200  # alice: her limit on it is over
        assert post(url, ask(model="gemini-3-flash-agent")).status_code == 200  # not alice: limited for an hour
        report = requests.get(f"{url}/account-limits", timeout=10).json()
    served = [(r.email, r.body["model"]) for r in fake.generate_requests()]
    assert served == [("alice@example.com", MODEL), ("bob@example.com", "gemini-3-flash-agent")]
    assert list(report["accounts"][0]["modelRateLimits"]) == ["gemini-3-flash-agent"]
