"""The state stores against one contract (memory, SQLite, a real Redis), and the failover while Redis is down."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from gateway.core.request import Thinking
from gateway.state import MemoryStore, SQLiteStore, StateStore, open_store
from gateway.state import redis as redis_state
from gateway.state.redis import FailoverStore, RedisStore
from gateway.translate.signatures import SignatureRegistry

SIG = "s" * 60


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path: Path) -> StateStore:
    if request.param == "memory":
        return MemoryStore()
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "state.sqlite3")
    return RedisStore(request.getfixturevalue("redis_db"))


def test_values_round_trip_as_json(store: StateStore) -> None:
    store.put("a", {"x": [1, 2.5, "three", None, True]})
    store.put("b", "text")
    assert store.get_many(["a", "missing", "b"]) == [{"x": [1, 2.5, "three", None, True]}, None, "text"]
    store.put("b", 7)
    assert store.get("b") == 7
    store.delete("b")
    assert store.get("b") is None
    assert store.get_many([]) == []


def test_values_expire(store: StateStore) -> None:
    store.put("short", 1, ttl=0.05)
    store.put("long", 2, ttl=60)
    store.put("forever", 3)
    time.sleep(0.1)
    assert store.get_many(["short", "long", "forever"]) == [None, 2, 3]


def test_a_lock_has_one_owner_until_released_or_lapsed(store: StateStore) -> None:
    assert store.try_lock("lock", "one", ttl=60)
    assert not store.try_lock("lock", "two", ttl=60)
    store.unlock("lock", "two")  # not the owner: nothing happens
    assert not store.try_lock("lock", "two", ttl=60)
    store.unlock("lock", "one")
    assert store.try_lock("lock", "two", ttl=0.05)
    time.sleep(0.1)
    assert store.try_lock("lock", "three", ttl=60)


def test_two_sqlite_stores_on_one_file_share_state(tmp_path: Path) -> None:
    """Two gunicorn workers of one machine."""
    first, second = SQLiteStore(tmp_path / "s.sqlite3"), SQLiteStore(tmp_path / "s.sqlite3")
    first.put("k", "v", ttl=60)
    assert second.get("k") == "v"
    assert (tmp_path / "s.sqlite3").stat().st_mode & 0o777 == 0o600


def test_two_registries_on_one_directory_share_everything(tmp_path) -> None:
    """Two workers: what the first relayed, the second can replay."""
    first = SignatureRegistry(SQLiteStore(tmp_path / "state.sqlite3"))
    second = SignatureRegistry(SQLiteStore(tmp_path / "state.sqlite3"))
    first.remember(SIG, "claude")
    first.remember_tool_call("call_abc", "g" * 60, "gemini")
    first.remember_turn_thinking("call_abc", [Thinking("Let me think.", SIG), Thinking("unsigned")])
    assert second.family_of(SIG) == "claude"
    assert second.tool_call_signature("call_abc") == ("g" * 60, "gemini")
    assert second.turn_thinking("call_abc") == [Thinking("Let me think.", SIG)]


def test_open_store_follows_the_settings(tmp_path: Path, redis_db: str) -> None:
    assert isinstance(open_store(None, None), MemoryStore)
    assert isinstance(open_store(None, tmp_path), SQLiteStore)
    store = open_store(redis_db, tmp_path)
    assert isinstance(store, FailoverStore) and store.health() == {"backend": "redis", "reachable": True}


def test_redis_down_then_back(own_redis, monkeypatch, caplog) -> None:
    """Requests keep working on local state, one log line, health says so; sharing resumes by itself."""
    monkeypatch.setattr(redis_state, "RETRY_AFTER", 0.2)
    store = FailoverStore(RedisStore(own_redis.url), MemoryStore())
    store.put("k", "shared")
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="gateway.state.redis"):
        for _ in range(20):
            store.put("local", 1)
            store.get("k")
        assert store.get("local") == 1  # the stand-in serves
        health = store.health()
        assert health["reachable"] is False and "unreachable" in health["error"]
        assert [r.message for r in caplog.records].count(
            "Redis is unreachable (ConnectionError): serving with local state until it is back") == 1
        own_redis.start()
        time.sleep(0.25)
        store.put("k", "again")
        assert store.health() == {"backend": "redis", "reachable": True}
        assert RedisStore(own_redis.url).get("k") == "again"
        assert any("reachable again" in r.message for r in caplog.records)


def test_the_sqlite_store_is_cut_back_to_its_bound_oldest_first(tmp_path, monkeypatch) -> None:
    from gateway.state import local

    monkeypatch.setattr(local, "PRUNE_EVERY", 5)
    store = SQLiteStore(tmp_path / "s.sqlite3", max_items=3)
    for n in range(10):  # pruned after the 5th and the 10th write
        store.put(f"k{n}", n, ttl=60 + n)
    assert store.get_many([f"k{n}" for n in range(10)]) == [None] * 7 + [7, 8, 9]


def test_an_unusable_sqlite_file_loses_entries_but_never_fails_a_request(tmp_path, caplog) -> None:
    (tmp_path / "taken").write_text("a file where the directory should be")
    store = SQLiteStore(tmp_path / "taken" / "s.sqlite3")
    store.put("k", "claude")
    assert store.get("k") is None
    assert "could not write" in caplog.text and "could not read" in caplog.text
