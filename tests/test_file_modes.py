"""Files the gateway makes are 0600 and its directories 0700, whatever the umask it runs with."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gateway.accounts.store import update_accounts_file, write_accounts_file
from gateway.state import SQLiteStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def umask(request) -> Iterator[int]:  # noqa: ANN001
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def test_accounts_file_its_lock_and_new_directories(tmp_path, umask) -> None:
    path = tmp_path / "operator" / "named" / "accounts.json"
    write_accounts_file(path, {"accounts": []})
    update_accounts_file(path, lambda data: data["accounts"].append({"email": "a@example.com"}))
    assert mode(path) == 0o600
    assert mode(path.with_name("accounts.json.lock")) == 0o600
    assert mode(tmp_path / "operator") == 0o700 and mode(tmp_path / "operator" / "named") == 0o700
    assert mode(tmp_path) == stat.S_IMODE(tmp_path.stat().st_mode)  # a directory that existed is left alone


def test_shared_state_sqlite_files(tmp_path, umask) -> None:
    path = tmp_path / "state" / "signatures.sqlite3"
    store = SQLiteStore(path)
    store.put("k", {"v": 1}, 60)
    assert store.get("k") == {"v": 1}
    made = sorted(p.name for p in path.parent.iterdir())
    assert made == ["signatures.sqlite3", "signatures.sqlite3-shm", "signatures.sqlite3-wal"]
    assert {p.name: mode(p) for p in path.parent.iterdir()} == dict.fromkeys(made, 0o600)
    assert mode(path.parent) == 0o700


def test_an_existing_lock_or_database_is_made_private(tmp_path, umask) -> None:
    lock = tmp_path / "accounts.json.lock"
    lock.touch()
    lock.chmod(0o644)
    database = tmp_path / "cache.sqlite3"
    database.touch()
    database.chmod(0o666)
    update_accounts_file(tmp_path / "accounts.json", lambda data: None)
    SQLiteStore(database).put("k", 1, 1)
    assert mode(lock) == 0o600 and mode(database) == 0o600


def test_under_gunicorn_with_umask_000_every_file_is_private(fake, accounts_file, tmp_path) -> None:
    """The metrics files (prometheus_client's) and the shared state, in directories the operator names."""
    from tests.test_gunicorn import free_port, start_gunicorn, upstream_env, wait_healthy

    metrics, state = tmp_path / "ops" / "metrics", tmp_path / "ops" / "state"
    env = {**upstream_env(fake, accounts_file), "PROMETHEUS_MULTIPROC_DIR": str(metrics),
           "GATEWAY_SHARED_STATE_DIR": str(state)}
    port = free_port()
    previous = os.umask(0)
    try:
        process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", "1")
    finally:
        os.umask(previous)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(url)
        for model in ("claude-sonnet-4-6", "gemini-3-flash-agent"):
            answer = requests.post(f"{url}/v1/chat/completions", timeout=10, json={
                "model": model, "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 200
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    files = [p for directory in (metrics, state) if directory.exists() for p in directory.iterdir()]
    assert any(p.suffix == ".db" for p in files)  # the metrics files were made
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert mode(metrics) == 0o700 and mode(tmp_path / "ops") == 0o700
