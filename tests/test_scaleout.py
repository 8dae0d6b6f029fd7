"""Several gateway instances (separate gunicorn masters) on one Redis behave as one gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import openai
import redis
import requests

from gateway.accounts.store import EnvSource, SharedSource, account_entries
from gateway.state import MemoryStore
from tests.conftest import REFRESH_TOKEN, ROOT, write_accounts
from tests.fake_cloudcode import FakeCloudCode, Reply
from tests.test_gunicorn import gunicorn_instance, upstream_env
from tests.test_openai_api import WEATHER, replay

BOB = "1//refresh-bob"
ASK = {"model": "gemini-3-flash-agent", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def two_accounts(fake: FakeCloudCode) -> list[dict]:
    fake.add_account("bob@example.com", refresh_token=BOB, project_id="proj-bob")
    return [{"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"},
            {"email": "bob@example.com", "refreshToken": BOB, "projectId": "proj-bob"}]


instance = gunicorn_instance  # each with its own master, workers and local state directory


@contextmanager
def instances(env: dict[str, str], count: int = 2) -> Iterator[list[str]]:
    with ExitStack() as stack:
        yield [stack.enter_context(instance(env)) for _ in range(count)]


def post(url: str, body: dict = ASK) -> requests.Response:
    return requests.post(f"{url}/v1/messages", json=body, headers={"Connection": "close"}, timeout=20)


def test_a_429_through_one_instance_keeps_the_other_off_that_account_and_model(fake, tmp_path, redis_db) -> None:
    accounts = write_accounts(tmp_path / "accounts.json", two_accounts(fake))
    env = {**upstream_env(fake, accounts), "GATEWAY_REDIS_URL": redis_db, "GATEWAY_ACCOUNT_STRATEGY": "sticky"}
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s"), email="alice@example.com")
    with instances(env) as (first, second):
        assert post(first).status_code == 200  # alice's 429, then bob
        for _ in range(6):
            assert post(second).status_code == 200
            assert post(first).status_code == 200
    served = [(r.email, r.body["model"]) for r in fake.generate_requests()]
    assert served.count(("alice@example.com", "gemini-3-flash-agent")) == 1
    assert served.count(("bob@example.com", "gemini-3-flash-agent")) == 13
    # Only that account and model is held back.
    keys = sorted(key.decode() for key in redis.Redis.from_url(redis_db).scan_iter("gateway:cooldown:*"))
    assert keys == ["gateway:cooldown:alice@example.com:gemini-3-flash-agent"]


def test_a_claude_thinking_tool_loop_with_its_turns_on_different_instances(fake, accounts_file, redis_db) -> None:
    """OpenAI clients drop the signed thinking; the instance that kept it is not the one that gets the next turn."""
    env = {**upstream_env(fake, accounts_file), "GATEWAY_REDIS_URL": redis_db}
    ask = dict(model="claude-opus-4-6-thinking", tools=[WEATHER], reasoning_effort="low")
    with instances(env) as (first, second):
        for n, (one, other) in enumerate([(first, second), (second, first), (first, second)]):
            fake.enqueue(Reply(thinking=f"Call the tool, turn {n}.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                         Reply(thinking="Done.", text="Snow."))
            history: list[dict] = [{"role": "user", "content": f"Weather in Oslo? ({n})"}]
            with openai.OpenAI(base_url=f"{one}/v1", api_key="k", max_retries=0) as client:
                message = client.chat.completions.create(messages=history, **ask).choices[0].message
            history += [replay(message), {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "snow"}]
            with openai.OpenAI(base_url=f"{other}/v1", api_key="k", max_retries=0) as client:
                assert client.chat.completions.create(messages=history, **ask).choices[0].message.content == "Snow."
            replayed = fake.generate_requests()[-1]
            parts = replayed.body["request"]["contents"][1]["parts"]
            assert replayed.status == 200 and parts[0].get("thought") is True
            assert parts[0]["text"] == f"Call the tool, turn {n}."


def test_one_token_refresh_per_account_under_load_on_both_instances(fake, tmp_path, redis_db) -> None:
    accounts = write_accounts(tmp_path / "accounts.json", two_accounts(fake))
    env = {**upstream_env(fake, accounts), "GATEWAY_REDIS_URL": redis_db, "GATEWAY_ACCOUNT_STRATEGY": "round-robin"}
    fake.event_delay = 0.0
    with instances(env) as urls, ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda n: post(urls[n % 2]).status_code, range(48)))
    assert answers == [200] * 48
    served = {r.email for r in fake.generate_requests()}
    assert served == {"alice@example.com", "bob@example.com"}
    # Four worker processes in two instances, each with both accounts: one refresh per account in all.
    assert (fake.refresh_count(REFRESH_TOKEN), fake.refresh_count(BOB)) == (1, 1)


def test_accounts_only_from_the_environment_with_no_writable_home(fake, tmp_path, redis_db) -> None:
    """A PaaS dyno: no accounts file, no writable disk; what the gateway learns goes to Redis and is kept."""
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    fake.add_account("carol@example.com", refresh_token="1//refresh-carol", project_id=None)  # to be onboarded
    value = json.dumps({"accounts": [{"email": "carol@example.com", "refreshToken": "1//refresh-carol"}]})
    env = {**upstream_env(fake, tmp_path / "nowhere" / "accounts.json"), "HOME": str(home),
           "GATEWAY_ACCOUNTS_JSON": value, "GATEWAY_REDIS_URL": redis_db}
    with instance(env) as url:
        assert post(url).status_code == 200
    onboarded = [r for r in fake.requests if r.method == "loadCodeAssist"]
    assert len(onboarded) == 1
    # The project id went to Redis; the next instance starts with it and does not ask again.
    store = redis.Redis.from_url(redis_db)
    for _ in range(50):
        if store.get("gateway:account:carol@example.com"):
            break
        time.sleep(0.1)
    overrides = json.loads(store.get("gateway:account:carol@example.com"))
    assert overrides["projectId"].startswith("onboarded-") and "refreshToken" not in overrides
    with instance(env) as url:
        assert post(url).status_code == 200
    assert len([r for r in fake.requests if r.method == "loadCodeAssist"]) == 1
    assert not (tmp_path / "nowhere").exists() and list(home.iterdir()) == []


def test_redis_stopped_and_started_mid_run(fake, accounts_file, own_redis) -> None:
    env = {**upstream_env(fake, accounts_file), "GATEWAY_REDIS_URL": own_redis.url}
    with instance(env) as url:
        assert post(url).status_code == 200
        assert requests.get(f"{url}/health", timeout=5).json()["redis"] == "reachable"
        own_redis.stop()
        for _ in range(5):
            assert post(url).status_code == 200
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["status"] == "ok" and health["redis"] == "unreachable" and "local state" in health["redisError"]
        own_redis.start()
        deadline = time.monotonic() + 15
        while requests.get(f"{url}/health", timeout=5).json()["redis"] != "reachable":
            assert time.monotonic() < deadline, "sharing did not resume"
            time.sleep(0.5)
        assert post(url).status_code == 200


def test_env_accounts_keep_what_is_learned_as_overrides() -> None:
    state = MemoryStore()
    value = json.dumps({"accounts": [{"email": "a@x.org", "refreshToken": "1//secret", "enabled": True}]})
    source = SharedSource(EnvSource(value), state)
    source.update_entry("a@x.org", {"projectId": "p-1", "isInvalid": True})
    assert state.get("account:a@x.org") == {"projectId": "p-1", "isInvalid": True}
    [entry] = account_entries(SharedSource(EnvSource(value), state).read())  # another process
    assert entry == {"email": "a@x.org", "refreshToken": "1//secret", "enabled": True, "projectId": "p-1",
                     "isInvalid": True}


def test_accounts_export_prints_the_variable(tmp_path) -> None:
    accounts = write_accounts(tmp_path / "accounts.json", [
        {"email": "a@x.org", "refreshToken": "1//a", "projectId": "p", "isInvalid": False,
         "modelRateLimits": {}}])
    out = subprocess.run([sys.executable, "-m", "gateway", "accounts", "export"], cwd=ROOT, capture_output=True,
                         text=True, env={"GATEWAY_ACCOUNTS_FILE": str(accounts), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.count("\n") == 1
    assert json.loads(out.stdout) == {"accounts": [{"email": "a@x.org", "refreshToken": "1//a", "projectId": "p"}]}


def test_the_cli_changes_env_accounts_through_the_shared_state(tmp_path, redis_db) -> None:
    value = json.dumps({"accounts": [{"email": "a@x.org", "refreshToken": "1//a"}]})
    env = {"GATEWAY_ACCOUNTS_JSON": value, "GATEWAY_REDIS_URL": redis_db, "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "gateway", "accounts", "disable", "a@x.org"], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    assert json.loads(redis.Redis.from_url(redis_db).get("gateway:account:a@x.org")) == {"enabled": False}
    listed = subprocess.run([sys.executable, "-m", "gateway", "accounts", "list", "--offline"], cwd=ROOT, env=env,
                            check=True, capture_output=True, text=True).stdout
    assert "GATEWAY_ACCOUNTS_JSON" in listed and "disabled" in listed
    added = subprocess.run([sys.executable, "-m", "gateway", "accounts", "add", "--no-browser"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert added.returncode == 1 and "accounts export" in added.stderr


def test_an_account_mark_reaches_every_instance_each_with_its_own_accounts_file(fake, tmp_path, redis_db) -> None:
    """Two machines, each with its own copy of the accounts file: Google bans alice through one, and the other
    stops using her too; `accounts enable` (with the same Redis) lifts it for both."""
    files = [write_accounts(tmp_path / f"machine{n}.json", two_accounts(fake) if n == 0 else
                            json.loads((tmp_path / "machine0.json").read_text())["accounts"]) for n in range(2)]
    fake.suspend("alice@example.com")
    common = {"GATEWAY_REDIS_URL": redis_db, "GATEWAY_ACCOUNT_STRATEGY": "sticky"}
    with instance({**upstream_env(fake, files[0]), **common}) as first, \
            instance({**upstream_env(fake, files[1]), **common}) as second:
        assert post(first).status_code == 200  # alice refused (banned), bob served
        deadline = time.monotonic() + 10  # each instance looks at the accounts' shared overrides every second
        while not requests.get(f"{second}/health", timeout=5).json().get("suspended"):
            assert time.monotonic() < deadline, "the second instance did not learn of the suspension"
            time.sleep(0.2)
        for _ in range(4):
            assert post(second).status_code == 200
        served = [(r.email, r.status) for r in fake.generate_requests()]
        assert served.count(("alice@example.com", 403)) == 1 and len(served) == 6
        assert "isSuspended" not in json.loads(files[1].read_text())["accounts"][0]  # learned from Redis
        fake.suspend("alice@example.com", False)
        enable = subprocess.run([sys.executable, "-m", "gateway", "accounts", "enable", "alice@example.com"],
                                cwd=ROOT, capture_output=True, text=True,
                                env={**upstream_env(fake, files[1]), **common})
        assert enable.returncode == 0, enable.stderr
        deadline = time.monotonic() + 10
        while requests.get(f"{first}/health", timeout=5).json().get("suspended"):
            assert time.monotonic() < deadline, "the first instance did not see the suspension lifted"
            time.sleep(0.2)
