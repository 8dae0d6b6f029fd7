"""The 5-hour and weekly quota windows (retrieveUserQuotaSummary): shown, weighed, and obeyed after a 429."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import requests

from gateway.accounts.limits import duration
from gateway.accounts.pool import (
    EXHAUSTED_WEIGHT,
    WEEKLY_EXHAUSTED_WEIGHT,
    Account,
    Quota,
    QuotaGroup,
    cooldown_seconds,
    parse_windows,
    window_kind,
)
from tests.conftest import EMAILS
from tests.test_account_limits import in_hours
from tests.test_accounts_cli import cli
from tests.test_accounts_pool import MODEL, ask, post, running

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).timestamp()
CLAUDE = "Claude and GPT-OSS"


def at(hours: float) -> str:
    return datetime.fromtimestamp(NOW + hours * 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def account(*groups: QuotaGroup, quotas: dict[str, Quota] | None = None) -> Account:
    return Account(email="a@example.com", tokens=None, session=None, windows=list(groups),  # type: ignore[arg-type]
                   quotas=quotas or {})


def claude(five_hour: Quota | None = None, weekly: Quota | None = None) -> QuotaGroup:
    return QuotaGroup(CLAUDE, (MODEL, "claude-opus-4-6-thinking"), five_hour, weekly)


# -- policy -----------------------------------------------------------------------------------------------


def test_parse_windows_reads_groups_their_models_and_both_windows() -> None:
    summary = {"groups": [
        {"displayName": CLAUDE, "modelIds": [MODEL], "buckets": [
            {"bucketId": "c-5h", "window": "18000s", "remainingFraction": 0.5, "resetTime": at(2)},
            {"bucketId": "c-w", "window": "604800s", "resetTime": at(50)}]},
        {"displayName": "Gemini", "models": [{"id": "gemini-pro-agent"}, {"modelId": "gemini-3.1-pro-low"}],
         "buckets": [{"window": "WEEKLY", "remainingFraction": 1}, {"window": "FIVE_HOURS", "remainingFraction": 0}]},
        {"displayName": "no models", "buckets": [{"window": "18000s"}]},
        {"displayName": "unknown window", "modelIds": ["x"], "buckets": [{"window": "DAILY"}]},
        "not a group",
    ]}
    first, second = parse_windows(summary)
    assert first == QuotaGroup(CLAUDE, (MODEL,), Quota(0.5, at(2)), Quota(None, at(50)))
    gemini = ("gemini-pro-agent", "gemini-3.1-pro-low")
    assert second == QuotaGroup("Gemini", gemini, Quota(None, None), Quota(1.0, None))
    assert parse_windows({}) == [] and parse_windows({"groups": None}) == []
    assert [window_kind(w) for w in ("18000s", "86400s", "604800s", "7D", "5h", None, "?")] == [
        "fiveHour", "fiveHour", "weekly", "weekly", "fiveHour", None, None]


def test_an_empty_weekly_window_weighs_least_and_holds_a_429_until_it_resets() -> None:
    empty_week = account(claude(Quota(1.0, at(5)), Quota(None, at(50))))
    assert empty_week.weekly_reset(MODEL, NOW) == NOW + 50 * 3600
    assert empty_week.quota_weight(MODEL, NOW) == WEEKLY_EXHAUSTED_WEIGHT
    assert cooldown_seconds(empty_week, MODEL, 60.0, NOW) == 50 * 3600
    assert empty_week.weekly_reset("gemini-pro-agent", NOW) is None  # another group
    assert cooldown_seconds(empty_week, "gemini-pro-agent", 60.0, NOW) == 60.0
    after = NOW + 51 * 3600  # the week turned: back to normal
    assert empty_week.weekly_reset(MODEL, after) is None and empty_week.quota_weight(MODEL, after) == 1.0
    assert cooldown_seconds(empty_week, MODEL, 60.0, after) == 60.0

    five_hour_out = account(claude(Quota(None, at(2)), Quota(0.6, at(50))))
    assert five_hour_out.quota_weight(MODEL, NOW) == EXHAUSTED_WEIGHT > WEEKLY_EXHAUSTED_WEIGHT
    assert cooldown_seconds(five_hour_out, MODEL, 7200.0, NOW) == 7200.0
    tightest = account(claude(Quota(0.9, at(2)), Quota(0.3, at(50))), quotas={MODEL: Quota(0.7, at(2))})
    assert tightest.quota_weight(MODEL, NOW) == 0.3
    assert account().quota_weight(MODEL, NOW) == 1.0 and account().weekly_reset(MODEL, NOW) is None
    assert Account(email="b", tokens=None, session=None).quota_weight(MODEL, NOW) == 1.0  # type: ignore[arg-type]


def test_durations_of_days_read_in_days() -> None:
    assert [duration(s) for s in (42, 725, 7200, 50 * 3600 + 600)] == ["42s", "12m5s", "2h0m", "2d2h"]


# -- through the gateway --------------------------------------------------------------------------------


def test_account_limits_shows_both_windows_of_every_account(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "weekly", 0, in_hours(50))
    fake.set_quota_window("bob@example.com", "claude", "5h", 0.3, in_hours(2))
    with running(fake, trio_file) as (url, _):
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
    alice, bob, _ = report["accounts"]
    [group] = [g for g in alice["quotaWindows"] if g["group"] == CLAUDE]
    assert MODEL in group["models"] and group["fiveHour"]["remainingFraction"] == 1.0
    weekly = group["weekly"]
    assert (weekly["remaining"], weekly["remainingFraction"]) == ("0%", None)
    assert weekly["resetTime"].endswith("Z") and 50 * 3600 - 100 < weekly["resetInSeconds"] <= 50 * 3600
    bob_claude = next(g for g in bob["quotaWindows"] if g["group"] == CLAUDE)
    assert bob_claude["fiveHour"]["remaining"] == "30%" and bob_claude["weekly"]["remaining"] == "100%"
    assert alice["status"] == "ok"

    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("Quota window"))
    columns = [header.index(name) for name in ("alice", "bob", "carol")]
    rows = {line[:columns[0]].strip(): line for line in lines[lines.index(header) + 2:] if "(" in line[:columns[0]]}
    assert f"{CLAUDE} (5 hours)" in rows and "Gemini Flash (weekly)" in rows
    assert re.match(r"0% \(wait (2d1h|2d2h)\)", rows[f"{CLAUDE} (weekly)"][columns[0]:])
    assert rows[f"{CLAUDE} (5 hours)"][columns[1]:].startswith("30% (")
    models = next(line for line in lines if line.startswith("Model "))
    model_row = next(line for line in lines if line.startswith(MODEL + " "))
    assert re.match(r"0% weekly \(wait (2d1h|2d2h)\)", model_row[models.index("alice"):])


def test_without_the_quota_summary_everything_works_as_before(fake, trio_file) -> None:
    fake.quota_summary = False  # 404, as on an upstream that predates it
    fake.inject("retrieveUserQuotaSummary", 503, times=1000)  # and failing, where it exists
    with running(fake, trio_file) as (url, _):
        report = requests.get(f"{url}/account-limits", timeout=10).json()
        table = requests.get(f"{url}/account-limits?format=table", timeout=10).text
        assert post(url, ask()).status_code == 200
    assert [a["status"] for a in report["accounts"]] == ["ok", "ok", "ok"]
    assert all(a["quotaWindows"] is None for a in report["accounts"]) and report["available"] == 3
    assert "Quota window" not in table and "Model " in table


def test_hybrid_leaves_an_account_with_an_empty_weekly_window_alone(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "weekly", 0, in_hours(50))
    with running(fake, trio_file) as (url, _):
        assert requests.get(f"{url}/account-limits", timeout=10).status_code == 200  # the gateway learns them
        for n in range(6):
            assert post(url, ask(f"conversation {n}")).status_code == 200
    assert "alice@example.com" not in [r.email for r in fake.generate_requests()]


def test_a_429_from_an_empty_weekly_window_cools_the_account_down_until_the_weekly_reset(fake, trio_file) -> None:
    """The 429 says nothing about when; without the windows the gateway would wait 60 s and ask again."""
    for email in EMAILS:
        fake.set_quota_window(email, "claude", "weekly", 0, in_hours(50))
    with running(fake, trio_file, max_wait=5.0) as (url, _):
        assert requests.get(f"{url}/account-limits", timeout=10).status_code == 200
        started = time.monotonic()
        response = post(url, ask())
        assert time.monotonic() - started < 2
        report = requests.get(f"{url}/account-limits", timeout=10).json()
    assert response.status_code == 429 and response.json()["error"]["type"] == "rate_limit_error"
    assert 50 * 3600 - 100 < int(response.headers["retry-after"]) <= 50 * 3600
    assert [r.status for r in fake.generate_requests()] == [429, 429, 429]
    for entry in report["accounts"]:
        assert entry["status"] == "rate-limited"
        assert entry["modelRateLimits"][MODEL]["waitSeconds"] > 49 * 3600


def test_accounts_list_shows_both_windows(fake, trio_file) -> None:
    fake.set_quota_window("alice@example.com", "claude", "weekly", 0, in_hours(50))
    fake.set_quota_window("carol@example.com", "gemini-pro", "5h", 0.25, in_hours(3))
    fake.revoke("1//refresh-bob")
    result = cli(fake, trio_file, "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("Quota window"))
    columns = [header.index(name) for name in ("alice", "bob", "carol")]
    rows = {line[:columns[0]].strip(): line for line in lines[lines.index(header) + 2:]}
    assert re.match(r"0% \(wait (2d1h|2d2h)\)", rows[f"{CLAUDE} (weekly)"][columns[0]:])
    assert rows[f"{CLAUDE} (weekly)"][columns[1]:].startswith("?")  # its token is rejected: no answer
    assert re.match(r"25% \((2h59m|3h0m)\)", rows["Gemini Pro (5 hours)"][columns[2]:])
    offline = cli(fake, trio_file, "list", "--offline")
    assert offline.returncode == 0 and "Quota window" not in offline.stdout
    assert [r.method for r in fake.requests].count("retrieveUserQuotaSummary") == 2  # bob never got that far
