"""/health, /v1/models and starting without accounts."""

from __future__ import annotations

import json

import requests

from tests.conftest import gateway_settings, saved_accounts, serve


def test_health(gateway) -> None:
    body = requests.get(f"{gateway.url}/health", timeout=5).json()
    assert body == {"status": "ok", "accounts": 1, "activeAccounts": 1}


def test_models_list_shape(gateway) -> None:
    body = requests.get(f"{gateway.url}/v1/models", timeout=5).json()
    assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert ids["claude-opus-4-6-thinking"]["owned_by"] == "anthropic"
    assert ids["gemini-3-flash-agent"]["owned_by"] == "google"
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])
    assert not any(i.startswith("chat_") for i in ids)


def test_no_accounts_file_still_starts_and_explains(fake, tmp_path) -> None:
    url, _, server = serve(gateway_settings(fake, tmp_path / "missing.json"))
    try:
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["accounts"] == 0 and health["activeAccounts"] == 0
        assert "accounts add" in health["error"]
        assert str(tmp_path) not in health["error"]  # /health needs no key: it names no file
        response = requests.post(f"{url}/v1/messages", timeout=5, json={
            "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 503
        assert "accounts add" in response.json()["error"]["message"]
    finally:
        server.shutdown()


def test_broken_accounts_file_still_starts(fake, tmp_path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text("{not json")
    url, _, server = serve(gateway_settings(fake, path))
    try:
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["activeAccounts"] == 0 and "not valid JSON" in health["error"]
        assert str(tmp_path) not in health["error"]
    finally:
        server.shutdown()


def test_project_discovery_with_onboarding_is_saved_keeping_unknown_fields(fake, tmp_path) -> None:
    fake.add_account("bob@example.com", refresh_token="1//bob", project_id=None)
    path = tmp_path / "accounts.json"
    path.write_text(json.dumps({
        "accounts": [{"email": "bob@example.com", "refreshToken": "1//bob", "source": "oauth",
                      "modelRateLimits": {}, "addedAt": "2026-01-10T08:00:00.000Z"}],
        "settings": {"cooldownDurationMs": 60000}, "activeIndex": 0,
    }))
    url, _, server = serve(gateway_settings(fake, path))
    try:
        response = requests.post(f"{url}/v1/messages", timeout=10, json={
            "model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 200, response.text
    finally:
        server.shutdown()
    saved = saved_accounts(path, lambda data: data["accounts"][0].get("projectId"))
    entry = saved["accounts"][0]
    assert entry["projectId"] and entry["source"] == "oauth" and entry["addedAt"].startswith("2026")
    assert saved["settings"] == {"cooldownDurationMs": 60000} and saved["activeIndex"] == 0
    assert (path.stat().st_mode & 0o777) == 0o600
    assert any(r.method == "onboardUser" for r in fake.requests)
