"""What the Responses API keeps between turns, without sockets: the response store and the sealer."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import sealed
from gateway.sealed import Sealer, derive_key, server_sealer, shared_key
from gateway.state import MemoryStore, SQLiteStore
from gateway.state import local
from gateway.state import responses as state
from gateway.state.responses import LocalResponses, StateResponses, response_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["local", "shared"])
def store(request, tmp_path):  # noqa: ANN001, ANN201
    """The two stores of one machine, bounded in bytes."""
    if request.param == "local":
        return LocalResponses(ttl=60, max_bytes=10_000)
    return response_store(MemoryStore(), tmp_path, shared=False, ttl=60, max_bytes=10_000)


def test_put_get_delete(store) -> None:
    record = {"owner": "o", "response": {"id": "resp_1", "output": []}, "context": [{"type": "message"}]}
    store.put("resp_1", record)
    assert store.get("resp_1") == record
    assert store.get("resp_2") is None
    assert store.delete("resp_1") is True
    assert store.delete("resp_1") is False
    assert store.get("resp_1") is None


def test_records_expire(store, monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(local.time, "time", lambda: now[0])
    store.put("resp_1", {"n": 1})
    now[0] += 59
    assert store.get("resp_1") == {"n": 1}
    now[0] += 2
    assert store.get("resp_1") is None


def test_the_store_is_bounded_in_bytes_oldest_first(store, monkeypatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(local.time, "time", lambda: now[0])
    for n in range(40):  # 40 records of about 1 KB in a 10 KB store
        now[0] += 1
        store.put(f"resp_{n}", {"text": "x" * 1000})
    kept = [n for n in range(40) if store.get(f"resp_{n}") is not None]
    assert kept[-1] == 39 and 5 <= len(kept) <= 9 + state.PRUNE_EVERY  # the shared file prunes every few writes
    assert kept == list(range(kept[0], 40))


def test_workers_share_the_sqlite_store(tmp_path) -> None:
    writer = ("import sys; from pathlib import Path; from gateway.state import MemoryStore;"
              "from gateway.state.responses import response_store;"
              "response_store(MemoryStore(), Path(sys.argv[1]), shared=False, ttl=60, max_bytes=10**6)"
              ".put('resp_1', {'owner': 'o'})")
    subprocess.run([sys.executable, "-c", writer, str(tmp_path)], cwd=ROOT, check=True)
    found = response_store(MemoryStore(), tmp_path, shared=False, ttl=60, max_bytes=10**6)
    assert found.get("resp_1") == {"owner": "o"}
    assert isinstance(response_store(MemoryStore(), None, shared=False, ttl=60, max_bytes=10**6), LocalResponses)


def test_with_redis_responses_go_to_the_shared_state_store(monkeypatch) -> None:
    """Several instances: each record expires on its own; one larger than the whole bound is not kept."""
    shared = MemoryStore()
    store = response_store(shared, None, shared=True, ttl=60, max_bytes=2_000)
    assert isinstance(store, StateResponses)
    store.put("resp_1", {"owner": "o"})
    assert shared.get("response:resp_1") == {"owner": "o"} and store.get("resp_1") == {"owner": "o"}
    store.put("resp_big", {"text": "x" * 3_000})
    assert store.get("resp_big") is None
    assert store.delete("resp_1") is True and store.delete("resp_1") is False


# -- sealing ----------------------------------------------------------------------------------------


def test_sealed_values_open_only_with_their_key_and_purpose() -> None:
    sealer = Sealer(derive_key("one"))
    blob = sealer.seal({"t": "thinking", "s": "sig"}, "reasoning")
    assert "thinking" not in blob and base64.urlsafe_b64decode(blob + "==")[:1] == sealed.VERSION
    assert sealer.unseal(blob, "reasoning") == {"t": "thinking", "s": "sig"}
    assert sealer.unseal(blob, "compaction") is None
    assert Sealer(derive_key("two")).unseal(blob, "reasoning") is None
    assert sealer.seal("same", "p") != sealer.seal("same", "p")  # a fresh nonce each time


@pytest.mark.parametrize("forged", ["", "x", "!!!!", None, 42, "AQ", "A" * 80])
def test_anything_not_sealed_opens_to_nothing(forged) -> None:
    assert Sealer(derive_key("k")).unseal(forged, "reasoning") is None


def test_a_changed_byte_fails_to_open() -> None:
    sealer = Sealer(derive_key("k"))
    raw = bytearray(base64.urlsafe_b64decode(sealer.seal({"a": 1}, "p") + "=="))
    for position in (1, 14, len(raw) - 1):
        changed = bytearray(raw)
        changed[position] ^= 1
        assert sealer.unseal(base64.urlsafe_b64encode(bytes(changed)).decode(), "p") is None


def test_the_generated_key_is_made_once_and_found_by_every_process(tmp_path) -> None:
    maker = ("import sys; from pathlib import Path; from gateway.sealed import shared_key;"
             "from gateway.state import SQLiteStore; print(shared_key(SQLiteStore(Path(sys.argv[1]))).hex())")
    keys = {subprocess.run([sys.executable, "-c", maker, str(tmp_path / "state.sqlite3")], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip() for _ in range(3)}
    assert keys == {shared_key(SQLiteStore(tmp_path / "state.sqlite3")).hex()}
    assert len(keys.pop()) == 64


def test_the_server_key_comes_from_the_secret_then_the_state_store(tmp_path) -> None:
    blob = server_sealer("secret", MemoryStore()).seal(1, "p")
    assert server_sealer("secret", MemoryStore()).unseal(blob, "p") == 1
    state = SQLiteStore(tmp_path / "state.sqlite3")
    kept = server_sealer(None, state).seal(2, "p")
    assert server_sealer(None, SQLiteStore(tmp_path / "state.sqlite3")).unseal(kept, "p") == 2  # a restart
    assert server_sealer(None, MemoryStore()).unseal(kept, "p") is None
    assert state.get(sealed.KEY_NAME)
