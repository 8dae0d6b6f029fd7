"""Tests for the strict Cloud Code fake, driven over its real socket with ``requests``.

Each strictness rule has a test showing the 400 and one showing the valid form passes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fake_cloudcode import SENTINEL_SIGNATURE, FakeCloudCode, Reply, is_claude_model

UA = "antigravity/2.9.1 linux/x64"
CLIENT = {
    "client_id": "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    "client_secret": "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",
}
EMAIL, REFRESH, PROJECT = "a@example.com", "1//refresh-a", "proj-a"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nnot-really-a-png").decode()
WEATHER = [{"functionDeclarations": [{
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
}]}]
CLAUDE_THINKING = {"generationConfig": {"maxOutputTokens": 16000,
                                        "thinkingConfig": {"include_thoughts": True, "thinking_budget": 8000}}}
GEMINI_THINKING = {"generationConfig": {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 16000}}}


# -- helpers --------------------------------------------------------------------


@pytest.fixture
def fake():
    with FakeCloudCode() as server:
        server.add_account(EMAIL, refresh_token=REFRESH, project_id=PROJECT)
        yield server


@pytest.fixture
def client(fake):
    return Client(fake)


class Client:
    """Talks to the fake the way the gateway does."""

    def __init__(self, fake: FakeCloudCode, refresh_token: str = REFRESH) -> None:
        self.fake = fake
        self.http = requests.Session()
        self.http.headers["User-Agent"] = UA
        resp = self.refresh(refresh_token)
        assert resp.status_code == 200, resp.text
        self.token = resp.json()["access_token"]

    def refresh(self, refresh_token: str) -> requests.Response:
        form = {**CLIENT, "grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.http.post(self.fake.token_url, data=form)

    def post(self, method: str, body, *, token: str | None = None, query: str = "", headers=None, **kw):
        headers = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return self.http.post(f"{self.fake.base_url}/v1internal:{method}{query}", json=body, headers=headers, **kw)

    def body(self, contents, model: str, envelope=None, **request) -> dict:
        return {"project": PROJECT, "model": model, "userAgent": "antigravity", "requestType": "agent",
                "requestId": "agent-1", "request": {"contents": contents, **request}, **(envelope or {})}

    def generate(self, contents, model: str = "gemini-3-flash-agent", *, stream: bool = True, envelope=None,
                 token: str | None = None, **request):
        body = self.body(contents, model, envelope, **request)
        if stream:
            return self.post("streamGenerateContent", body, query="?alt=sse", token=token)
        return self.post("generateContent", body, token=token)

    def answer(self, contents, model: str = "gemini-3-flash-agent", **request) -> list[dict]:
        resp = self.generate(contents, model, **request)
        assert resp.status_code == 200, resp.text
        return sse_events(resp.content)


def sse_events(raw: bytes) -> list[dict]:
    events = []
    for block in re.split(r"\r?\n\r?\n", raw.decode("utf-8")):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block[len("data: "):]))
    return events


def parts_of(events: list[dict]) -> list[dict]:
    return [part for event in events for cand in event["response"].get("candidates", [])
            for part in cand["content"]["parts"]]


def wait_for(condition, timeout: float = 2.0) -> bool:
    """Server threads finish their bookkeeping just after the client sees the end."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def user(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def replay(events: list[dict]) -> dict:
    """The model content a faithful gateway sends back for a streamed answer."""
    thinking, signature, text, text_signature, calls = "", None, "", None, []
    for part in parts_of(events):
        if part.get("thought"):
            thinking += part["text"]
            signature = part.get("thoughtSignature") or signature
        elif "functionCall" in part:
            calls.append(part)
        else:
            text += part["text"]
            text_signature = text_signature or part.get("thoughtSignature")
    parts = [{"text": thinking, "thought": True, "thoughtSignature": signature}] if signature else []
    if text:
        parts.append({"text": text, **({"thoughtSignature": text_signature} if text_signature else {})})
    return {"role": "model", "parts": parts + calls}


def tool_result(call_id: str | None, result: str = "sunny") -> dict:
    response = {"name": "get_weather", "response": {"result": result}}
    return {"role": "user", "parts": [{"functionResponse": {**response, **({"id": call_id} if call_id else {})}}]}


def tool_history(client: Client, model: str, **request) -> list[dict]:
    """A real tool round trip: question, the fake's (replayed) call, the result."""
    client.fake.enqueue(Reply(thinking="I should look it up", tool_calls=[("get_weather", {"city": "Paris"})]))
    model_turn = replay(client.answer([user("weather?")], model, tools=WEATHER, **request))
    call_id = model_turn["parts"][-1]["functionCall"].get("id")
    return [user("weather?"), model_turn, tool_result(call_id)]


def error_of(resp: requests.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]


def assert_invalid(resp: requests.Response, fragment: str) -> None:
    error = error_of(resp, 400)
    assert error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"], error["message"]


def assert_ok(resp: requests.Response) -> None:
    assert resp.status_code == 200, resp.text


# -- OAuth ----------------------------------------------------------------------


def test_refresh_grant_issues_access_token(fake):
    form = {**CLIENT, "grant_type": "refresh_token", "refresh_token": REFRESH}
    resp = requests.post(fake.token_url, data=form)
    assert resp.status_code == 200
    body = resp.json()
    assert body["access_token"].startswith("ya29.fake-")
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert "refresh_token" not in body and "cloud-platform" in body["scope"]
    assert fake.refresh_count(REFRESH) == 1
    assert fake.requests[-1].method == "token" and fake.requests[-1].status == 200


