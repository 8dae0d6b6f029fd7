"""`python -m gateway accounts ...` in a subprocess, against the fake's OAuth and Cloud Code endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.conftest import REFRESH_TOKEN, TOKENS
from tests.fake_cloudcode import FakeCloudCode
from tests.test_accounts_pool import running

ROOT = Path(__file__).resolve().parent.parent


def cli_env(fake: FakeCloudCode, path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GATEWAY_ACCOUNTS_FILE": str(path),
        "GATEWAY_CLOUDCODE_URLS": fake.base_url,
        "GATEWAY_OAUTH_TOKEN_URL": fake.token_url,
        "GATEWAY_OAUTH_AUTH_URL": fake.auth_url,
        "GATEWAY_OAUTH_USERINFO_URL": fake.userinfo_url,
        "GATEWAY_OAUTH_REDIRECT_PORT": "0",  # any free port, so tests can run side by side
        "BROWSER": "true",  # webbrowser.open runs `true URL`: the test plays the browser itself
    }


def cli(fake: FakeCloudCode, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "accounts", *args], cwd=ROOT, env=cli_env(fake, path),
                          capture_output=True, text=True, timeout=30)


def start_add(fake: FakeCloudCode, path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `accounts add` and return it with the consent URL it printed."""
    process = subprocess.Popen([sys.executable, "-m", "gateway", "accounts", "add", *args], cwd=ROOT,
                               env=cli_env(fake, path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(fake.auth_url):
            return process, line.strip()
    raise AssertionError(f"no consent URL printed: {process.communicate(timeout=10)}")


def entries(path: Path) -> dict[str, dict]:
    return {e["email"]: e for e in json.loads(path.read_text())["accounts"]}


def wait_for(predicate, timeout: float = 5.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# -- add ---------------------------------------------------------------------------------------------------


def test_add_through_the_browser_flow_while_the_gateway_runs(fake, accounts_file) -> None:
    fake.add_account("bob@example.com", project_id="proj-bob")
    before = entries(accounts_file)["alice@example.com"]
    with running(fake, accounts_file) as (url, app):
        app.extensions["gateway"].pool.reload_interval = 0.05
        process, consent = start_add(fake, accounts_file, "--login-hint", "bob@example.com")
        query = parse_qs(urlsplit(consent).query)
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
        assert query["redirect_uri"][0].startswith("http://localhost:")

        # The browser: Google's consent page answers 302 to the CLI's loopback listener, which shows a page.
        page = requests.get(consent, timeout=10)
        assert [r.status_code for r in page.history] == [302]
        assert page.status_code == 200 and "authorized" in page.text

        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert "Added bob@example.com (project proj-bob)" in out
        # The running gateway picks the new account up from the file.
        assert wait_for(lambda: requests.get(f"{url}/health", timeout=5).json()["activeAccounts"] == 2)

    accounts = entries(accounts_file)
    assert accounts["alice@example.com"] == before
    bob = accounts["bob@example.com"]
    assert bob["projectId"] == "proj-bob" and bob["source"] == "oauth" and bob["enabled"] is True
    assert bob["refreshToken"].startswith("1//fake-") and fake.refresh_count(bob["refreshToken"]) >= 1
    assert (accounts_file.stat().st_mode & 0o777) == 0o600
    exchange = next(r for r in fake.requests if r.method == "token" and r.body["grant_type"] == "authorization_code")
    assert exchange.status == 200 and exchange.body["code_verifier"]  # the fake checked it against the challenge


def test_add_without_a_browser_reads_the_pasted_redirect_url(fake, accounts_file) -> None:
    fake.add_account("bob@example.com", project_id="proj-bob")
    process, consent = start_add(fake, accounts_file, "--no-browser", "--login-hint", "bob@example.com")
    redirect = requests.get(consent, allow_redirects=False, timeout=10).headers["Location"]
    assert redirect.startswith("http://localhost:51121/oauth-callback?")  # nothing listens there: pasted instead
    out, err = process.communicate(redirect + "\n", timeout=30)
    assert process.returncode == 0, err
    assert "Added bob@example.com" in out and "bob@example.com" in entries(accounts_file)


def test_add_without_a_browser_accepts_the_bare_code(fake, accounts_file) -> None:
    fake.add_account("bob@example.com", project_id=None)  # not onboarded yet: the CLI onboards it
    process, consent = start_add(fake, accounts_file, "--no-browser", "--login-hint", "bob@example.com")
    redirect = requests.get(consent, allow_redirects=False, timeout=10).headers["Location"]
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    out, err = process.communicate(code + "\n", timeout=30)
    assert process.returncode == 0, err
    assert entries(accounts_file)["bob@example.com"]["projectId"].startswith("onboarded-")


def test_a_redirect_from_another_attempt_is_refused(fake, accounts_file) -> None:
    before = accounts_file.read_text()
    process, consent = start_add(fake, accounts_file, "--no-browser")
    redirect = requests.get(consent, allow_redirects=False, timeout=10).headers["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
    forged = redirect.split("?")[0] + "?" + urlencode({**query, "state": "0" * 32})
    out, err = process.communicate(forged + "\n", timeout=30)
    assert process.returncode == 1 and "state mismatch" in err
    assert accounts_file.read_text() == before
    assert not any(r.method == "token" and r.body.get("grant_type") == "authorization_code" for r in fake.requests)


def test_a_refused_consent_fails_cleanly(fake, accounts_file) -> None:
    process, consent = start_add(fake, accounts_file)
    page = requests.get(consent + "&test_error=access_denied", timeout=10)
    assert page.status_code == 400
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and "access_denied" in err


def test_re_adding_an_account_renews_its_token_and_clears_the_invalid_mark(fake, accounts_file) -> None:
    data = json.loads(accounts_file.read_text())
    data["accounts"][0].update(isInvalid=True, invalidReason="refresh token rejected", addedAt="2026-01-01T00:00:00Z")
    accounts_file.write_text(json.dumps(data))
    process, consent = start_add(fake, accounts_file, "--login-hint", "alice@example.com")
    requests.get(consent, timeout=10)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Renewed alice@example.com" in out
    [alice] = json.loads(accounts_file.read_text())["accounts"]
    assert alice["refreshToken"] != REFRESH_TOKEN and alice["isInvalid"] is False and alice["invalidReason"] is None
    assert alice["addedAt"] == "2026-01-01T00:00:00Z"


# -- list, verify, enable, disable, remove -------------------------------------------------------------------


def test_list_verify_disable_enable_remove(fake, trio_file) -> None:
    fake.revoke(TOKENS["bob@example.com"])
    listing = cli(fake, trio_file, "list")
    assert listing.returncode == 0
    rows = [line.split() for line in listing.stdout.splitlines() if "@example.com" in line]
    assert rows == [["alice@example.com", "yes", "proj-alice", "ok"], ["bob@example.com", "yes", "proj-bob", "ok"],
                    ["carol@example.com", "yes", "proj-carol", "ok"]]

    verify = cli(fake, trio_file, "verify")
    assert verify.returncode == 1
    assert "OK    alice@example.com" in verify.stdout and "OK    carol@example.com" in verify.stdout
    assert "FAIL  bob@example.com: refresh token rejected: invalid_grant" in verify.stdout
    assert entries(trio_file)["bob@example.com"]["isInvalid"] is True
    assert "invalid: refresh token rejected" in cli(fake, trio_file, "list").stdout
    for text in (listing.stdout, verify.stdout):
        assert "1//" not in text and "ya29" not in text

    with running(fake, trio_file) as (url, app):
        app.extensions["gateway"].pool.reload_interval = 0.05

        def health() -> dict:
            return requests.get(f"{url}/health", timeout=5).json()

        assert health() == {"status": "ok", "accounts": 3, "activeAccounts": 2}  # bob's mark holds
        assert cli(fake, trio_file, "disable", "alice@example.com").returncode == 0
        assert entries(trio_file)["alice@example.com"]["enabled"] is False
        assert wait_for(lambda: health()["activeAccounts"] == 1)
        assert cli(fake, trio_file, "enable", "alice@example.com").returncode == 0
        assert wait_for(lambda: health()["activeAccounts"] == 2)
        removed = cli(fake, trio_file, "remove", "carol@example.com")
        assert removed.returncode == 0 and "Removed carol@example.com" in removed.stdout
        assert wait_for(lambda: health() == {"status": "ok", "accounts": 2, "activeAccounts": 1})

    assert list(entries(trio_file)) == ["alice@example.com", "bob@example.com"]
    before = trio_file.stat()
    unknown = cli(fake, trio_file, "disable", "nobody@example.com")
    assert unknown.returncode == 1 and "no account nobody@example.com" in unknown.stderr
    assert trio_file.stat().st_ino == before.st_ino  # not rewritten
    assert (trio_file.stat().st_mode & 0o777) == 0o600


def test_verify_clears_the_mark_of_a_working_account(fake, trio_file) -> None:
    data = json.loads(trio_file.read_text())
    data["accounts"][0].update(isInvalid=True, invalidReason="refresh token rejected: once")
    trio_file.write_text(json.dumps(data))
    result = cli(fake, trio_file, "verify")
    assert result.returncode == 0 and result.stdout.count("OK    ") == 3
    assert entries(trio_file)["alice@example.com"]["isInvalid"] is False


# -- the loopback listener of `accounts add` ------------------------------------------------------------------


def _receiver_settings():  # noqa: ANN202
    from gateway.config import Settings

    return Settings(oauth_auth_url="https://accounts.example/auth")


def test_the_listener_ignores_answers_of_other_attempts_and_keeps_waiting() -> None:
    """Any local program or web page can send the browser to the listener: a wrong state must not end the
    sign-in (it did: the first request of any kind aborted it)."""
    import threading

    from gateway.accounts import oauth

    with oauth.LoopbackReceiver(0) as receiver:
        auth = receiver.authorize(_receiver_settings())
        callback = f"http://127.0.0.1:{receiver.port}/oauth-callback"
        result: list[str] = []
        waiter = threading.Thread(target=lambda: result.append(receiver.wait(auth.state, 10)))
        waiter.start()
        for forged in ({"state": "0" * 32, "code": "4/forged"}, {"code": "4/no-state"},
                       {"state": "0" * 32, "error": "access_denied"}):
            page = requests.get(callback, params=forged, timeout=5)
            assert page.status_code == 400 and "ignored" in page.text
        assert waiter.is_alive() and not result
        page = requests.get(callback, params={"state": auth.state, "code": "4/the-real-code"}, timeout=5)
        assert page.status_code == 200
        waiter.join(5)
    assert result == ["4/the-real-code"]


def test_the_listener_escapes_what_it_shows() -> None:
    """Google's (or a forger's) error text goes into the page as text, and into the terminal without its
    control characters."""
    from gateway.accounts import oauth

    with oauth.LoopbackReceiver(0) as receiver:
        auth = receiver.authorize(_receiver_settings())
        error = "<script>alert(1)</script>\x1b[2J\r\nforged"
        page = requests.get(f"http://127.0.0.1:{receiver.port}/oauth-callback",
                            params={"state": auth.state, "error": error}, timeout=5)
        assert page.status_code == 400
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text
        with pytest.raises(oauth.OAuthError) as raised:
            receiver.wait(auth.state, 5)
        message = str(raised.value)
        assert "\x1b" not in message and "\n" not in message and "\\x1b[2J\\r\\nforged" in message


def test_a_silent_connection_does_not_hold_up_the_listener(monkeypatch) -> None:
    import socket

    from gateway.accounts import oauth

    monkeypatch.setattr(oauth._CallbackHandler, "timeout", 0.5)
    with oauth.LoopbackReceiver(0) as receiver:
        auth = receiver.authorize(_receiver_settings())
        silent = socket.create_connection(("127.0.0.1", receiver.port))
        try:
            page = requests.get(f"http://127.0.0.1:{receiver.port}/oauth-callback",
                                params={"state": auth.state, "code": "4/code"}, timeout=3)
            assert page.status_code == 200
            assert receiver.wait(auth.state, 1) == "4/code"
            silent.settimeout(3)
            assert silent.recv(1) == b""  # dropped after the idle timeout
        finally:
            silent.close()


def test_the_listener_answers_on_both_loopback_addresses() -> None:
    """``localhost`` is ::1 to some browsers and 127.0.0.1 to others."""
    import socket

    from gateway.accounts import oauth

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with oauth.LoopbackReceiver(0) as receiver:
        auth = receiver.authorize(_receiver_settings())
        for host in ("127.0.0.1", "[::1]"):
            page = requests.get(f"http://{host}:{receiver.port}/elsewhere", timeout=5)
            assert page.status_code == 404
        page = requests.get(f"http://[::1]:{receiver.port}/oauth-callback",
                            params={"state": auth.state, "code": "4/over-ipv6"}, timeout=5)
        assert page.status_code == 200 and receiver.wait(auth.state, 1) == "4/over-ipv6"
