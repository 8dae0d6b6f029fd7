"""The accounts file: antigravity-claude-proxy's format, read as it is and rewritten without loss.

Format: ``{"accounts": [{"email", "refreshToken", "projectId"?, "enabled"?, ...}], ...}``. Fields the
gateway does not know (``settings``, ``activeIndex``, ``modelRateLimits``, ...) are kept on rewrite.
Writes are atomic (temporary file, fsync, rename) with mode 0600 (the lock file too, and 0700 for directories
made on the way, whatever the umask), and serialised across processes with
an advisory lock so the server and the CLI can both update the file without losing each other's change.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..security import private_dir, private_file


class AccountsFileError(ValueError):
    """The accounts file exists but cannot be used."""


def read_accounts_file(path: Path) -> dict[str, Any]:
    """The file's whole JSON object; an empty one if the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"accounts": []}
    except OSError as exc:
        raise AccountsFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if text.strip() else {"accounts": []}
    except ValueError as exc:
        raise AccountsFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("accounts", []), list):
        raise AccountsFileError(f'{path} must hold a JSON object with an "accounts" list')
    data.setdefault("accounts", [])
    return data


def account_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries usable as OAuth accounts: a dict with an email and a refresh token."""
    return [
        entry
        for entry in data.get("accounts", [])
        if isinstance(entry, dict) and isinstance(entry.get("email"), str) and entry.get("refreshToken")
    ]


def write_accounts_file(path: Path, data: dict[str, Any]) -> None:
    """Replace the file atomically; readers see the old or the new content, never half of it."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    private_dir(path.parent)
    lock_path = path.with_name(path.name + ".lock")
    fd = private_file(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def update_accounts_file(path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read, change in place, write back, all under the file lock (read-modify-write without loss)."""
    with _locked(path):
        data = read_accounts_file(path)
        change(data)
        write_accounts_file(path, data)
        return data


def update_account_entry(path: Path, email: str, fields: dict[str, Any]) -> None:
    """Set some fields of one account's entry, keeping everything else in the file."""

    def change(data: dict[str, Any]) -> None:
        for entry in data.get("accounts", []):
            if isinstance(entry, dict) and entry.get("email") == email:
                entry.update(fields)

    update_accounts_file(path, change)


def file_state(path: Path) -> tuple[int, int, int] | None:
    """What tells a rewritten file apart: every atomic write is a new inode."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class AccountsSource:
    """Where the accounts come from and where what the gateway learns about them (project ids, marks) goes."""

    #: How messages name it.
    description = ""

    def read(self) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Read-modify-write without losing another writer's change."""
        raise NotImplementedError

    def version(self) -> Any:
        """Changes whenever ``read`` may answer differently (cheap: asked every second)."""
        raise NotImplementedError

    def update_entry(self, email: str, fields: dict[str, Any]) -> None:
        def change(data: dict[str, Any]) -> None:
            for entry in data.get("accounts", []):
                if isinstance(entry, dict) and entry.get("email") == email:
                    entry.update(fields)

        self.update(change)


class FileSource(AccountsSource):
    """The accounts file, shared by the server's workers and the CLI."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"the accounts file {path}"

    def read(self) -> dict[str, Any]:
        return read_accounts_file(self.path)

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        return update_accounts_file(self.path, change)

    def version(self) -> Any:
        return file_state(self.path)


class EnvSource(AccountsSource):
    """``GATEWAY_ACCOUNTS_JSON``: the accounts file's JSON in a variable, for a platform without a disk.

    The variable cannot be written, so what the gateway learns about an account (its project id, a mark such as
    ``isInvalid``) is kept in the state store as that account's overrides, and read back over the variable's
    entries: on Redis it outlives restarts and reaches every instance. Adding or removing accounts means changing
    the variable (``python -m gateway accounts export`` prints its value from an accounts file).
    """

    description = "GATEWAY_ACCOUNTS_JSON"
    #: Fields never copied into the state store: the variable has them, and a refresh token is a secret.
    FIXED = frozenset({"email", "refreshToken"})

    def __init__(self, text: str, state: Any) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AccountsFileError(f"GATEWAY_ACCOUNTS_JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), list):
            raise AccountsFileError('GATEWAY_ACCOUNTS_JSON must hold a JSON object with an "accounts" list')
        self._data = data
        self._state = state

    def _keys(self) -> list[str]:
        return [f"account:{entry['email']}" for entry in account_entries(self._data)]

    def read(self) -> dict[str, Any]:
        data = json.loads(json.dumps(self._data))
        entries = account_entries(data)
        for entry, overrides in zip(entries, self._state.get_many(self._keys())):
            if isinstance(overrides, dict):
                entry.update({k: v for k, v in overrides.items() if k not in self.FIXED})
        return data

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        data = self.read()
        change(data)
        given = {entry["email"]: entry for entry in account_entries(self._data)}
        after = {entry["email"]: entry for entry in account_entries(data)}
        if set(after) != set(given):
            raise AccountsFileError("GATEWAY_ACCOUNTS_JSON cannot be changed from here: add or remove accounts in "
                                    "the variable (`python -m gateway accounts export` prints it from a file)")
        for email, entry in after.items():
            overrides = {k: v for k, v in entry.items() if k not in self.FIXED and given[email].get(k) != v}
            self._state.put(f"account:{email}", overrides)
        return data

    def version(self) -> Any:
        return json.dumps(self._state.get_many(self._keys()), sort_keys=True)


def export_line(data: dict[str, Any]) -> str:
    """The accounts as one line of JSON, for GATEWAY_ACCOUNTS_JSON (marks and cooldowns left behind)."""
    keep = ("email", "refreshToken", "projectId", "enabled")
    accounts = [{k: entry[k] for k in keep if k in entry} for entry in account_entries(data)]
    return json.dumps({"accounts": accounts}, separators=(",", ":"))