def test_unknown_and_revoked_refresh_tokens_are_invalid_grant(fake, client):
    assert client.refresh("1//nope").json() == {"error": "invalid_grant",
                                                 "error_description": "Token has been expired or revoked."}
    fake.revoke(REFRESH)
    resp = client.refresh(REFRESH)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert fake.refresh_count(REFRESH) == 2  # the fixture's refresh and this one


def test_token_request_needs_client_credentials(fake):
    resp = requests.post(fake.token_url, data={"grant_type": "refresh_token", "refresh_token": REFRESH})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    fake.client_id = CLIENT["client_id"]
    resp = requests.post(fake.token_url, data={"client_id": "other", "client_secret": "x",
                                               "grant_type": "refresh_token", "refresh_token": REFRESH})
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"


def _authorize(fake: FakeCloudCode, verifier: str | None, **extra) -> requests.Response:
    params = {**{k: v for k, v in CLIENT.items() if k == "client_id"},
              "redirect_uri": "http://localhost:51121/oauth-callback", "response_type": "code",
              "scope": "https://www.googleapis.com/auth/cloud-platform", "state": "s1",
              "access_type": "offline", "prompt": "consent", **extra}
    if verifier:
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        params.update(code_challenge=challenge, code_challenge_method="S256")
    return requests.get(fake.auth_url, params=params, allow_redirects=False)


