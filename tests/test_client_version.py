"""The Antigravity version the gateway reports: its policy on a fake clock, then the gateway against the fake's
version gate (raised while it runs) and its copy of the updater's manifest."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import pytest
import requests

from gateway.upstream import version as version_module
from gateway.state import SQLiteStore
from gateway.upstream.version import (
    FETCH_TIMEOUT,
    FLOOR,
    REFRESH_INTERVAL,
    REFUSAL_INTERVAL,
    RETRY_INTERVAL,
    ClientVersion,
    manifest_version,
)
from tests.conftest import REFRESH_TOKEN, GatewayServer, gateway_settings, serve, write_accounts
from tests.fake_cloudcode import FakeCloudCode, client_version

ASK = dict(model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
REFUSED = "refuses client version"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Manifest:
    """A fetch function: the manifest's version, or the failure it raises; counts its reads."""

    def __init__(self, version: str = "2.11.3") -> None:
        self.version = version
        self.failure: Exception | None = None
        self.reads = 0

    def __call__(self) -> str:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        return self.version


class Spawned(list):
    """A spawn function that keeps the work instead of running it, so a test decides when it runs."""

    def __call__(self, work: Callable[[], None]) -> None:
        self.append(work)

    def run(self) -> None:
        while self:
            self.pop(0)()


def policy(manifest: Manifest, **options) -> tuple[ClientVersion, Clock, Spawned]:
    clock, spawned = Clock(), Spawned()
    return ClientVersion(manifest, clock=clock, spawn=spawned, **options), clock, spawned


# -- the policy ------------------------------------------------------------------------------------


def test_the_floor_until_the_background_read_then_the_manifests_version() -> None:
    manifest = Manifest("2.11.3")
    version, _, spawned = policy(manifest)
    version.start()
    assert version.current() == FLOOR and manifest.reads == 0  # start() did not wait for the read
    assert len(spawned) == 1  # and asking again did not start a second one
    spawned.run()
    assert version.current() == "2.11.3" and manifest.reads == 1


def test_never_below_the_floor() -> None:
    version, _, spawned = policy(Manifest("2.5.0"))
    version.start()
    spawned.run()
    assert version.current() == FLOOR


def test_a_pin_is_reported_as_is_and_nothing_is_read(caplog) -> None:
    manifest = Manifest("2.11.3")
    version, _, spawned = policy(manifest, pinned="2.10.0")
    version.start()
    version.refresh()
    assert version.current() == "2.10.0"
    assert version.after_refusal("2.10.0") is None and version.after_refusal("2.10.0") is None
    assert manifest.reads == 0 and not spawned
    assert caplog.text.count(REFUSED) == 1 and "GATEWAY_CLIENT_VERSION pins" in caplog.text


def test_without_start_only_a_refusal_reads_the_manifest() -> None:
    manifest = Manifest("3.0.2")
    version, clock, spawned = policy(manifest)
    clock.now += 10 * REFRESH_INTERVAL
    assert version.current() == FLOOR and not spawned
    assert version.after_refusal(FLOOR) == "3.0.2" and manifest.reads == 1


def test_read_again_after_the_refresh_interval() -> None:
    manifest = Manifest("2.11.3")
    version, clock, spawned = policy(manifest)
    version.start()
    spawned.run()
    manifest.version = "2.12.0"
    clock.now += REFRESH_INTERVAL - 1
    assert version.current() == "2.11.3" and not spawned
    clock.now += 1
    assert version.current() == "2.11.3"  # the read runs in the background; this request does not wait
    version.current()
    assert len(spawned) == 1
    spawned.run()
    assert version.current() == "2.12.0" and manifest.reads == 2


