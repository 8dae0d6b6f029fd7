"""Safe to expose: API keys, body limits, CORS, keep-alive pings, idle timeouts, disconnects, metrics, logs."""

from __future__ import annotations

import json
import logging
import socket
import time

import anthropic
import pytest
import requests

from gateway import security
from tests.conftest import REFRESH_TOKEN, gateway_settings, serve
from tests.fake_cloudcode import Reply
from tests.test_anthropic_api import sse_events

ASK = {"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
OPENAI_ASK = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server(fake, accounts_file, request):
    overrides = getattr(request, "param", {})
    url, app, srv = serve(gateway_settings(fake, accounts_file, **overrides))
    yield url, app
    srv.shutdown()


KEYS = {"api_keys": frozenset({"key-one-123456", "key-two-654321"}), "admin_key": "admin-key-999999"}


@pytest.mark.parametrize("server", [KEYS], indirect=True)
def test_keys_are_enforced_in_each_family_format(server) -> None:
    url, _ = server
    missing = requests.post(f"{url}/v1/messages", json=ASK, timeout=5)
    assert missing.status_code == 401
    assert missing.json()["type"] == "error" and missing.json()["error"]["type"] == "authentication_error"
    wrong = requests.post(f"{url}/v1/chat/completions", json=OPENAI_ASK, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error" and "message" in wrong.json()["error"]
    models = requests.get(f"{url}/v1/models", timeout=5)
    assert models.status_code == 401 and "error" in models.json()
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    # Both header styles work with a right key.
    ok1 = requests.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": "key-one-123456"}, timeout=5)
    ok2 = requests.post(f"{url}/v1/messages", json=ASK, headers={"Authorization": "Bearer key-two-654321"}, timeout=5)
    assert ok1.status_code == 200 and ok2.status_code == 200
    # The SDK's way.
    client = anthropic.Anthropic(base_url=url, api_key="key-two-654321", max_retries=0)
    assert client.messages.create(**ASK).content[0].text
    bad_client = anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad_client.messages.create(**ASK)


@pytest.mark.parametrize("server", [KEYS], indirect=True)
@pytest.mark.parametrize(("method", "path"), [("POST", "/refresh-token"), ("GET", "/account-limits"),
                                              ("GET", "/metrics")])
def test_admin_endpoints_need_the_admin_key(server, method, path) -> None:
    url, _ = server
    user = requests.request(method, f"{url}{path}", headers={"x-api-key": "key-one-123456"}, timeout=5)
    assert user.status_code == 403 and user.json()["error"]["type"] == "permission_error"
    for headers in ({}, {"x-api-key": "nope"}):
        anonymous = requests.request(method, f"{url}{path}", headers=headers, timeout=5)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    admin = requests.request(method, f"{url}{path}", headers={"Authorization": "Bearer admin-key-999999"}, timeout=5)
    assert admin.status_code not in (401, 403)
    assert requests.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": "admin-key-999999"},
                         timeout=5).status_code == 401  # the admin key is not an API key


@pytest.mark.parametrize("server", [{"api_keys": KEYS["api_keys"]}], indirect=True)
def test_without_an_admin_key_an_api_key_opens_the_admin_endpoints(server) -> None:
    url, _ = server
    assert requests.get(f"{url}/metrics", timeout=5).status_code == 401
    assert requests.get(f"{url}/metrics", headers={"x-api-key": "key-one-123456"}, timeout=5).status_code == 200


def test_key_comparison_is_constant_time(monkeypatch) -> None:
    calls = []
    original = security.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert security.key_matches("b", ["a", "b", "c"])
    # Every key is compared (no early exit on a match), always on equal-length digests.
    assert len(calls) == 3 and all(len(a) == len(b) == 32 for a, b in calls)
    assert not security.key_matches(None, ["a"])


def test_no_keys_configured_accepts_anything(gateway) -> None:
    assert requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=5).status_code == 200
    assert requests.post(f"{gateway.url}/v1/messages", json=ASK, headers={"x-api-key": "whatever"}, timeout=5).status_code == 200