def test_authorization_code_flow_with_pkce(fake):
    fake.add_account("b@example.com", project_id="proj-b")
    resp = _authorize(fake, "v" * 43, login_hint="b@example.com")
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.netloc == "localhost:51121" and location.path == "/oauth-callback"
    query = parse_qs(location.query)
    assert query["state"] == ["s1"]
    form = {**CLIENT, "grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": "http://localhost:51121/oauth-callback", "code_verifier": "v" * 43}
    tokens = requests.post(fake.token_url, data=form).json()
    assert tokens["refresh_token"].startswith("1//")
    info = requests.get(fake.userinfo_url, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json()["email"] == "b@example.com" and info.json()["verified_email"] is True
    refreshed = requests.post(fake.token_url, data={**CLIENT, "grant_type": "refresh_token",
                                                    "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200


def test_code_exchange_checks_verifier_redirect_and_reuse(fake):
    def exchange(code, **over):
        form = {**CLIENT, "grant_type": "authorization_code", "code": code,
                "redirect_uri": "http://localhost:51121/oauth-callback", "code_verifier": "v" * 43, **over}
        return requests.post(fake.token_url, data=form)

    code = parse_qs(urlsplit(_authorize(fake, "v" * 43).headers["Location"]).query)["code"][0]
    assert exchange(code, code_verifier="w" * 43).json()["error"] == "invalid_grant"
    assert exchange(code, redirect_uri="http://localhost:1/x").json()["error"] == "redirect_uri_mismatch"
    assert exchange(code).status_code == 200
    assert exchange(code).json() == {"error": "invalid_grant", "error_description": "Bad Request"}
    denied = _authorize(fake, None, test_error="access_denied")
    assert parse_qs(urlsplit(denied.headers["Location"]).query) == {"state": ["s1"], "error": ["access_denied"]}


def test_userinfo_v1_and_v2_and_401(fake, client):
    for url in (fake.userinfo_url, fake.base_url + "/oauth2/v1/userinfo"):
        resp = client.http.get(url, headers={"Authorization": f"Bearer {client.token}"})
        assert resp.json()["email"] == EMAIL
    assert error_of(requests.get(fake.userinfo_url, headers={"Authorization": "Bearer bad"}), 401)["status"] \
        == "UNAUTHENTICATED"


# -- rule 1: authentication ----------------------------------------------------


def test_unknown_missing_and_expired_tokens_are_401(fake, client):
    contents = [user("hi")]
    assert error_of(client.generate(contents, token="ya29.forged"), 401)["status"] == "UNAUTHENTICATED"
    resp = client.http.post(f"{fake.base_url}/v1internal:loadCodeAssist", json={})
    assert "missing required authentication" in error_of(resp, 401)["message"]
    assert_ok(client.generate(contents))
    fake.expire_access_tokens()
    error = error_of(client.generate(contents), 401)
    assert error["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert fake.requests[-1].email == EMAIL and fake.requests[-1].status == 401


def test_short_ttl_tokens_expire(fake):
    fake.access_token_ttl = 0.5
    client = Client(fake)
    assert client.refresh(REFRESH).json()["expires_in"] == 0
    assert_ok(client.post("loadCodeAssist", {}))
    time.sleep(0.55)
    error_of(client.post("loadCodeAssist", {}), 401)


# -- answers --------------------------------------------------------------------


def test_streamed_text_reply(fake, client):
    fake.enqueue(Reply.text("Hello there, friend", chunks=3))
    resp = client.generate([user("hi")])
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Transfer-Encoding"] == "chunked"
    events = sse_events(resp.content)
    assert len(events) == 3
    assert "".join(p["text"] for p in parts_of(events)) == "Hello there, friend"
    trace = events[0]["traceId"]
    for event in events:
        assert event["traceId"] == trace and event["response"]["modelVersion"] == "gemini-3-flash-agent"
        assert event["response"]["candidates"][0]["content"]["role"] == "model"
    assert [("finishReason" in e["response"]["candidates"][0]) for e in events] == [False, False, True]
    usage = events[-1]["response"]["usageMetadata"]
    assert usage["promptTokenCount"] >= 1 and usage["candidatesTokenCount"] >= 1
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert fake.generate_requests()[0].body["request"]["contents"] == [user("hi")]


def test_unary_generate_content_is_merged(fake, client):
    fake.enqueue(Reply(text="Merged answer", finish="MAX_TOKENS",
                       usage={"promptTokenCount": 10, "candidatesTokenCount": 5, "cachedContentTokenCount": 4}))
    resp = client.generate([user("hi")], "claude-sonnet-4-6", stream=False)
    body = resp.json()
    assert set(body) == {"response", "traceId"}
    candidate = body["response"]["candidates"][0]
    assert candidate["content"]["parts"] == [{"text": "Merged answer"}]
    assert candidate["finishReason"] == "MAX_TOKENS"
    assert body["response"]["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                                 "cachedContentTokenCount": 4, "totalTokenCount": 15}


def test_stream_without_alt_sse_is_a_json_array(client):
    body = client.body([user("hi")], "gemini-3-flash-agent")
    resp = client.post("streamGenerateContent", body)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert isinstance(resp.json(), list) and "response" in resp.json()[0]


def test_claude_thinking_signature_and_exact_replay(fake, client):
    fake.enqueue(Reply(thinking="Let me think", text="Answer"))
    events = client.answer([user("q")], "claude-opus-4-6-thinking", **CLAUDE_THINKING)
    parts = parts_of(events)
    thoughts = [p for p in parts if p.get("thought")]
    assert "".join(p["text"] for p in thoughts) == "Let me think"
    signed = [p for p in parts if "thoughtSignature" in p]
    assert len(signed) == 1 and signed[0] == thoughts[-1] and signed[0]["text"] == ""
    assert signed[0]["thoughtSignature"].startswith("R") and len(signed[0]["thoughtSignature"]) >= 60
    history = [user("q"), replay(events), user("more")]
    assert_ok(client.generate(history, "claude-opus-4-6-thinking", **CLAUDE_THINKING))


def test_gemini_signature_on_first_function_call_only(fake, client):
    fake.enqueue(Reply(thinking="hmm", tool_calls=[("get_weather", {"city": "Paris"}),
                                                   ("get_weather", {"city": "Rome"})]))
    parts = parts_of(client.answer([user("q")], "gemini-3-flash-agent", tools=WEATHER, **GEMINI_THINKING))
    assert all("thoughtSignature" not in p for p in parts if p.get("thought"))
    calls = [p for p in parts if "functionCall" in p]
    assert [c["functionCall"]["args"]["city"] for c in calls] == ["Paris", "Rome"]
    assert calls[0]["thoughtSignature"].startswith("C") and "thoughtSignature" not in calls[1]
    assert all("id" not in c["functionCall"] for c in calls)


def test_gemini_signature_on_first_text_part_without_calls(fake, client):
    fake.enqueue(Reply(thinking="hmm", text="Sunny all week"))
    parts = parts_of(client.answer([user("q")], "gemini-pro-agent", **GEMINI_THINKING))
    texts = [p for p in parts if not p.get("thought")]
    assert "thoughtSignature" in texts[0] and all("thoughtSignature" not in p for p in texts[1:])


def test_claude_function_calls_carry_toolu_ids(fake, client):
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]))
    calls = [p["functionCall"] for p in parts_of(client.answer([user("q")], "claude-sonnet-4-6", tools=WEATHER))]
    assert all(re.fullmatch(r"toolu_[0-9a-f]{24}", c["id"]) for c in calls)
    assert calls[0]["id"] != calls[1]["id"] and is_claude_model(fake.models["claude-sonnet-4-6"])


def test_default_replies_echo_call_and_result(client):
    assert parts_of(client.answer([user("hello")]))[0]["text"].startswith("Echo")
    assert "".join(p["text"] for p in parts_of(client.answer([user("hello")]))) == "Echo: hello"
    ask = user('call tool get_weather with {"city":"Paris"}')
    call_parts = parts_of(client.answer([ask], "claude-sonnet-4-6", tools=WEATHER))
    call = call_parts[0]["functionCall"]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Paris"}
    history = [ask, {"role": "model", "parts": call_parts}, tool_result(call["id"])]
    text = "".join(p["text"] for p in parts_of(client.answer(history, "claude-sonnet-4-6", tools=WEATHER)))
    assert text == "Tool result received: sunny"
    undeclared = parts_of(client.answer([user('call tool nope with {"a":1}')], tools=WEATHER))
    assert "".join(p["text"] for p in undeclared).startswith("Echo: call tool nope")


def test_default_reply_thinks_when_thinking_is_enabled(client):
    parts = parts_of(client.answer([user("why?")], "claude-opus-4-6-thinking", **CLAUDE_THINKING))
    assert "".join(p["text"] for p in parts if p.get("thought")) == "Thinking about: why?"
    assert "".join(p["text"] for p in parts if not p.get("thought")) == "Echo: why?"
    plain = parts_of(client.answer([user("why?")], "gemini-3-flash-agent"))
    assert not any(p.get("thought") for p in plain)


def test_enqueue_filters_by_account_and_model(fake, client):
    fake.add_account("b@example.com", refresh_token="1//refresh-b", project_id="proj-b")
    fake.enqueue(Reply.text("for b"), email="b@example.com")
    fake.enqueue(Reply.text("for claude"), Reply.text("claude again"), model="claude-sonnet-4-6")
    text = lambda events: "".join(p["text"] for p in parts_of(events))  # noqa: E731
    assert text(client.answer([user("x")])) == "Echo: x"
    assert text(client.answer([user("x")], "claude-sonnet-4-6")) == "for claude"
    assert text(client.answer([user("x")], "claude-sonnet-4-6")) == "claude again"
    other = Client(fake, "1//refresh-b")
    body = other.body([user("x")], "gemini-3-flash-agent")
    body["project"] = "proj-b"
    events = sse_events(other.post("streamGenerateContent", body, query="?alt=sse").content)
    assert text(events) == "for b"


def test_error_replies_are_google_envelopes(fake, client):
    fake.enqueue(Reply.error(429), Reply.error(503, reason="MODEL_CAPACITY_EXHAUSTED"),
                 Reply.error(429, reason=None, retry_delay=None, quota_reset_delay=None, headers={"Retry-After": "7"}),
                 Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="7925s", quota_reset_delay="2h12m5s",
                             quota_reset_timestamp="2030-01-01T00:00:00Z"))
    error = error_of(client.generate([user("x")]), 429)
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert [d["@type"].rsplit(".", 1)[1] for d in error["details"]] == ["ErrorInfo", "RetryInfo"]
    assert error["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert error["details"][0]["metadata"] == {"model": "gemini-3-flash-agent", "quotaResetDelay": "500ms"}
    assert error["details"][1]["retryDelay"] == "0.5s"
    capacity = error_of(client.generate([user("x")]), 503)
    assert capacity["message"] == "No capacity available for model gemini-3-flash-agent on the server"
    assert capacity["details"][0]["reason"] == "MODEL_CAPACITY_EXHAUSTED" and len(capacity["details"]) == 1
    bare = client.generate([user("x")])
    assert bare.headers["Retry-After"] == "7" and "details" not in error_of(bare, 429)
    quota = error_of(client.generate([user("x")]), 429)
    assert "reset after 2h12m5s" in quota["message"]
    assert quota["details"][0]["metadata"]["quotaResetTimeStamp"] == "2030-01-01T00:00:00Z"


def test_inject_fails_the_next_calls_then_recovers(fake, client):
    fake.inject("loadCodeAssist", status=500, times=2)
    fake.inject("token", status=400)
    assert error_of(client.post("loadCodeAssist", {}), 500)["status"] == "INTERNAL"
    assert client.post("loadCodeAssist", {}).status_code == 500
    assert_ok(client.post("loadCodeAssist", {}))
    assert client.refresh(REFRESH).json()["error"] == "invalid_grant"
    assert client.refresh(REFRESH).status_code == 200
    fake.inject("streamGenerateContent", status=502, body="<html>bad gateway</html>")
    resp = client.generate([user("x")])
    assert resp.status_code == 502 and resp.text == "<html>bad gateway</html>"


def test_empty_reply_has_usage_and_no_parts(fake, client):
    fake.enqueue(Reply.empty())
    events = client.answer([user("x")])
    assert len(events) == 1 and parts_of(events) == []
    assert "usageMetadata" in events[0]["response"]


def test_raw_reply_chunks_are_wrapped(fake, client):
    chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "raw"}]}, "finishReason": "SAFETY"}]}
    fake.enqueue(Reply.raw([chunk]))
    events = client.answer([user("x")])
    assert events[0]["response"] == chunk and "traceId" in events[0]


