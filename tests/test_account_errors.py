"""Accounts Google refuses: 403 VALIDATION_REQUIRED (needs-verification) and a Terms-of-Service ban (suspended)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests

from gateway.accounts.refusals import NEEDS_VERIFICATION, SUSPENDED, Refusal, account_refusal
from gateway.upstream.errors import UpstreamHTTPError
from tests.conftest import REFRESH_TOKEN, write_accounts
from tests.fake_cloudcode import ERROR_INFO, HELP, TOS_BANNED, FakeCloudCode
from tests.test_accounts_cli import cli, entries, wait_for
from tests.test_accounts_pool import ask, post, running

URL = "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://antigravity.google/verify"
ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.fixture
def duo_file(fake: FakeCloudCode, tmp_path: Path) -> Path:
    """alice (from the fake fixture) and bob, both usable."""
    fake.add_account(BOB, refresh_token="1//refresh-bob", project_id="proj-bob")
    return write_accounts(tmp_path / "accounts.json", [
        {"email": ALICE, "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"},
        {"email": BOB, "refreshToken": "1//refresh-bob", "projectId": "proj-bob"},
    ])


def calls(fake: FakeCloudCode) -> list[tuple[str, int]]:
    return [(r.email.split("@")[0], r.status) for r in fake.generate_requests()]


def health(url: str) -> dict:
    return requests.get(f"{url}/health", timeout=5).json()


# -- what counts as a refusal ---------------------------------------------------------------------------


def refused(status: int, message: str, *details: dict) -> UpstreamHTTPError:
    error = {"code": status, "message": message, "status": "PERMISSION_DENIED"}
    if details:
        error["details"] = list(details)
    return UpstreamHTTPError(status, json.dumps({"error": error}))


def validation(metadata: dict) -> dict:
    return {"@type": ERROR_INFO, "reason": "VALIDATION_REQUIRED", "domain": "cloudcode-pa.googleapis.com",
            "metadata": metadata}


def test_which_403s_are_about_the_account() -> None:
    help_link = {"@type": HELP, "links": [{"description": "Verify", "url": URL}]}
    assert account_refusal(refused(403, "Verify.", validation({"validation_url": URL}))) == Refusal(
        NEEDS_VERIFICATION, "Verify.", URL)
    assert account_refusal(refused(403, "Verify.", validation({}), help_link)).url == URL
    assert account_refusal(refused(403, "Verify.", validation({"validation_url": "javascript:x"}))) == Refusal(
        NEEDS_VERIFICATION, "Verify.", None)
    assert account_refusal(refused(403, TOS_BANNED)) == Refusal(SUSPENDED, TOS_BANNED)
    iam = {"@type": ERROR_INFO, "reason": "IAM_PERMISSION_DENIED", "metadata": {}}
    assert account_refusal(refused(403, "Permission denied on resource project x.", iam)) is None
    assert account_refusal(refused(404, TOS_BANNED)) is None
    assert account_refusal(UpstreamHTTPError(403, "<html>Forbidden</html>")) is None


# -- needs verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("detail", ["metadata", "help"])
def test_validation_required_marks_the_account_and_the_next_one_serves(fake, duo_file, caplog, detail) -> None:
    fake.require_validation(ALICE, URL, detail=detail)
    with running(fake, duo_file, account_strategy="sticky") as (url, _):
        assert post(url, ask("first")).status_code == 200
        assert post(url, ask("second")).status_code == 200
        assert health(url) == {"status": "ok", "accounts": 2, "activeAccounts": 1, "needsVerification": 1}
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
    assert calls(fake) == [("alice", 403), ("bob", 200), ("bob", 200)]
    alice = report["accounts"][0]
    assert (alice["status"], alice["validationUrl"]) == (NEEDS_VERIFICATION, URL) and URL in alice["error"]
    assert report["needsVerification"] == 1 and report["available"] == 1 and report["suspended"] == 0
    assert report["accounts"][1]["validationUrl"] is None
    assert "1 needing verification, 0 suspended" in table
    assert f"\u2514\u2500 Google wants the account verified: open {URL}" in table
    assert next(line for line in table.splitlines() if line.startswith("alice")).split()[1] == NEEDS_VERIFICATION
    saved = entries(duo_file)[ALICE]
    assert saved["needsVerification"] is True and saved["validationUrl"] == URL and saved["needsVerificationAt"]
    said = [r for r in caplog.records if "needs verification" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR and URL in said[0].getMessage()

    with running(fake, duo_file, account_strategy="sticky") as (url, _):  # a restart keeps the mark
        assert health(url)["needsVerification"] == 1
        assert post(url, ask("after a restart")).status_code == 200
        still = requests.post(f"{url}/refresh-token", timeout=10)
        assert still.status_code == 502
        assert still.json()["accounts"][0] == {"email": ALICE, "status": NEEDS_VERIFICATION,
                                               "error": "Verify your account to continue using Antigravity.",
                                               "validationUrl": URL}
        fake.clear_validation(ALICE)  # the user opened the link
        cleared = requests.post(f"{url}/refresh-token?email={ALICE}", timeout=10)
        assert cleared.status_code == 200 and cleared.json()["accounts"][0]["status"] == "ok"
        assert health(url) == {"status": "ok", "accounts": 2, "activeAccounts": 2}
    assert calls(fake)[3:] == [("bob", 200)]
    assert entries(duo_file)[ALICE]["needsVerification"] is False and entries(duo_file)[ALICE]["validationUrl"] is None


def test_accounts_verify_finds_and_clears_needs_verification(fake, duo_file) -> None:
    fake.require_validation(BOB, URL, detail="help")
    result = cli(fake, duo_file, "verify")
    assert result.returncode == 1
    assert f"OK    {ALICE}" in result.stdout
    assert f"FAIL  {BOB}: needs verification: open {URL}, then run `python -m gateway accounts verify`" in result.stdout
    assert entries(duo_file)[BOB]["needsVerification"] is True and "needsVerification" not in entries(duo_file)[ALICE]
    listing = cli(fake, duo_file, "list", "--offline").stdout
    assert f"needs verification: open {URL}" in listing
    with running(fake, duo_file) as (url, _):
        assert health(url)["needsVerification"] == 1
        for n in range(3):
            assert post(url, ask(f"conversation {n}")).status_code == 200
    assert {email for email, _ in calls(fake)} == {"alice"}

    fake.clear_validation(BOB)
    again = cli(fake, duo_file, "verify")
    assert again.returncode == 0 and again.stdout.count("OK    ") == 2
    assert entries(duo_file)[BOB]["needsVerification"] is False


# -- suspended ---------------------------------------------------------------------------------------------


def test_a_terms_of_service_ban_suspends_the_account_until_enable(fake, duo_file) -> None:
    fake.suspend(ALICE)
    with running(fake, duo_file, account_strategy="sticky") as (url, _):
        assert post(url, ask("first")).status_code == 200
        assert post(url, ask("second")).status_code == 200
        assert health(url) == {"status": "ok", "accounts": 2, "activeAccounts": 1, "suspended": 1}
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
        kept = requests.post(f"{url}/refresh-token", timeout=10).json()["accounts"][0]
    assert calls(fake) == [("alice", 403), ("bob", 200), ("bob", 200)]
    alice = report["accounts"][0]
    assert (alice["status"], alice["error"], report["suspended"]) == (SUSPENDED, TOS_BANNED, 1)
    assert f"\u2514\u2500 {TOS_BANNED}" in table and "[suspended]" in table
    assert kept == {"email": ALICE, "status": SUSPENDED, "error": TOS_BANNED}  # a refresh does not lift it
    saved = entries(duo_file)[ALICE]
    assert saved["isSuspended"] is True and saved["suspendedReason"] == TOS_BANNED and saved["suspendedAt"]
    listing = cli(fake, duo_file, "list").stdout
    assert f"suspended: {TOS_BANNED} (`python -m gateway accounts enable {ALICE}` to use it again)" in listing

    fake.suspend(ALICE, False)  # an appeal went through
    with running(fake, duo_file, account_strategy="sticky") as (url, app):
        app.extensions["gateway"].pool.reload_interval = 0.05
        assert health(url)["suspended"] == 1  # a restart keeps the mark, whatever Google says now
        assert post(url, ask("still bob")).status_code == 200
        enabled = cli(fake, duo_file, "enable", ALICE)
        assert enabled.returncode == 0 and "its suspension is lifted" in enabled.stdout
        assert wait_for(lambda: health(url) == {"status": "ok", "accounts": 2, "activeAccounts": 2})
    assert calls(fake)[3:] == [("bob", 200)]
    assert entries(duo_file)[ALICE]["isSuspended"] is False


def test_with_every_account_suspended_the_client_hears_why(fake, duo_file) -> None:
    fake.suspend(ALICE)
    fake.suspend(BOB)
    with running(fake, duo_file) as (url, _):
        first = post(url, ask())
        assert first.status_code == 403 and first.json()["error"]["type"] == "permission_error"
        assert TOS_BANNED in first.json()["error"]["message"]
        then = post(url, ask())
        assert then.status_code == 503 and "suspended" in then.json()["error"]["message"]
        assert health(url)["suspended"] == 2 and health(url)["activeAccounts"] == 0
