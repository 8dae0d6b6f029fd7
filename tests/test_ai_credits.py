"""GATEWAY_AI_CREDITS: an account out of quota serves once more from its Google One AI credits."""

from __future__ import annotations

import json

import pytest
import requests

from gateway.accounts import credits
from gateway.accounts.pool import Account
from gateway.config import ConfigError, Settings
from gateway.upstream.errors import UpstreamHTTPError
from tests.fake_cloudcode import ERROR_INFO, Reply
from tests.test_account_limits import in_hours
from tests.test_accounts_pool import MODEL, ask, post, running

NOW = 1_800_000_000.0
OPUS = "claude-opus-4-6-thinking"


def answer(status: int, reason: str | None) -> UpstreamHTTPError:
    details = [{"@type": ERROR_INFO, "reason": reason, "metadata": {"quotaResetDelay": "2h0m0s"}}] if reason else []
    return UpstreamHTTPError(status, json.dumps({"error": {"code": status, "message": "no", "details": details}}))


def calls(fake) -> list[tuple[str, int, bool]]:  # noqa: ANN001
    """(account, status, whether the envelope enabled credits) of every generate call."""
    return [(r.email.split("@")[0], r.status, "enabledCreditTypes" in r.body) for r in fake.generate_requests()]


# -- policy ---------------------------------------------------------------------------------------------


def test_only_quota_exhausted_is_worth_credits_and_a_failure_pauses_them() -> None:
    account = Account(email="a@example.com", tokens=None, session=None)  # type: ignore[arg-type]
    exhausted = answer(429, "QUOTA_EXHAUSTED")
    assert credits.worth_trying(account, exhausted, enabled=True, now=NOW)
    assert not credits.worth_trying(account, exhausted, enabled=False, now=NOW)
    assert not credits.worth_trying(account, answer(429, "RATE_LIMIT_EXCEEDED"), enabled=True, now=NOW)
    assert not credits.worth_trying(account, answer(429, None), enabled=True, now=NOW)
    assert not credits.worth_trying(account, answer(403, "QUOTA_EXHAUSTED"), enabled=True, now=NOW)

    credits.failed(account, answer(429, "INSUFFICIENT_G1_CREDITS_BALANCE"), NOW)
    assert not credits.worth_trying(account, exhausted, enabled=True, now=NOW + credits.FAILED_PAUSE - 1)
    assert credits.worth_trying(account, exhausted, enabled=True, now=NOW + credits.FAILED_PAUSE)

    credits.served(account, MODEL, 7200.0, NOW)
    assert account.credits_failed_at is None and credits.serving(account, NOW + 7199) == {MODEL: NOW + 7200}
    assert credits.serving(account, NOW + 7200) == {}
    credits.served(account, OPUS, None, NOW)
    assert credits.serving(account, NOW)[OPUS] == NOW + credits.SERVING_UNKNOWN


def test_credits_go_at_the_top_of_the_envelope() -> None:
    body = {"project": "p", "model": MODEL, "request": {"contents": []}}
    assert credits.with_credits(body) == {**body, "enabledCreditTypes": ["GOOGLE_ONE_AI"]}
    assert "enabledCreditTypes" not in body


def test_the_setting_is_off_unless_switched_on() -> None:
    assert Settings.from_env({}).ai_credits is False and Settings().ai_credits is False
    assert Settings.from_env({"GATEWAY_AI_CREDITS": "on"}).ai_credits is True
    assert Settings.from_env({"GATEWAY_AI_CREDITS": "off"}).ai_credits is False
    with pytest.raises(ConfigError, match="GATEWAY_AI_CREDITS"):
        Settings.from_env({"GATEWAY_AI_CREDITS": "sometimes"})


# -- through the gateway --------------------------------------------------------------------------------


