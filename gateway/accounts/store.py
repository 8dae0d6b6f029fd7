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
