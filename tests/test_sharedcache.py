"""The signature memory gunicorn's workers share: an SQLite file that one process writes and another reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway import sharedcache
from gateway.sharedcache import SharedTTLCache

ROOT = Path(__file__).resolve().parent.parent


def test_what_one_process_puts_another_reads(tmp_path) -> None:
    writer = ("import sys; from pathlib import Path; from gateway.sharedcache import SharedTTLCache;"
              "SharedTTLCache(Path(sys.argv[1]), 'calls', max_items=10, ttl=60).put('call_1', ['sig', 'claude'])")
    subprocess.run([sys.executable, "-c", writer, str(tmp_path / "state.sqlite3")], cwd=ROOT, check=True)
    reader = SharedTTLCache(tmp_path / "state.sqlite3", "calls", max_items=10, ttl=60, decode=tuple)
    assert reader.get("call_1") == ("sig", "claude")
    assert reader.get("call_2") is None


def test_entries_expire(tmp_path, monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(sharedcache.time, "time", lambda: now[0])
    cache: SharedTTLCache[str] = SharedTTLCache(tmp_path / "s.sqlite3", "families", max_items=10, ttl=60)
    cache.put("k", "gemini")
    now[0] += 59
    assert cache.get("k") == "gemini"
    now[0] += 2
    assert cache.get("k") is None


def test_the_table_is_cut_back_to_its_bound_oldest_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sharedcache, "PRUNE_EVERY", 5)
    cache: SharedTTLCache[int] = SharedTTLCache(tmp_path / "s.sqlite3", "items", max_items=3, ttl=60)
    for n in range(10):  # pruned after the 5th and the 10th write
        cache.put(f"k{n}", n)
    assert [cache.get(f"k{n}") for n in range(10)] == [None] * 7 + [7, 8, 9]


def test_a_table_name_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError):
        SharedTTLCache(tmp_path / "s.sqlite3", "x; DROP TABLE y", max_items=1, ttl=1)


def test_an_unusable_file_loses_entries_but_never_fails_a_request(tmp_path, caplog) -> None:
    (tmp_path / "taken").write_text("a file where the directory should be")
    cache: SharedTTLCache[str] = SharedTTLCache(tmp_path / "taken" / "s.sqlite3", "families", max_items=1, ttl=60)
    cache.put("k", "claude")
    assert cache.get("k") is None
    assert "could not write" in caplog.text and "could not read" in caplog.text