def test_an_exhausted_account_serves_from_its_credits_when_allowed(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "5h", 0, in_hours(3))
    fake.set_credits("alice@example.com", True)
    with running(fake, trio_file, account_strategy="sticky", ai_credits=True) as (url, _):
        assert post(url, ask("paid")).status_code == 200
        assert post(url, ask("paid again", stream=True)).status_code == 200
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
        fake.set_quota_window("alice@example.com", "claude", "5h", 1.0, in_hours(5))  # the window reset
        assert post(url, ask("free again")).status_code == 200
        after = requests.get(f"{url}/account-limits", timeout=10).json()
    assert calls(fake) == [("alice", 429, False), ("alice", 200, True), ("alice", 429, False), ("alice", 200, True),
                           ("alice", 200, False)]
    assert fake.credits_left("alice@example.com") == 25_000 - 2 * 50
    alice = report["accounts"][0]
    assert report["aiCredits"] is True and alice["servingFromCredits"] is True and alice["status"] == "ok"
    assert list(alice["aiCredits"]["serving"]) == [MODEL]
    assert 3 * 3600 - 100 < alice["aiCredits"]["serving"][MODEL]["inSeconds"] <= 3 * 3600
    assert alice["modelRateLimits"] == {} and not report["accounts"][1]["servingFromCredits"]
    assert f"serving {MODEL} from AI credits (its quota resets in" in table
    model_row = next(line for line in table.splitlines() if line.startswith(MODEL + " "))
    assert model_row.split()[1] == "credits"
    assert after["accounts"][0]["servingFromCredits"] is False


def test_credits_are_off_by_default_and_never_for_a_short_rate_limit(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "5h", 0, in_hours(3))
    fake.set_credits("alice@example.com", True)
    fake.set_credits("bob@example.com", True)
    fake.enqueue(Reply.error(429), email="bob@example.com")  # RATE_LIMIT_EXCEEDED
    with running(fake, trio_file, account_strategy="sticky") as (url, _):
        assert post(url, ask()).status_code == 200
        assert requests.get(f"{url}/account-limits", timeout=10).json()["aiCredits"] is False
    with running(fake, trio_file, account_strategy="sticky", ai_credits=True) as (url, _):
        assert post(url, ask(model=OPUS)).status_code == 200  # alice is out of quota on it: credits
        fake.set_quota_window("alice@example.com", "claude", "5h", 1.0, in_hours(5))
        fake.enqueue(Reply.error(429), email="alice@example.com")
        assert post(url, ask(model=OPUS)).status_code == 200  # a short limit: credits would not lift it
    assert calls(fake) == [("alice", 429, False), ("bob", 429, False), ("carol", 200, False),
                           ("alice", 429, False), ("alice", 200, True), ("alice", 429, False), ("bob", 200, False)]
    assert fake.credits_left("alice@example.com") == 25_000 - 50


def test_credits_that_fail_are_not_tried_again_for_a_while(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "5h", 0, in_hours(3))  # and no credits
    with running(fake, trio_file, account_strategy="round-robin", ai_credits=True) as (url, _):
        assert post(url, ask()).status_code == 200
        assert post(url, ask(model=OPUS)).status_code == 200  # alice again first: round-robin after bob is carol
        assert post(url, ask(model=OPUS)).status_code == 200
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
    assert calls(fake) == [("alice", 429, False), ("alice", 429, True), ("bob", 200, False),
                           ("carol", 200, False), ("alice", 429, False), ("bob", 200, False)]
    state = report["accounts"][0]["aiCredits"]
    assert state["failedAt"].endswith("Z") and "credit balance" in state["error"]
    assert 3500 < state["retryInSeconds"] <= 3600 and state["serving"] == {}
    assert report["accounts"][0]["servingFromCredits"] is False
    assert 3 * 3600 - 100 < report["accounts"][0]["modelRateLimits"][MODEL]["waitSeconds"]  # the quota's reset
    assert "AI credits failed: Your Google One AI credit balance is too low for this request. (not tried again" in table
