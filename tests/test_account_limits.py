"""GET /account-limits (JSON and table) and POST /refresh-token."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import requests

from tests.conftest import EMAILS, REFRESH_TOKEN, TOKENS, saved_accounts
from tests.fake_cloudcode import Reply
from tests.test_accounts_pool import LONG_LIMIT, ask, post, running


def in_hours(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_account_limits_json(fake, trio_file) -> None:
    fake.set_quota("alice@example.com", "claude-sonnet-4-6", 0.8, in_hours(2))
    fake.set_quota("bob@example.com", "claude-opus-4-6-thinking", None, in_hours(1))
    fake.enqueue(Reply.error(429, **LONG_LIMIT), email="bob@example.com", model="gemini-3-flash-agent")
    fake.revoke(TOKENS["carol@example.com"])
    with running(fake, trio_file, account_strategy="round-robin") as (url, _):
        assert post(url, ask()).status_code == 200  # alice
        assert post(url, ask(model="gemini-3-flash-agent")).status_code == 200  # bob 429, then carol (invalid), alice
        report = requests.get(f"{url}/account-limits", timeout=10).json()
    alice, bob, carol = report["accounts"]
    assert report["totalAccounts"] == 3 and report["available"] == 2
    assert (report["rateLimited"], report["invalid"], report["disabled"]) == (1, 1, 0)
    assert "claude-sonnet-4-6" in report["models"] and not any(m.startswith("chat_") for m in report["models"])

    assert alice["status"] == "ok" and alice["projectId"] == "proj-alice" and alice["lastUsed"]
    sonnet = alice["limits"]["claude-sonnet-4-6"]
    assert sonnet["remaining"] == "80%" and sonnet["remainingFraction"] == 0.8
    assert 7100 < sonnet["resetInSeconds"] <= 7200
    assert alice["limits"]["gemini-3-flash-agent"]["remainingFraction"] == 1.0

    assert bob["status"] == "rate-limited"
    assert list(bob["modelRateLimits"]) == ["gemini-3-flash-agent"]
    assert 3500 < bob["modelRateLimits"]["gemini-3-flash-agent"]["waitSeconds"] <= 3600
    opus = bob["limits"]["claude-opus-4-6-thinking"]  # exhausted: the upstream leaves the fraction out
    assert (opus["remaining"], opus["remainingFraction"]) == ("0%", None) and opus["resetTime"].endswith("Z")
    assert 3500 < opus["resetInSeconds"] <= 3600

    assert carol["status"] == "invalid" and "invalid_grant" in carol["error"]
    assert all(limit is None for limit in carol["limits"].values())


def test_account_limits_table(fake, trio_file) -> None:
    fake.set_quota("alice@example.com", "claude-sonnet-4-6", 0.8, in_hours(2))
    fake.set_quota("bob@example.com", "claude-sonnet-4-6", None, in_hours(1))
    fake.enqueue(Reply.error(429, **LONG_LIMIT), email="carol@example.com", model="gemini-3-flash-agent")
    with running(fake, trio_file, account_strategy="round-robin") as (url, _):
        for _ in range(3):
            post(url, ask(model="gemini-3-flash-agent"))  # alice, bob, carol (429) -> alice
        response = requests.get(f"{url}/account-limits?format=table", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = response.text
    assert text.startswith("Account limits (") and "Accounts: 3 total, 3 available, 1 rate-limited" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Model "))
    rows = {line.split()[0]: line for line in lines[lines.index(header) + 2:] if line and not line.startswith("Cells")}
    # Aligned: every cell of a column starts where the column's header does.
    columns = [header.index(name) for name in ("alice", "bob", "carol")]
    for line in rows.values():
        assert all(line[c - 1] == " " and line[c] != " " for c in columns), line
    sonnet = rows["claude-sonnet-4-6"]
    assert re.search(r"80% \(1h59m\)|80% \(2h0m\)", sonnet[columns[0]:columns[1]])
    assert re.search(r"0% \(wait (59m\d+s|1h0m)\)", sonnet[columns[1]:columns[2]])
    assert re.match(r"limited \((59m\d+s|1h0m)\)", rows["gemini-3-flash-agent"][columns[2]:])
    assert rows["gemini-3-flash-agent"][columns[0]:].startswith("100% (")
    account_rows = {line.split()[0]: line for line in lines[4:8]}
    assert account_rows["carol"].split()[1] == "rate-limited" and account_rows["alice"].split()[1] == "ok"


def test_account_limits_rejects_an_unknown_format(gateway) -> None:
    response = requests.get(f"{gateway.url}/account-limits?format=xml", timeout=5)
    assert response.status_code == 400


def test_refresh_token_for_all_accounts_and_one(fake, trio_file) -> None:
    with running(fake, trio_file) as (url, _):
        response = requests.post(f"{url}/refresh-token", timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["refreshed"] == 3 and body["failed"] == 0
        assert [a["email"] for a in body["accounts"]] == EMAILS
        assert all(a["status"] == "ok" and a["expiresAt"].endswith("Z") for a in body["accounts"])
        assert {e: fake.refresh_count(TOKENS[e]) for e in EMAILS} == dict.fromkeys(EMAILS, 1)

        one = requests.post(f"{url}/refresh-token?email=bob@example.com", timeout=10).json()
        assert [a["email"] for a in one["accounts"]] == ["bob@example.com"]
        assert {e: fake.refresh_count(TOKENS[e]) for e in EMAILS} == {**dict.fromkeys(EMAILS, 1), "bob@example.com": 2}
        for text in (response.text, json.dumps(one)):
            assert "ya29" not in text and "1//" not in text

        missing = requests.post(f"{url}/refresh-token?email=nobody@example.com", timeout=10)
        assert missing.status_code == 404


def test_refresh_token_reports_and_clears_invalid_accounts(fake, trio_file) -> None:
    fake.revoke(REFRESH_TOKEN)
    with running(fake, trio_file) as (url, _):
        response = requests.post(f"{url}/refresh-token", timeout=10)
        assert response.status_code == 502
        body = response.json()
        assert body["failed"] == 1 and body["accounts"][0]["status"] == "invalid"
        assert REFRESH_TOKEN not in response.text
        assert requests.get(f"{url}/health", timeout=5).json()["activeAccounts"] == 2
        marked = saved_accounts(trio_file, lambda data: data["accounts"][0].get("isInvalid"))
        assert marked["accounts"][0]["isInvalid"] is True

        fake.add_account("alice@example.com", refresh_token=REFRESH_TOKEN, project_id="proj-alice")  # valid again
        again = requests.post(f"{url}/refresh-token?email=alice@example.com", timeout=10)
        assert again.status_code == 200 and again.json()["accounts"][0]["status"] == "ok"
        assert requests.get(f"{url}/health", timeout=5).json()["activeAccounts"] == 3
    alice = saved_accounts(trio_file, lambda data: data["accounts"][0]["isInvalid"] is False)["accounts"][0]
    assert alice["isInvalid"] is False and alice["invalidReason"] is None


def test_error_texts_are_redacted_in_account_limits_and_refresh_token(fake, accounts_file, monkeypatch) -> None:
    """Errors quote the upstream and the token endpoint, which may echo a token or a key back."""
    import requests

    from gateway.accounts.credentials import InvalidGrant, TokenRefreshFailed
    from gateway.upstream.errors import UpstreamHTTPError
    from tests.conftest import REFRESH_TOKEN, gateway_settings, serve

    key = "sk-client-key-123456"
    url, app, server = serve(gateway_settings(fake, accounts_file, api_keys=frozenset({key})))
    gateway = app.extensions["gateway"]
    echoed = f"token ya29.a0-access-XYZ, refresh {REFRESH_TOKEN}, key {key}, Bearer abc.def"

    def failing_listing(account):  # noqa: ANN001, ANN202
        raise UpstreamHTTPError(400, '{"error": {"message": "%s"}}' % echoed)

    monkeypatch.setattr(gateway.client, "fetch_available_models", failing_listing)
    account = gateway.pool.accounts[0]
    try:
        headers = {"x-api-key": key}
        texts = [requests.get(f"{url}/account-limits", headers=headers, timeout=10).text,
                 requests.get(f"{url}/account-limits?format=table", headers=headers, timeout=10).text]
        monkeypatch.setattr(account.tokens, "force_refresh", lambda: (_ for _ in ()).throw(TokenRefreshFailed(echoed)))
        texts.append(requests.post(f"{url}/refresh-token", headers=headers, timeout=10).text)
        monkeypatch.setattr(account.tokens, "force_refresh", lambda: (_ for _ in ()).throw(InvalidGrant(echoed)))
        texts.append(requests.post(f"{url}/refresh-token", headers=headers, timeout=10).text)
        texts.append(requests.get(f"{url}/account-limits", headers=headers, timeout=10).text)  # the invalid mark
    finally:
        server.shutdown()
    for text in texts:
        assert "[redacted]" in text, text
        for secret in ("ya29.a0-access-XYZ", REFRESH_TOKEN, key, "abc.def"):
            assert secret not in text, text
    assert REFRESH_TOKEN not in accounts_file.read_text().replace(f'"refreshToken": "{REFRESH_TOKEN}"', "")