def test_a_failed_read_keeps_the_last_good_version_and_is_retried_later(caplog) -> None:
    manifest = Manifest("2.11.3")
    version, clock, spawned = policy(manifest)
    version.start()
    spawned.run()
    manifest.failure = requests.ConnectionError("no route")
    clock.now += REFRESH_INTERVAL
    version.current()
    spawned.run()
    assert version.current() == "2.11.3" and manifest.reads == 2
    assert "could not read the Antigravity version" in caplog.text and "reporting 2.11.3" in caplog.text
    clock.now += RETRY_INTERVAL - 1
    version.current()
    assert not spawned
    manifest.failure = None
    manifest.version = "2.12.0"
    clock.now += 1
    version.current()
    spawned.run()
    assert version.current() == "2.12.0" and manifest.reads == 3


@pytest.mark.parametrize("answer", ["latest", "", "2.11.3; rm -rf /"])
def test_a_manifest_version_that_is_not_a_version_counts_as_a_failed_read(answer: str) -> None:
    version, _, spawned = policy(Manifest(answer))
    version.start()
    spawned.run()
    assert version.current() == FLOOR


def test_manifest_version_reads_the_top_level_key_only() -> None:
    text = ("files:\n  - url: Antigravity-9.9.9-arm64-mac.zip\n    version: 9.9.9\n"
            "version: '2.11.3'  # the release\npath: Antigravity-2.11.3-arm64-mac.zip\n")
    assert manifest_version(text) == "2.11.3"
    with pytest.raises(ValueError, match="no version"):
        manifest_version("files:\n  version: 1.2.3\n")
    with pytest.raises(ValueError, match="not a version"):
        manifest_version("version: soon\n")


def test_a_refusal_reads_the_manifest_at_once_and_offers_its_newer_version() -> None:
    manifest = Manifest("2.11.3")
    version, _, spawned = policy(manifest)
    version.start()
    spawned.run()
    manifest.version = "3.0.2"
    assert version.after_refusal("2.11.3") == "3.0.2"
    assert version.current() == "3.0.2" and manifest.reads == 2
    # A request still in flight with the old version learns the new one without another read.
    assert version.after_refusal("2.11.3") == "3.0.2" and manifest.reads == 2


def test_a_refusal_with_nothing_newer_is_logged_once_and_reads_at_most_every_interval(caplog) -> None:
    manifest = Manifest("2.11.3")
    version, clock, spawned = policy(manifest, source="http://updater/latest.yml")
    version.start()
    spawned.run()
    for _ in range(3):
        assert version.after_refusal("2.11.3") is None
        clock.now += 1
    assert manifest.reads == 2
    [record] = [r for r in caplog.records if REFUSED in r.getMessage()]
    assert record.levelno == logging.ERROR and "http://updater/latest.yml" in record.getMessage()
    clock.now += REFUSAL_INTERVAL
    assert version.after_refusal("2.11.3") is None
    assert manifest.reads == 3 and caplog.text.count(REFUSED) == 1


def test_concurrent_refusals_wait_for_one_read() -> None:
    reading, release = threading.Event(), threading.Event()
    reads = []

    def slow_manifest() -> str:
        reads.append(1)
        reading.set()
        assert release.wait(5)
        return "3.0.2"

    version = ClientVersion(slow_manifest, clock=Clock(), spawn=Spawned())
    answers: list[str | None] = []
    threads = [threading.Thread(target=lambda: answers.append(version.after_refusal(FLOOR))) for _ in range(4)]
    threads[0].start()
    assert reading.wait(5)
    for thread in threads[1:]:
        thread.start()
    threads[1].join(0.05)  # time for the others to reach the read in flight; they must wait for it
    assert threads[1].is_alive() and not answers
    release.set()
    for thread in threads:
        thread.join(5)
    assert answers == ["3.0.2"] * 4 and len(reads) == 1


def test_workers_share_what_one_of_them_read(tmp_path: Path) -> None:
    first_manifest, second_manifest = Manifest("2.11.3"), Manifest("2.11.3")
    clock = Clock()
    first = ClientVersion(first_manifest, store=SQLiteStore(tmp_path / "s.sqlite3"), clock=clock, spawn=Spawned())
    second = ClientVersion(second_manifest, store=SQLiteStore(tmp_path / "s.sqlite3"), clock=clock, spawn=Spawned())
    first.refresh()
    second.refresh()
    assert second.current() == "2.11.3" and second_manifest.reads == 0
    # One worker's refusal teaches the other the new version: its own refusal then needs no read.
    first_manifest.version = second_manifest.version = "3.0.2"
    assert first.after_refusal("2.11.3") == "3.0.2"
    assert second.after_refusal("2.11.3") == "3.0.2" and second_manifest.reads == 0