def test_drop_after_aborts_the_connection(fake, client):
    fake.enqueue(Reply(text="partial answer", drop_after=1))
    resp = client.post("streamGenerateContent", client.body([user("x")], "gemini-3-flash-agent"),
                       query="?alt=sse", stream=True)
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for data in resp.iter_content(chunk_size=None):
            received += data
    assert len(sse_events(received)) == 1
    assert wait_for(lambda: fake.open_streams == 0)
    assert fake.closed_by_client == 0


def test_stall_delays_the_stream(fake, client):
    fake.enqueue(Reply(text="slow answer", stall_after=1, stall_seconds=0.3))
    started = time.monotonic()
    assert len(client.answer([user("x")])) == 3
    assert time.monotonic() - started >= 0.3


def test_client_disconnect_during_stall_is_counted(fake, client):
    fake.enqueue(Reply(text="slow answer", stall_after=1, stall_seconds=5.0))
    resp = client.post("streamGenerateContent", client.body([user("x")], "gemini-3-flash-agent"),
                       query="?alt=sse", stream=True)
    assert resp.raw.read1(65536).startswith(b"data: ")
    assert fake.open_streams == 1
    resp.close()
    assert wait_for(lambda: fake.open_streams == 0)
    assert fake.closed_by_client == 1


def _raw_stream(fake: FakeCloudCode, client: Client, reply: Reply) -> list[bytes]:
    """POST over a bare socket and return the HTTP chunks, to see the wire framing."""
    fake.enqueue(reply)
    body = json.dumps(client.body([user("x")], "gemini-3-flash-agent")).encode()
    head = (f"POST /v1internal:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: x\r\nUser-Agent: {UA}\r\n"
            f"Authorization: Bearer {client.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(urlsplit(fake.base_url).netloc.split(":")) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    payload = data.split(b"\r\n\r\n", 1)[1]
    chunks = []
    while True:
        size, payload = payload.split(b"\r\n", 1)
        if int(size, 16) == 0:
            return chunks
        chunks.append(payload[:int(size, 16)])
        payload = payload[int(size, 16) + 2:]


def test_wire_variants_crlf_split_and_no_final_newline(fake, client):
    chunks = _raw_stream(fake, client, Reply(text="abcdef", chunks=2, crlf=True, split_writes=True))
    assert len(chunks) == 6  # two events, three pieces each
    assert chunks[1].endswith(b"\r") and chunks[2] == b"\n"
    assert b"".join(chunks).count(b"\r\n\r\n") == 2
    plain = b"".join(_raw_stream(fake, client, Reply(text="abcdef", chunks=2, no_final_newline=True)))
    assert plain.count(b"\n\n") == 1 and plain.endswith(b"}")
    assert len(sse_events(plain)) == 2


def test_prompt_cache_by_session(fake, client):
    system = {"parts": [{"text": "rules " * 1500}]}
    first = client.answer([user("a")], systemInstruction=system, sessionId="s-1")
    second = client.answer([user("a")], systemInstruction=system, sessionId="s-1")
    assert "cachedContentTokenCount" not in first[-1]["response"]["usageMetadata"]
    assert second[-1]["response"]["usageMetadata"]["cachedContentTokenCount"] > 1024


# -- other endpoints ------------------------------------------------------------


def test_load_code_assist_and_onboarding(fake, client):
    answer = client.post("loadCodeAssist", {"metadata": {"ideType": "ANTIGRAVITY"}}).json()
    assert answer["cloudaicompanionProject"] == PROJECT and answer["allowedTiers"][0]["isDefault"] is True
    fake.project_as_object = True
    assert client.post("loadCodeAssist", {}).json()["cloudaicompanionProject"]["id"] == PROJECT
    fake.add_account("new@example.com", refresh_token="1//refresh-new", project_id=None)
    newcomer = Client(fake, "1//refresh-new")
    assert "cloudaicompanionProject" not in newcomer.post("loadCodeAssist", {}).json()
    fake.onboard_polls = 2
    body = {"tier_id": "free-tier", "metadata": {"ide_type": "ANTIGRAVITY"}}
    assert [newcomer.post("onboardUser", body).json()["done"] for _ in range(2)] == [False, False]
    done = newcomer.post("onboardUser", body).json()
    project = done["response"]["cloudaicompanionProject"]
    assert done["done"] is True and project["id"] and project["projectNumber"]
    assert newcomer.post("loadCodeAssist", {}).json()["cloudaicompanionProject"]["id"] == project["id"]


def test_fetch_available_models_reports_quota(fake, client):
    fake.set_quota(EMAIL, "claude-opus-4-6-thinking", None, "2030-01-01T00:00:00Z")
    fake.set_quota(EMAIL, "gemini-3-flash-agent", 0.25, "2030-01-01T01:00:00Z")
    models = client.post("fetchAvailableModels", {}).json()["models"]
    assert models["claude-opus-4-6-thinking"]["quotaInfo"] == {"resetTime": "2030-01-01T00:00:00Z"}
    assert models["gemini-3-flash-agent"]["quotaInfo"]["remainingFraction"] == 0.25
    assert models["claude-sonnet-4-6"]["quotaInfo"]["remainingFraction"] == 1.0
    assert models["claude-sonnet-4-6"]["maxOutputTokens"] == 64000
    assert "supportsThinking" not in models["claude-sonnet-4-6"]
    assert models["chat_20706"] == {"displayName": "chat_20706"}
    assert set(fake.models) == set(models)
    error_of(client.post("fetchAvailableModels", {"project": "someone-else"}), 403)


def test_count_tokens(client):
    resp = client.post("countTokens", {"request": {"contents": [user("x" * 400)]}})
    assert resp.json() == {"totalTokens": 101}
    assert_invalid(client.post("countTokens", {"request": {"contents": [], "foo": 1}}), 'Unknown name "foo"')


def test_unknown_paths_are_404(fake, client):
    assert error_of(client.post("retrieveNothing", {}), 404)["status"] == "NOT_FOUND"
    assert error_of(requests.get(fake.base_url + "/nowhere"), 404)["code"] == 404


def test_peer_host_shares_accounts_and_signatures(fake, client):
    with FakeCloudCode(peer=fake) as prod:
        fake.enqueue(Reply(thinking="deep", text="x"))
        events = client.answer([user("q")], "claude-opus-4-6-thinking", **CLAUDE_THINKING)
        prod_client = Client(fake)
        prod_client.fake = prod
        history = [user("q"), replay(events), user("again")]
        assert_ok(prod_client.generate(history, "claude-opus-4-6-thinking", **CLAUDE_THINKING))
        assert len(prod.generate_requests()) == 1 and len(fake.generate_requests()) == 1


def test_stop_closes_the_port():
    fake = FakeCloudCode().start()
    url = fake.base_url
    fake.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/x", timeout=1)


def test_cli_writes_accounts_file_and_prints_environment(tmp_path: Path):
    path = tmp_path / "accounts.json"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "tests.fake_cloudcode", "--port", "0", "--accounts-file", str(path)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        env = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert env["GATEWAY_OAUTH_TOKEN_URL"] == env["GATEWAY_CLOUDCODE_URLS"] + "/token"
        assert env["GATEWAY_ACCOUNTS_FILE"] == str(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        account = json.loads(path.read_text())["accounts"][0]
        assert account["email"] == "demo@example.com" and account["projectId"] == "demo-project"
        form = {**CLIENT, "grant_type": "refresh_token", "refresh_token": account["refreshToken"]}
        assert requests.post(env["GATEWAY_OAUTH_TOKEN_URL"], data=form).status_code == 200
    finally:
        proc.terminate()
        proc.wait(5)


# -- rule 2: envelope -------------------------------------------------------------


def test_envelope_rejects_unknown_keys(client):
    assert_invalid(client.generate([user("x")], envelope={"stream": True}),
                   'Invalid JSON payload received. Unknown name "stream": Cannot find field.')
    assert_ok(client.generate([user("x")], envelope={"enabledCreditTypes": ["GOOGLE_ONE_AI"]}))


def test_parse_errors_are_reported_together(client):
    resp = client.generate([{"role": "user", "parts": [{"text": "x", "cache_control": {}}]}],
                           envelope={"stream": True})
    error = error_of(resp, 400)
    assert 'Unknown name "stream"' in error["message"] and 'Unknown name "cache_control"' in error["message"]
    assert len(error["details"][0]["fieldViolations"]) == 2


def test_envelope_project_must_be_the_accounts(client):
    error = error_of(client.generate([user("x")], envelope={"project": "rising-fact-p41fc"}), 403)
    assert error["status"] == "PERMISSION_DENIED"
    error_of(client.generate([user("x")], envelope={"project": None}), 403)


@pytest.mark.parametrize("model", ["claude-3-5-sonnet-20241022", "chat_20706"])
def test_envelope_model_must_be_in_the_catalogue(client, model):
    error = error_of(client.generate([user("x")], model), 404)
    assert error == {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}


# -- rule 3: request keys ---------------------------------------------------------


def test_request_rejects_unknown_keys_and_accepts_snake_case(client):
    assert_invalid(client.generate([user("x")], system="be nice"), 'Unknown name "system" at \'request\'')
    assert_ok(client.generate([user("x")], system_instruction={"role": "user", "parts": [{"text": "be nice"}]},
                              generation_config={"max_output_tokens": 100}, session_id="abc",
                              safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
                              tool_config={"function_calling_config": {"mode": "AUTO"}}, tools=WEATHER))


# -- rule 4: contents ---------------------------------------------------------------


@pytest.mark.parametrize("contents, fragment", [
    ([], "contents is not specified"),
    ([{"role": "assistant", "parts": [{"text": "x"}]}], "Please use a valid role: user, model."),
    ([{"role": "user", "parts": []}], "contents.parts must not be empty"),
    ([{"role": "user", "parts": [{"text": "x", "cache_control": {"type": "ephemeral"}}]}],
     "Unknown name \"cache_control\" at 'request.contents[0].parts[0]': Cannot find field."),
    ([{"role": "user", "parts": [{"type": "text", "text": "x"}]}], 'Unknown name "type"'),
    ([{"role": "user", "parts": [{"thought": True}]}], "required oneof field 'data' must have one initialized field"),
    ([{"role": "user", "parts": [{"text": "x", "inlineData": {"mimeType": "image/png", "data": PNG}}]}],
     "Oneof field 'data' is already set"),
    ([{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}],
     "Base64 decoding failed"),
    ([{"role": "user", "parts": [{"inlineData": {"data": PNG}}]}], "mime_type must not be empty"),
    ([{"role": "user", "parts": "hello"}], "Invalid value at 'request.contents[0].parts'"),
])
def test_contents_rules(client, contents, fragment):
    assert_invalid(client.generate(contents), fragment)


def test_claude_rejects_empty_text_but_gemini_accepts_it(client):
    contents = [{"role": "user", "parts": [{"text": "x"}, {"text": "  "}]}]
    assert_invalid(client.generate(contents, "claude-sonnet-4-6"), "text content blocks must be non-empty")
    assert_ok(client.generate(contents, "gemini-3-flash-agent"))


def test_valid_contents_pass(client):
    contents = [{"role": "user", "parts": [{"text": "look"}, {"inline_data": {"mime_type": "image/png", "data": PNG}},
                                           {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x/y.jpg"}}]}]
    assert_ok(client.generate(contents, "claude-sonnet-4-6"))


# -- rule 5: Claude tool pairing -------------------------------------------------------


def test_claude_valid_tool_loop_passes(client):
    history = tool_history(client, "claude-sonnet-4-6")
    assert_ok(client.generate(history, "claude-sonnet-4-6", tools=WEATHER))
    split = history[:2] + [user("also this"), history[2]]  # consecutive user contents merge
    assert_invalid(client.generate(split[:3] + [user("x")], "claude-sonnet-4-6", tools=WEATHER),
                   "tool_use ids were found without tool_result blocks immediately after")
    merged = history[:2] + [history[2], user("and thanks")]
    assert_ok(client.generate(merged, "claude-sonnet-4-6", tools=WEATHER))


def test_claude_tool_result_must_answer_a_call_in_the_previous_message(client):
    history = tool_history(client, "claude-sonnet-4-6")
    extra = tool_result("toolu_" + "0" * 24)["parts"]
    wrong = history[:2] + [{"role": "user", "parts": history[2]["parts"] + extra}]
    assert_invalid(client.generate(wrong, "claude-sonnet-4-6", tools=WEATHER),
                   "unexpected tool_use_id found in tool_result blocks")
    orphan = [user("x"), {"role": "model", "parts": [{"text": "ok"}]}, tool_result("toolu_" + "1" * 24)]
    assert_invalid(client.generate(orphan, "claude-sonnet-4-6", tools=WEATHER), "unexpected tool_use_id")


def test_claude_tool_call_needs_its_result_next(client):
    history = tool_history(client, "claude-sonnet-4-6")
    assert_invalid(client.generate(history[:2] + [user("never mind")], "claude-sonnet-4-6", tools=WEATHER),
                   "tool_use ids were found without tool_result blocks immediately after")


def test_claude_tool_history_requires_tools(client):
    history = tool_history(client, "claude-sonnet-4-6")
    assert_invalid(client.generate(history, "claude-sonnet-4-6"), "must define tools")


# -- rule 6: Claude thinking ------------------------------------------------------------


def test_claude_thinking_tool_loop_with_signed_thinking_passes(client):
    history = tool_history(client, "claude-opus-4-6-thinking", **CLAUDE_THINKING)
    assert history[1]["parts"][0]["thought"] is True
    assert_ok(client.generate(history, "claude-opus-4-6-thinking", tools=WEATHER, **CLAUDE_THINKING))


@pytest.mark.parametrize("tamper, fragment", [
    (lambda part: part.update(text=part["text"] + " "), "Invalid `signature` in `thinking` block"),
    (lambda part: part.pop("thoughtSignature"), "thinking.signature: Field required"),
    (lambda part: part.update(thoughtSignature="R" + "A" * 64), "Invalid `signature` in `thinking` block"),
])
def test_claude_thinking_must_be_replayed_exactly(client, tamper, fragment):
    history = tool_history(client, "claude-opus-4-6-thinking", **CLAUDE_THINKING)
    tamper(history[1]["parts"][0])
    assert_invalid(client.generate(history, "claude-opus-4-6-thinking", tools=WEATHER, **CLAUDE_THINKING), fragment)


def test_claude_rejects_gemini_signatures(fake, client):
    gemini_turn = replay(client.answer([user("q")], "gemini-3-flash-agent", **GEMINI_THINKING))
    signature = gemini_turn["parts"][0]["thoughtSignature"]
    history = [user("q"), {"role": "model", "parts": [{"text": "Thinking about: q", "thought": True,
                                                       "thoughtSignature": signature}, {"text": "a"}]}, user("more")]
    assert_invalid(client.generate(history, "claude-opus-4-6-thinking", **CLAUDE_THINKING),
                   "Invalid `signature` in `thinking` block")
    assert_ok(client.generate(history, "claude-opus-4-6-thinking"))  # thinking off: not checked


def test_claude_thinking_tool_loop_must_start_with_thinking(client):
    history = tool_history(client, "claude-opus-4-6-thinking", **CLAUDE_THINKING)
    history[1]["parts"] = history[1]["parts"][1:]
    assert_invalid(client.generate(history, "claude-opus-4-6-thinking", tools=WEATHER, **CLAUDE_THINKING),
                   "Expected thinking or redacted_thinking, but found tool_use. When thinking is enabled, "
                   "a final assistant message must start with a thinking block")


@pytest.mark.parametrize("max_tokens, budget, fragment", [
    (8000, 8000, "max_tokens must be greater than thinking.budget_tokens"),
    (None, 64000, "max_tokens must be greater than thinking.budget_tokens"),
    (16000, 512, "greater than or equal to 1024"),
])
def test_claude_thinking_budget_limits(client, max_tokens, budget, fragment):
    config = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": budget}}
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    assert_invalid(client.generate([user("x")], "claude-opus-4-6-thinking", generationConfig=config), fragment)
    config["thinkingConfig"]["thinkingBudget"] = 1024
    assert_ok(client.generate([user("x")], "claude-opus-4-6-thinking", generationConfig=config))


# -- rule 7: Gemini signatures -------------------------------------------------------------


def test_gemini_tool_loop_replayed_with_signature_passes(client):
    history = tool_history(client, "gemini-3-flash-agent", **GEMINI_THINKING)
    assert history[1]["parts"][-1]["thoughtSignature"].startswith("C")
    assert_ok(client.generate(history, "gemini-3-flash-agent", tools=WEATHER, **GEMINI_THINKING))


@pytest.mark.parametrize("signature, fragment", [
    (None, "Function call is missing a thought_signature in functionCall parts."),
    ("C" + "A" * 64, "Corrupted thought signature."),
    ("claude", "Corrupted thought signature."),
    (SENTINEL_SIGNATURE, None),
])
def test_gemini_function_calls_need_valid_signatures(client, signature, fragment):
    history = tool_history(client, "gemini-3-flash-agent")
    call_part = history[1]["parts"][-1]
    if signature == "claude":
        signature = tool_history(client, "claude-opus-4-6-thinking", **CLAUDE_THINKING)[1]["parts"][0][
            "thoughtSignature"]
    call_part.pop("thoughtSignature")
    if signature:
        call_part["thoughtSignature"] = signature
    resp = client.generate(history, "gemini-3-flash-agent", tools=WEATHER)
    assert_ok(resp) if fragment is None else assert_invalid(resp, fragment)


def test_gemini_parallel_calls_each_need_a_signature(fake, client):
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]))
    model_turn = replay(client.answer([user("q")], "gemini-3-flash-agent", tools=WEATHER))
    results = {"role": "user", "parts": tool_result(None)["parts"] * 2}
    history = [user("q"), model_turn, results]
    assert_invalid(client.generate(history, "gemini-3-flash-agent", tools=WEATHER), "position 2")
    model_turn["parts"][1]["thoughtSignature"] = SENTINEL_SIGNATURE
    assert_ok(client.generate(history, "gemini-3-flash-agent", tools=WEATHER))
    history[2] = tool_result(None)
    assert_invalid(client.generate(history, "gemini-3-flash-agent", tools=WEATHER),
                   "number of function response parts is equal to the number of function call parts")


def test_gemini_function_response_must_follow_a_call(client):
    contents = [user("q"), {"role": "model", "parts": [{"text": "hi"}]}, tool_result(None)]
    assert_invalid(client.generate(contents, tools=WEATHER), "function response turn comes immediately after")
    starts_with_call = [{"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}},
                                                     "thoughtSignature": SENTINEL_SIGNATURE}]}, tool_result(None)]
    assert_invalid(client.generate(starts_with_call, tools=WEATHER), "function call turn comes immediately after")


# -- rule 8: generationConfig ------------------------------------------------------------------


@pytest.mark.parametrize("model, config, fragment", [
    ("gemini-3-flash-agent", {"max_tokens": 10}, 'Unknown name "max_tokens" at \'request.generation_config\''),
    ("claude-sonnet-4-6", {"maxOutputTokens": 128000}, "128000 > 64000"),
    ("gemini-3-flash-agent", {"maxOutputTokens": 70000}, "to 65537 (exclusive)"),
    ("gemini-3-flash-agent", {"temperature": 2.5}, "temperature value of 2.5"),
    ("gemini-3-flash-agent", {"maxOutputTokens": "lots"}, "(TYPE_INT32)"),
    ("gemini-3-flash-agent", {"thinkingConfig": {"budget_tokens": 100}}, 'Unknown name "budget_tokens"'),
    ("claude-sonnet-4-6", {"thinkingConfig": {"includeThoughts": True}}, "thinking is not supported for this model"),
])
def test_generation_config_rules(client, model, config, fragment):
    assert_invalid(client.generate([user("x")], model, generationConfig=config), fragment)


def test_valid_generation_config_passes(client):
    config = {"maxOutputTokens": 64000, "temperature": 2, "topP": 0.95, "topK": 40, "stopSequences": ["\n\nHuman:"],
              "thinking_config": {"include_thoughts": True, "thinking_level": "high"}}
    assert_ok(client.generate([user("x")], "gemini-3-flash-agent", generationConfig=config))
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6", generationConfig={"maxOutputTokens": 64000}))


# -- rule 9: tools --------------------------------------------------------------------------------

BANNED = ["$schema", "$ref", "$defs", "definitions", "additionalProperties", "default", "examples", "const", "allOf",
          "anyOf", "oneOf", "not", "pattern", "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum",
          "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems", "patternProperties",
          "propertyNames", "if", "then", "else", "$comment", "$id", "deprecated", "x-google-foo"]


def _tools(parameters=None, name="get_weather", **declaration) -> list[dict]:
    parameters = parameters or {"type": "object", "properties": {"city": {"type": "string"}}}
    return [{"functionDeclarations": [{"name": name, "description": "d", "parameters": parameters, **declaration}]}]


@pytest.mark.parametrize("keyword", BANNED)
def test_schema_keywords_google_rejects(client, keyword):
    parameters = {"type": "object", "properties": {"city": {"type": "string", keyword: 1}}}
    assert_invalid(client.generate([user("x")], tools=_tools(parameters)),
                   f'Invalid JSON payload received. Unknown name "{keyword}" at '
                   f"'request.tools[0].function_declarations[0].parameters.properties[0].value': Cannot find field.")


@pytest.mark.parametrize("parameters, fragment", [
    ({"type": ["string", "null"]}, "Proto field is not repeating, cannot start list"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "property is not defined"),
    ({"type": "object", "properties": {"a": {"type": "array"}}}, "items: missing field"),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}, "only 'enum' and 'date-time'"),
    ({"type": "null"}, "Invalid value at 'request.tools[0].function_declarations[0].parameters.type'"),
])
def test_schema_shape_rules(client, parameters, fragment):
    assert_invalid(client.generate([user("x")], tools=_tools(parameters)), fragment)


