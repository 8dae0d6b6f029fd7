"""The accounts file under concurrent writers: always whole, always 0600, no update lost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from gateway.accounts.store import update_account_entry, update_accounts_file
from tests.conftest import write_accounts

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 25

# One writer: increments its own account's counter ROUNDS times, read-modify-write under the file lock,
# and appends one account of its own halfway.
WRITER = """
import sys
from pathlib import Path
from gateway.accounts.store import update_accounts_file

path, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def bump(data):
    for entry in data["accounts"]:
        if entry["email"] == name:
            entry["count"] += 1

for n in range(rounds):
    update_accounts_file(path, bump)
    if n == rounds // 2:
        update_accounts_file(path, lambda data: data["accounts"].append(
            {"email": "new-" + name, "refreshToken": "1//new", "count": 0}))
"""


def seed(path: Path, names: list[str]) -> Path:
    write_accounts(path, [{"email": n, "refreshToken": f"1//{n}", "count": 0, "custom": {"kept": True}} for n in names])
    data = json.loads(path.read_text())
    data["activeIndex"] = 3
    path.write_text(json.dumps(data))
    return path


def watch(path: Path, stop: threading.Event, seen: list[str]) -> None:
    """A reader during the writes: every read must parse and be private."""
    while not stop.is_set():
        try:
            text = path.read_text()
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:  # never: the rename replaces the file in one step
            seen.append("missing")
            continue
        try:
            json.loads(text)
        except ValueError:
            seen.append("torn")
        if mode != 0o600:
            seen.append(oct(mode))


def check_whole(path: Path, names: list[str]) -> None:
    data = json.loads(path.read_text())
    counts = {e["email"]: e["count"] for e in data["accounts"]}
    assert counts == {**dict.fromkeys(names, ROUNDS), **{f"new-{n}": 0 for n in names}}
    assert all(e["custom"] == {"kept": True} for e in data["accounts"] if not e["email"].startswith("new-"))
    assert data["activeIndex"] == 3
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_processes_lose_nothing(tmp_path) -> None:
    names = [f"w{n}@example.com" for n in range(4)]
    path = seed(tmp_path / "accounts.json", names)
    stop, seen = threading.Event(), []
    reader = threading.Thread(target=watch, args=(path, stop, seen))
    reader.start()
    try:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(ROUNDS)], cwd=ROOT)
                   for name in names]
        assert [w.wait(timeout=60) for w in writers] == [0] * len(names)
    finally:
        stop.set()
        reader.join()
    assert seen == []
    check_whole(path, names)


def test_concurrent_threads_lose_nothing(tmp_path) -> None:
    names = [f"t{n}@example.com" for n in range(4)]
    path = seed(tmp_path / "accounts.json", names)

    def writer(name: str) -> None:
        def bump(data: dict) -> None:
            entry = next(e for e in data["accounts"] if e["email"] == name)
            entry["count"] += 1

        for n in range(ROUNDS):
            update_accounts_file(path, bump)
            if n == ROUNDS // 2:
                update_accounts_file(path, lambda data: data["accounts"].append(
                    {"email": f"new-{name}", "refreshToken": "1//new", "count": 0}))

    threads = [threading.Thread(target=writer, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check_whole(path, names)


def test_an_entry_update_keeps_unknown_fields(tmp_path) -> None:
    path = seed(tmp_path / "accounts.json", ["a@example.com"])
    update_account_entry(path, "a@example.com", {"projectId": "p"})
    entry = json.loads(path.read_text())["accounts"][0]
    assert entry == {"email": "a@example.com", "refreshToken": "1//a@example.com", "count": 0,
                     "custom": {"kept": True}, "projectId": "p"}