def test_fetch_manifest_version_reads_the_fakes_manifest(fake: FakeCloudCode) -> None:
    fake.manifest_version = "2.12.7"
    assert version_module.fetch_manifest_version(f"{fake.base_url}/manifest/latest-arm64-mac.yml") == "2.12.7"


# -- the gateway -----------------------------------------------------------------------------------


def wait_for_version(server: GatewayServer | object, expected: str) -> None:
    """Until the gateway's background read of the manifest has landed."""
    gateway = server.gateway if isinstance(server, GatewayServer) else server.extensions["gateway"]
    deadline = time.monotonic() + 5
    while gateway.version.current() != expected:
        assert time.monotonic() < deadline, f"the gateway still reports {gateway.version.current()}"
        time.sleep(0.01)


def sent(fake: FakeCloudCode, method: str, since: int = 0) -> list[tuple[str | None, int | None]]:
    """The version and the answer's status of every ``method`` call the fake received."""
    return [(client_version(r.headers.get("user-agent", "")), r.status)
            for r in fake.requests[since:] if r.method == method]


def manifest_reads(fake: FakeCloudCode) -> int:
    return sum(1 for r in fake.requests if r.method == "manifest")


def test_the_gateway_reports_the_manifests_version(gateway: GatewayServer, fake: FakeCloudCode) -> None:
    wait_for_version(gateway, "2.11.3")
    response = requests.post(f"{gateway.url}/v1/messages", json=ASK, timeout=10)
    assert response.status_code == 200
    call = fake.generate_requests()[-1]
    assert call.headers["user-agent"].startswith("antigravity/2.11.3 ")
    assert call.headers["x-client-version"] == "2.11.3" and call.headers["x-client-name"] == "antigravity"
    assert manifest_reads(fake) == 1


def test_a_gate_raised_mid_run_is_passed_with_the_manifests_new_version(
    gateway: GatewayServer, client: anthropic.Anthropic, fake: FakeCloudCode
) -> None:
    wait_for_version(gateway, "2.11.3")
    client.messages.create(**ASK)  # the model listing is fetched now, so the next refusal meets a generate call
    fake.min_client_version, fake.manifest_version = "3.0.0", "3.0.2"
    since = len(fake.requests)
    message = client.messages.create(**ASK)
    assert message.content[0].text == "Echo: hi"
    assert sent(fake, "streamGenerateContent", since) == [("2.11.3", 400), ("3.0.2", 200)]
    assert fake.generate_requests()[-1].headers["x-client-version"] == "3.0.2"
    # The refusal was nobody's fault: the account is neither cooled down nor marked bad.
    [account] = gateway.gateway.pool.accounts
    assert account.usable() and not account.active_cooldowns(time.time())
    since = len(fake.requests)
    client.messages.create(**ASK)
    assert sent(fake, "streamGenerateContent", since) == [("3.0.2", 200)]


def test_a_refused_model_listing_reads_the_manifest_again(gateway: GatewayServer, fake: FakeCloudCode) -> None:
    wait_for_version(gateway, "2.11.3")
    fake.min_client_version, fake.manifest_version = "3.0.0", "3.0.2"
    report = requests.get(f"{gateway.url}/account-limits", timeout=10).json()
    assert report["accounts"][0]["status"] == "ok" and report["models"]
    assert sent(fake, "fetchAvailableModels") == [("2.11.3", 400), ("3.0.2", 200)]


@pytest.fixture
def two_accounts(fake: FakeCloudCode, tmp_path: Path) -> Path:
    fake.add_account("bob@example.com", refresh_token="1//refresh-bob", project_id="proj-bob")
    return write_accounts(tmp_path / "accounts.json", [
        {"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"},
        {"email": "bob@example.com", "refreshToken": "1//refresh-bob", "projectId": "proj-bob"},
    ])


