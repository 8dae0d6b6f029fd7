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

    The variable cannot be written: what the gateway learns about an account goes to the shared state as
    overrides (``SharedSource``). Adding or removing accounts means changing the variable (``python -m gateway
    accounts export`` prints its value from an accounts file).
    """

    description = "GATEWAY_ACCOUNTS_JSON"

    def __init__(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AccountsFileError(f"GATEWAY_ACCOUNTS_JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), list):
            raise AccountsFileError('GATEWAY_ACCOUNTS_JSON must hold a JSON object with an "accounts" list')
        self._text = text

    def read(self) -> dict[str, Any]:
        return json.loads(self._text)

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        raise AccountsFileError("GATEWAY_ACCOUNTS_JSON cannot be changed from here: add or remove accounts in "
                                "the variable (`python -m gateway accounts export` prints it from a file)")

    def version(self) -> Any:
        return None


class SharedSource(AccountsSource):
    """Another source, with what the gateway and the CLI changed in its entries kept in the shared state too.

    Each account's changes (project id, marks, enabled) are its overrides under ``account:<email>``, read back over
    the source's entries: with Redis, every instance sees a mark one of them made, and a restart keeps it even
    where the source cannot be written (GATEWAY_ACCOUNTS_JSON). A writable source (a file) is updated as well.
    """

    #: Fields never copied into the shared state: the source has them, and a refresh token is a secret.
    FIXED = frozenset({"email", "refreshToken"})

    def __init__(self, base: AccountsSource, state: Any) -> None:
        self.base = base
        self.state = state
        self.description = base.description
        self.path = getattr(base, "path", None)
        self._emails: list[str] | None = None

    def _overrides(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        emails = self._emails = [entry["email"] for entry in account_entries(data)]
        values = self.state.get_many([f"account:{email}" for email in emails])
        return {email: value for email, value in zip(emails, values) if isinstance(value, dict)}

    def _merge(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        overrides = self._overrides(data)
        for entry in account_entries(data):
            entry.update({k: v for k, v in overrides.get(entry["email"], {}).items() if k not in self.FIXED})
        return overrides

    def read(self) -> dict[str, Any]:
        data = self.base.read()
        self._merge(data)
        return data

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        changed: dict[str, dict[str, Any]] = {}

        def shared_change(data: dict[str, Any]) -> None:
            overrides = self._merge(data)
            before = {entry["email"]: dict(entry) for entry in account_entries(data)}
            change(data)
            for entry in account_entries(data):
                email = entry["email"]
                if email not in before:
                    continue
                diff = {k: v for k, v in entry.items() if k not in self.FIXED and before[email].get(k) != v}
                if diff:
                    changed[email] = {**overrides.get(email, {}), **diff}

        if isinstance(self.base, EnvSource):
            data = self.read()
            emails = {entry["email"] for entry in account_entries(data)}
            shared_change(data)
            if {entry["email"] for entry in account_entries(data)} != emails:
                self.base.update(change)  # says why it cannot
        else:
            data = self.base.update(shared_change)
        for email, overrides in changed.items():
            self.state.put(f"account:{email}", overrides)
        return data

    def version(self) -> Any:
        """The source's own version and the accounts' overrides (another instance may have just marked one)."""
        if self._emails is None:
            self._emails = [entry["email"] for entry in account_entries(self.base.read())]
        overrides = self.state.get_many([f"account:{email}" for email in self._emails])
        return self.base.version(), json.dumps(overrides, sort_keys=True)


def open_source(accounts_json: str | None, accounts_file: Path, state: Any, shared: bool) -> AccountsSource:
    """The accounts as the settings give them; with ``shared`` state (Redis) or from the environment, what is
    learned about them is kept in the state too, so that every instance sees it."""
    base: AccountsSource = EnvSource(accounts_json) if accounts_json else FileSource(accounts_file)
    return SharedSource(base, state) if shared or accounts_json else base


def export_line(data: dict[str, Any]) -> str:
    """The accounts as one line of JSON, for GATEWAY_ACCOUNTS_JSON (marks and cooldowns left behind)."""
    keep = ("email", "refreshToken", "projectId", "enabled")
    accounts = [{k: entry[k] for k in keep if k in entry} for entry in account_entries(data)]
    return json.dumps({"accounts": accounts}, separators=(",", ":"))