def test_schema_type_case_and_nesting_accepted(client):
    parameters = {"type": "OBJECT", "properties": {
        "tags": {"type": "array", "items": {"type": "STRING", "enum": ["a", "b"]}},
        "when": {"type": "string", "format": "date-time", "nullable": True, "description": "d"},
        "n": {"type": "Integer"}}, "required": ["tags"]}
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6", tools=_tools(parameters)))


def test_claude_object_schemas_need_properties(client):
    for parameters in ({"type": "object"}, {"type": "object", "properties": {"o": {"type": "object"}}}):
        assert_invalid(client.generate([user("x")], "claude-sonnet-4-6", tools=_tools(parameters)),
                       "declare at least one property")
        assert_ok(client.generate([user("x")], "gemini-3-flash-agent", tools=_tools(parameters)))


def test_title_allowed_for_gemini_only(client):
    parameters = {"type": "object", "title": "Args", "properties": {"city": {"type": "string"}}}
    assert_invalid(client.generate([user("x")], "claude-sonnet-4-6", tools=_tools(parameters)), 'Unknown name "title"')
    assert_ok(client.generate([user("x")], "gemini-3-flash-agent", tools=_tools(parameters)))


@pytest.mark.parametrize("tools, fragment", [
    (_tools(name="get weather"), "Invalid function name"),
    (_tools(name="x" * 65), "Invalid function name"),
    (_tools() + _tools(), "Duplicate function declaration found: get_weather"),
    ([{"name": "get_weather", "input_schema": {"type": "object"}}],
     'Unknown name "input_schema" at \'request.tools[0]\''),
    (_tools(strict=True), 'Unknown name "strict"'),
])
def test_declaration_rules(client, tools, fragment):
    assert_invalid(client.generate([user("x")], tools=tools), fragment)


def test_tool_config_rules(client):
    bad_mode = {"functionCallingConfig": {"mode": "REQUIRED"}}
    assert_invalid(client.generate([user("x")], tools=WEATHER, toolConfig=bad_mode), "FunctionCallingConfig.Mode")
    undeclared = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}}
    assert_invalid(client.generate([user("x")], tools=WEATHER, toolConfig=undeclared), "'nope' is not declared")
    with_auto = {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["get_weather"]}}
    assert_invalid(client.generate([user("x")], tools=WEATHER, toolConfig=with_auto), "only be set when mode is ANY")
    good = {"functionCallingConfig": {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]},
            "includeServerSideToolInvocations": True}
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6", tools=WEATHER, toolConfig=good, tool_config=good))


# -- rule 10: client headers --------------------------------------------------------------------


def test_generate_requires_antigravity_user_agent_and_json(fake, client):
    body = client.body([user("x")], "gemini-3-flash-agent")
    assert_invalid(client.post("generateContent", body, headers={"User-Agent": "python-requests/2"}), "User-Agent")
    resp = client.post("generateContent", None, data=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert_invalid(resp, "Content-Type")
    fake.require_headers = False
    assert_ok(client.post("generateContent", body, headers={"User-Agent": "python-requests/2"}))