def test_a_gate_no_manifest_clears_is_a_502_naming_both_variables(
    fake: FakeCloudCode, two_accounts: Path, caplog
) -> None:
    url, app, server = serve(gateway_settings(fake, two_accounts))
    try:
        wait_for_version(app, "2.11.3")
        fake.min_client_version = "3.0.0"
        anthropic_answers = [requests.post(f"{url}/v1/messages", json={**ASK, **extra}, timeout=10)
                             for extra in ({}, {"stream": True})]
        openai_answer = requests.post(f"{url}/v1/chat/completions", timeout=10, json={
            "model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]})
        for response in anthropic_answers:
            assert response.status_code == 502
            body = response.json()
            assert body["type"] == "error" and body["error"]["type"] == "api_error"
            assert_names_the_way_out(body["error"]["message"])
        assert openai_answer.status_code == 502
        error = openai_answer.json()["error"]
        assert error["type"] == "server_error"
        assert_names_the_way_out(error["message"])
        # One refused call per request: no other account tried, no endpoint retried; one extra manifest read.
        assert sent(fake, "streamGenerateContent") == [("2.11.3", 400)] * 3
        assert manifest_reads(fake) == 2
        assert [r.levelno for r in caplog.records if REFUSED in r.getMessage()] == [logging.ERROR]
        health = requests.get(f"{url}/health", timeout=5).json()
        assert health["activeAccounts"] == 2
        assert all(not a.active_cooldowns(time.time()) for a in app.extensions["gateway"].pool.accounts)
    finally:
        server.shutdown()


def assert_names_the_way_out(message: str) -> None:
    assert "Google refuses client version 2.11.3" in message
    assert "GATEWAY_CLIENT_VERSION " in message and "GATEWAY_CLIENT_VERSION_URL" in message


def test_a_manifest_that_never_answers_does_not_slow_the_start(fake: FakeCloudCode, accounts_file: Path) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # connections are made, and never answered
    silent.settimeout(5)
    try:
        started = time.monotonic()
        manifest = f"http://127.0.0.1:{silent.getsockname()[1]}/latest-arm64-mac.yml"
        url, _, server = serve(gateway_settings(fake, accounts_file, client_version_url=manifest))
        try:
            # A model Google serves only from 2.9.0 on: the floor is enough for it.
            response = requests.post(f"{url}/v1/messages", json={**ASK, "model": "gemini-3.8-flash-tiered"},
                                     timeout=10)
            assert response.status_code == 200
            assert time.monotonic() - started < FETCH_TIMEOUT[1] / 2
            assert sent(fake, "streamGenerateContent") == [(FLOOR, 200)]
            connection, _ = silent.accept()  # the read had started, and was still waiting
            connection.close()
        finally:
            server.shutdown()
    finally:
        silent.close()


def test_gunicorn_workers_report_the_manifests_version_and_pass_a_raised_gate(
    fake: FakeCloudCode, accounts_file: Path
) -> None:
    from tests.test_gunicorn import free_port, start_gunicorn, upstream_env, wait_healthy

    port = free_port()
    process = start_gunicorn(upstream_env(fake, accounts_file), f"127.0.0.1:{port}", "-w", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(url)
        deadline = time.monotonic() + 10
        while sent(fake, "streamGenerateContent")[-1:] != [("2.11.3", 200)]:
            assert time.monotonic() < deadline, sent(fake, "streamGenerateContent")
            assert requests.post(f"{url}/v1/messages", json=ASK, timeout=10).status_code == 200
        fake.min_client_version, fake.manifest_version = "3.0.0", "3.0.2"
        for _ in range(4):
            assert requests.post(f"{url}/v1/messages", json=ASK, timeout=10).status_code == 200
        assert sent(fake, "streamGenerateContent")[-1] == ("3.0.2", 200)
    finally:
        process.terminate()
        process.wait(timeout=15)
