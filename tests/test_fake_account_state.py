"""The fake's account state: quota windows, validation and suspension 403s, AI credits (docs/upstream.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.fake_cloudcode import TOS_BANNED
from tests.test_fake_cloudcode import (  # noqa: F401 - fixtures
    EMAIL,
    PROJECT,
    assert_invalid,
    assert_ok,
    client,
    error_of,
    fake,
    user,
)

URL = "https://accounts.google.com/signin/continue?sarp=1&continue=verify"
CREDITS = {"enabledCreditTypes": ["GOOGLE_ONE_AI"]}


def in_hours(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_quota_summary_has_a_group_per_model_line_with_two_windows(fake, client) -> None:
    reset = in_hours(2)
    fake.set_quota_window(EMAIL, "claude", "5h", 0.25, reset)
    fake.set_quota_window(EMAIL, "claude", "weekly", 0, in_hours(50))
    groups = client.post("retrieveUserQuotaSummary", {"project": PROJECT}).json()["groups"]
    claude = next(g for g in groups if "claude-sonnet-4-6" in g["modelIds"])
    assert set(claude) == {"displayName", "description", "modelIds", "buckets"}
    five, weekly = claude["buckets"]
    assert (five["window"], five["remainingFraction"], five["resetTime"]) == ("18000s", 0.25, reset)
    assert weekly["window"] == "604800s" and "remainingFraction" not in weekly  # proto3 leaves the zero out
    assert {b["bucketId"] for b in claude["buckets"]} == {"claude-5h", "claude-weekly"}
    covered = sorted(m for g in groups for m in g["modelIds"])
    assert covered == sorted(m for m in fake.models if not m.startswith("chat_"))
    flash = next(g for g in groups if "gemini-3-flash-agent" in g["modelIds"])
    assert all(b["remainingFraction"] == 1.0 and b["resetTime"] for b in flash["buckets"])
    assert_ok(client.post("retrieveUserQuotaSummary", {}))
    error_of(client.post("retrieveUserQuotaSummary", {"project": "someone-else"}), 403)
    assert_invalid(client.post("retrieveUserQuotaSummary", {"model": "x"}), 'Unknown name "model"')
    fake.quota_summary = False
    assert error_of(client.post("retrieveUserQuotaSummary", {}), 404)["status"] == "NOT_FOUND"


def test_an_empty_window_exhausts_its_models(fake, client) -> None:
    fake.set_quota_window(EMAIL, "gemini-flash", "5h", None, in_hours(2))
    error = error_of(client.generate([user("x")], "gemini-3-flash-agent"), 429)
    assert error["details"][0]["reason"] == "QUOTA_EXHAUSTED"
    assert 7100 < float(error["details"][1]["retryDelay"].rstrip("s")) <= 7200 and "reset after" in error["message"]
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6"))  # another group
    fake.set_quota_window(EMAIL, "gemini-flash", "5h", 0.5, in_hours(2))
    fake.set_quota_window(EMAIL, "gemini-flash", "weekly", 0, in_hours(90))
    weekly = error_of(client.generate([user("x")], "gemini-3.1-flash-lite"), 429)
    assert weekly["details"][0]["reason"] == "QUOTA_EXHAUSTED" and len(weekly["details"]) == 1  # no reset given
    fake.set_quota_window(EMAIL, "gemini-flash", "weekly", 0, in_hours(-1))  # reset already: serves again
    assert_ok(client.generate([user("x")], "gemini-3.1-flash-lite"))


def test_credits_serve_an_exhausted_model_when_the_envelope_enables_them(fake, client) -> None:
    fake.set_quota_window(EMAIL, "claude", "5h", 0, in_hours(1))
    assert error_of(client.generate([user("x")], "claude-sonnet-4-6", envelope=CREDITS), 429)["details"][0][
        "reason"] == "INSUFFICIENT_G1_CREDITS_BALANCE"
    fake.set_credits(EMAIL, 120)
    assert error_of(client.generate([user("x")], "claude-sonnet-4-6"), 429)["details"][0]["reason"] == "QUOTA_EXHAUSTED"
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6", envelope=CREDITS))
    assert_ok(client.generate([user("x")], "claude-sonnet-4-6", envelope=CREDITS))
    assert fake.credits_left(EMAIL) == 20
    error_of(client.generate([user("x")], "claude-sonnet-4-6", envelope=CREDITS), 429)
    assert_ok(client.generate([user("x")], "gemini-3-flash-agent", envelope=CREDITS))  # quota first: free
    assert fake.credits_left(EMAIL) == 20


@pytest.mark.parametrize("value, fragment", [
    (["GOOGLE_ONE"], "Invalid value at 'enabled_credit_types[0]'"),
    ([1], "Invalid value at 'enabled_credit_types[0]'"),
    ("GOOGLE_ONE_AI", "Invalid value at 'enabled_credit_types'"),
])
def test_credit_types_must_be_a_list_of_known_names(client, value, fragment) -> None:
    assert_invalid(client.generate([user("x")], envelope={"enabledCreditTypes": value}), fragment)


@pytest.mark.parametrize("detail", ["both", "metadata", "help"])
def test_validation_required_refuses_every_call(fake, client, detail) -> None:
    fake.require_validation(EMAIL, URL, detail=detail)
    for response in (client.generate([user("x")]), client.post("fetchAvailableModels", {}),
                     client.post("retrieveUserQuotaSummary", {}), client.post("countTokens", {"request": {}})):
        error = error_of(response, 403)
        assert error["status"] == "PERMISSION_DENIED" and error["details"][0]["reason"] == "VALIDATION_REQUIRED"
        metadata_url = error["details"][0]["metadata"].get("validation_url")
        links = [link["url"] for d in error["details"][1:] for link in d["links"]]
        assert (metadata_url, links) == {"both": (URL, [URL]), "metadata": (URL, []), "help": (None, [URL])}[detail]
    assert_ok(client.post("loadCodeAssist", {}))
    fake.clear_validation(EMAIL)
    assert_ok(client.generate([user("x")]))


def test_a_suspended_account_is_refused_with_googles_message(fake, client) -> None:
    fake.suspend(EMAIL)
    for response in (client.generate([user("x")]), client.post("fetchAvailableModels", {})):
        assert error_of(response, 403) == {"code": 403, "message": TOS_BANNED, "status": "PERMISSION_DENIED"}
    fake.suspend(EMAIL, False)
    assert_ok(client.generate([user("x")]))