def _with_host(url: str, method: str, path: str, host: str, body: dict | None = None) -> tuple[int, dict]:
    """A request whose Host header is ``host`` whatever the address it goes to (as after DNS rebinding)."""
    port = int(url.rsplit(":", 1)[1])
    data = json.dumps(body).encode() if body is not None else b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload) if payload.startswith(b"{") else {}


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "LOCALHOST.", "127.0.0.1:1234", "127.1.2.3",
                                  "[::1]:8080", "[::1]", "app.localhost:3000"])
def test_without_keys_loopback_host_names_are_served(gateway, host) -> None:
    status, body = _with_host(gateway.url, "POST", "/v1/messages", host, ASK)
    assert status == 200, body


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example", "192.168.1.5",
                                  "[::ffff:7f00:1]x", "127.0.0.1.nip.io", "0.0.0.0:8080", ""])
def test_without_keys_other_host_names_are_refused_in_each_family_format(gateway, host) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 must not reach a gateway that has no keys."""
    status, body = _with_host(gateway.url, "POST", "/v1/messages", host, ASK)
    assert status == 403 and body["type"] == "error" and body["error"]["type"] == "permission_error"
    assert "GATEWAY_API_KEYS" in body["error"]["message"]
    status, body = _with_host(gateway.url, "POST", "/v1/chat/completions", host, OPENAI_ASK)
    assert status == 403 and body["error"]["type"] and body["error"]["message"]
    status, _ = _with_host(gateway.url, "GET", "/account-limits", host)
    assert status == 403


@pytest.mark.parametrize("server", [KEYS, {"allow_no_auth": True}], indirect=True)
def test_with_keys_or_allowed_without_any_host_name_is_served(server) -> None:
    url, _ = server
    status, _ = _with_host(url, "POST", "/v1/messages", "gateway.example.com", ASK)
    assert status in (200, 401)
    status, _ = _with_host(url, "GET", "/health", "gateway.example.com")
    assert status == 200


@pytest.mark.parametrize("server", [{"max_body_bytes": 1024 * 1024}], indirect=True)
def test_oversized_body_is_413_and_the_server_keeps_serving(server) -> None:
    url, _ = server
    big = {**ASK, "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    response = requests.post(f"{url}/v1/messages", json=big, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"
    chunked = requests.post(f"{url}/v1/messages", data=iter([b"{" + b" " * 600_000, b" " * 600_000 + b"}"]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and chunked.json()["error"]["message"]
    assert requests.post(f"{url}/v1/messages", json=ASK, timeout=5).status_code == 200


def test_the_bodies_a_worker_holds_at_once_are_capped_together(gateway) -> None:
    """Past GATEWAY_BODY_MEMORY_MB a request is turned away before its body is read, and may retry."""
    from gateway.api.body import BodyBudget

    budget = gateway.app.extensions["gateway.bodies"] = BodyBudget(1000)
    assert budget.take(990)  # other requests' bodies, being held
    anthropic = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=5)
    assert anthropic.status_code == 529 and anthropic.json()["error"]["type"] == "overloaded_error"
    assert anthropic.headers["retry-after"] == "1" and "GATEWAY_BODY_MEMORY_MB" in anthropic.json()["error"]["message"]
    openai = requests.post(f"{gateway.url}/v1/chat/completions", json=OPENAI_ASK, timeout=5)
    assert openai.status_code == 503 and openai.headers["retry-after"] == "1"
    empty = requests.post(f"{gateway.url}/v1/messages", data=b"", headers={"Content-Type": "application/json"},
                          timeout=5)
    assert empty.status_code == 400  # an empty body takes nothing from the budget
    budget.give_back(990)
    answers = [requests.post(f"{gateway.url}{path}", json=body, timeout=5).status_code for path, body in (
        ("/v1/messages", ASK), ("/v1/messages", {**ASK, "model": "nope"}), ("/v1/chat/completions", OPENAI_ASK),
        ("/v1/chat/completions", {"messages": 5}), ("/v1/messages", {**ASK, "stream": True}))]
    answers.append(requests.post(f"{gateway.url}/v1/messages", data=b'{"model": ', timeout=5,
                                 headers={"Content-Type": "application/json"}).status_code)
    assert answers == [200, 404, 200, 400, 200, 400]
    assert budget.held == 0  # every request gave its share back, whatever its answer


def test_a_body_larger_than_the_whole_budget_is_still_served_alone(gateway) -> None:
    from gateway.api.body import BodyBudget

    budget = gateway.app.extensions["gateway.bodies"] = BodyBudget(10)
    assert requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=5).status_code == 200
    assert budget.held == 0


@pytest.mark.parametrize("server", [{"cors_origins": ("https://app.example",)}], indirect=True)
def test_cors_preflight_and_headers(server) -> None:
    url, _ = server
    preflight = requests.options(f"{url}/v1/messages", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type"}, timeout=5)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "x-api-key" in preflight.headers["Access-Control-Allow-Headers"]
    other = requests.post(f"{url}/v1/messages", json=ASK, headers={"Origin": "https://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_is_off_by_default(gateway) -> None:
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, headers={"Origin": "https://app.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("server", [{"ping_interval": 0.1}], indirect=True)
def test_pings_while_the_upstream_is_silent(server, fake) -> None:
    url, _ = server
    fake.enqueue(Reply(text="before and after the pause", chunks=3, stall_after=1, stall_seconds=0.8))
    response = requests.post(f"{url}/v1/messages", json={**ASK, "stream": True}, stream=True, timeout=10)
    during = requests.get(f"{url}/metrics", timeout=5).text
    assert "gateway_active_streams 1.0" in during
    names = [n for n, _ in sse_events(response)]
    first_delta = names.index("content_block_delta")
    pings_after_content = names[first_delta:].count("ping")
    assert pings_after_content >= 3
    assert names[-1] == "message_stop"


@pytest.mark.parametrize("server", [{"read_timeout": 0.5, "ping_interval": 0.2}], indirect=True)
def test_idle_upstream_ends_the_stream_with_an_error(server, fake) -> None:
    url, _ = server
    fake.enqueue(Reply(text="starts then goes quiet", chunks=3, stall_after=1, stall_seconds=5))
    started = time.monotonic()
    response = requests.post(f"{url}/v1/messages", json={**ASK, "stream": True}, stream=True, timeout=10)
    events = sse_events(response)
    assert time.monotonic() - started < 4
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


@pytest.mark.parametrize("server", [{"ping_interval": 30}], indirect=True)
def test_client_disconnect_releases_the_upstream_while_it_is_silent(server, fake) -> None:
    url, _ = server
    fake.enqueue(Reply(text="long silence follows", chunks=3, stall_after=1, stall_seconds=20))
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({**ASK, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b"content_block_delta" not in received:
        received += sock.recv(65536)
    assert fake.open_streams == 1
    sock.close()
    deadline = time.monotonic() + 3
    while fake.closed_by_client == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.closed_by_client == 1
    assert time.monotonic() < deadline


def test_metrics_after_traffic(gateway, fake) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    client.messages.create(**ASK)
    with client.messages.stream(**ASK) as stream:
        stream.get_final_message()
    requests.post(f"{gateway.url}/v1/messages", json={**ASK, "model": "nope"}, timeout=5)
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s"))
    requests.post(f"{gateway.url}/v1/messages", json={**ASK, "model": "gemini-3-flash-agent"}, timeout=5)
    # Requests are counted when their response closes, just after the client has read it.
    deadline = time.monotonic() + 3
    while True:
        text = requests.get(f"{gateway.url}/metrics", timeout=5).text
        if 'status="429"} 1.0' in text or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert 'gateway_requests_total{family="anthropic",model="claude-sonnet-4-6",status="200"} 2.0' in text
    assert 'gateway_requests_total{family="anthropic",model="unknown",status="404"} 1.0' in text
    assert 'gateway_request_seconds_count{family="anthropic"} 4.0' in text
    assert 'gateway_tokens_total{direction="out",family="anthropic",model="claude-sonnet-4-6"}' in text
    assert "gateway_active_streams 0.0" in text
    assert 'gateway_rate_limit_events_total{account="alice",model="gemini-3-flash-agent"} 1.0' in text


def test_metric_labels_are_listed_model_ids_whatever_the_client_sends(gateway, caplog) -> None:
    """A lone surrogate in a label made every later /metrics a 500; long names grew it without bound."""
    caplog.set_level(logging.INFO, logger="gateway.access")
    names = ["x" * 5000, "\ud800", "nope\nmethod=GET path=/forged status=200", "claude-sonnet-4-6"]
    for name in names:
        for path, body in (("/v1/messages", {**ASK, "model": name}), ("/v1/chat/completions", {**OPENAI_ASK, "model": name})):
            requests.post(f"{gateway.url}{path}", data=json.dumps(body), headers={"Content-Type": "application/json"},
                          timeout=10)
    deadline = time.monotonic() + 3
    while len([r for r in caplog.records if r.name == "gateway.access"]) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    metrics = requests.get(f"{gateway.url}/metrics", timeout=5)
    assert metrics.status_code == 200
    labels = {line.split("model=")[1].split('"')[1] for line in metrics.text.splitlines()
              if line.startswith("gateway_requests_total{")}
    assert labels == {"unknown", "claude-sonnet-4-6"}
    access = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(access) == 8
    for record in access:
        assert "\n" not in record.getMessage() and len(record.getMessage()) < 1000
        assert record.fields["model"] in (None, "claude-sonnet-4-6")
    assert any("nope\\nmethod=GET" in record.getMessage() for record in access)


def test_no_secret_reaches_logs_or_responses(fake, accounts_file, caplog) -> None:
    """A full scenario set, then every log line and response body is searched for the secrets used."""
    api_key = "sk-gateway-key-SECRET-1234"
    url, app, srv = serve(gateway_settings(fake, accounts_file, api_keys=frozenset({api_key})))
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    headers = {"x-api-key": api_key}
    try:
        fake.enqueue(Reply.error(401, message="Request had invalid authentication credentials."))
        bodies.append(requests.post(f"{url}/v1/messages", json=ASK, headers=headers, timeout=10).text)
        bodies.append(requests.post(f"{url}/v1/messages", json={**ASK, "stream": True}, headers=headers, timeout=10).text)
        # An upstream error that quotes a token back must be redacted before it reaches the client.
        access_token = [r for r in fake.requests if r.method == "streamGenerateContent"][-1].headers["authorization"][7:]
        fake.enqueue(Reply.error(400, message=f"bad request for token {access_token} and {REFRESH_TOKEN}"))
        bodies.append(requests.post(f"{url}/v1/messages", json=ASK, headers=headers, timeout=10).text)
        bodies.append(requests.post(f"{url}/v1/messages", json=ASK, headers={"x-api-key": api_key + "x"}, timeout=10).text)
        bodies.append(requests.post(f"{url}/refresh-token", headers=headers, timeout=10).text)
        bodies.append(requests.get(f"{url}/account-limits", headers=headers, timeout=10).text)
        bodies.append(requests.get(f"{url}/health", timeout=10).text)
        fake.revoke(REFRESH_TOKEN)
        app.extensions["gateway"].pool.accounts[0].tokens.invalidate()
        bodies.append(requests.post(f"{url}/v1/messages", json=ASK, headers=headers, timeout=10).text)
    finally:
        srv.shutdown()
    tokens = [r.headers.get("authorization", "")[7:] for r in fake.requests if r.headers.get("authorization")]
    secrets = {api_key, REFRESH_TOKEN, *filter(None, tokens)}
    assert len(secrets) >= 3
    logged = "\n".join(caplog.messages) + "\n".join(str(r.args) for r in caplog.records)
    for secret in secrets:
        assert secret not in logged
        for body in bodies:
            assert secret not in body
    assert "[redacted]" in bodies[2]


def test_one_access_line_per_request_with_its_fields(gateway, fake, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    client = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    with client.messages.stream(**ASK) as stream:
        stream.get_final_message()
    deadline = time.monotonic() + 2
    while not [r for r in caplog.records if r.name == "gateway.access"] and time.monotonic() < deadline:
        time.sleep(0.02)
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 1
    fields = records[0].fields
    assert fields["method"] == "POST" and fields["path"] == "/v1/messages" and fields["family"] == "anthropic"
    assert fields["model"] == "claude-sonnet-4-6" and fields["status"] == 200 and fields["stream"] is True
    assert fields["account"] == "alice" and fields["attempts"] == 1
    assert fields["tokens_in"] > 0 and fields["tokens_out"] > 0 and fields["latency_ms"] > 0


def test_an_encoded_newline_in_the_path_forges_no_access_line(gateway, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    forged = "/v1/messages%0d%0amethod=POST%20path=/v1/messages%20status=200%1b[2J"
    requests.post(f"{gateway.url}{forged}", json=ASK, timeout=5)
    deadline = time.monotonic() + 2
    while not [r for r in caplog.records if r.name == "gateway.access"] and time.monotonic() < deadline:
        time.sleep(0.02)
    (record,) = [r for r in caplog.records if r.name == "gateway.access"]
    line = record.getMessage()
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\\r\\nmethod=POST" in line and record.fields["path"].startswith("/v1/messages\\r\\n")
    text = logging.getLogger("gateway").handlers[0].format(record)
    assert "\n" not in text


def test_redaction_reaches_every_logger_and_handler(gateway, caplog) -> None:
    """Records from any logger, through any handler (here pytest's), have credentials masked: not only the
    gateway's own handler's output."""
    import io

    caplog.set_level(logging.DEBUG)
    stream = io.StringIO()
    plain = logging.StreamHandler(stream)  # a handler someone adds, with logging's own formatter
    logging.getLogger().addHandler(plain)
    try:
        logging.getLogger("urllib3.connectionpool").warning("retry with Authorization: Bearer %s", "ya29.a0-token-XYZ")
        logging.getLogger("somewhere.else").error("refresh failed for 1//0refresh-token-abc\nforged line")
        try:
            raise RuntimeError("upstream said: invalid token ya29.a0-other-token in request")
        except RuntimeError:
            logging.getLogger("werkzeug").exception("while handling a request")
    finally:
        logging.getLogger().removeHandler(plain)
    for text in (caplog.text, stream.getvalue()):
        assert "ya29.a0-token-XYZ" not in text and "1//0refresh-token-abc" not in text
        assert "ya29.a0-other-token" not in text and "[redacted]" in text
        assert "\nforged line" not in text
    messages = [record.getMessage() for record in caplog.records]
    assert not any("ya29.a0" in message or "1//0refresh" in message for message in messages)


def test_json_log_format_is_one_json_object_per_line_and_redacted() -> None:
    from gateway.logs import RedactingFormatter

    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "done with ya29.secret-token", None, None)
    record.fields = {"status": 200, "path": "/v1/messages"}
    line = RedactingFormatter(json_format=True, secrets=("my-api-key-123",)).format(record)
    payload = json.loads(line)
    assert payload["status"] == 200 and payload["path"] == "/v1/messages" and payload["level"] == "INFO"
    assert "ya29" not in line and "[redacted]" in payload["message"]
    text = RedactingFormatter(json_format=False, secrets=("my-api-key-123",))
    other = logging.LogRecord("gateway", logging.INFO, __file__, 1, "key %s", ("my-api-key-123",), None)
    assert "my-api-key-123" not in text.format(other)
