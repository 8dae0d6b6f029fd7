"""The accounts the gateway serves with, and which one takes the next request.

Each account owns its ``requests.Session`` (connections are reused per account and never shared between
identities) and its token source. The pool keeps per-(account, model) cooldowns after 429s and marks
accounts whose refresh token stopped working, so requests go to an account that can serve them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..config import Settings
from ..errors import RateLimited, ServiceUnavailable
from .credentials import TokenSource
from .store import account_entries, read_accounts_file

log = logging.getLogger(__name__)

# Requests one account may have in flight on one upstream host before new connections are discarded.
POOL_SIZE_PER_ACCOUNT = 256


def new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE_PER_ACCOUNT)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


@dataclass(eq=False)
class Account:
    email: str
    tokens: TokenSource
    session: requests.Session
    project_id: str | None = None
    enabled: bool = True
    invalid_reason: str | None = None
    # model -> epoch seconds when its rate limit lifts
    cooldowns: dict[str, float] = field(default_factory=dict)
    last_used: float | None = None
    project_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def label(self) -> str:
        """How logs name the account: the email's local part, never the whole address or a token."""
        return self.email.split("@", 1)[0]

    def usable(self) -> bool:
        return self.enabled and self.invalid_reason is None

    def cooldown_left(self, model: str, now: float) -> float:
        until = self.cooldowns.get(model)
        if until is None:
            return 0.0
        if until <= now:
            self.cooldowns.pop(model, None)
            return 0.0
        return until - now


def build_account(entry: dict[str, Any], settings: Settings) -> Account:
    session = new_session()
    tokens = TokenSource(
        entry["refreshToken"],
        token_url=settings.oauth_token_url,
        client_id=settings.oauth_client_id,
        client_secret=settings.oauth_client_secret,
        session=session,
    )
    project = entry.get("projectId")
    return Account(
        email=entry["email"],
        tokens=tokens,
        session=session,
        project_id=project if isinstance(project, str) and project else None,
        enabled=entry.get("enabled", True) is not False,
    )


class AccountPool:
    """Sticky selection with failover: stay on one account while it serves (keeps the prompt cache warm)."""

    def __init__(self, accounts: list[Account], accounts_file: Path | None = None) -> None:
        self.accounts = accounts
        self.accounts_file = accounts_file
        self._lock = threading.Lock()
        self._current = 0

    @classmethod
    def from_file(cls, settings: Settings) -> AccountPool:
        data = read_accounts_file(settings.accounts_file)
        accounts = [build_account(entry, settings) for entry in account_entries(data)]
        log.info("loaded %d account(s) from %s", len(accounts), settings.accounts_file)
        return cls(accounts, settings.accounts_file)

    def active_count(self) -> int:
        return sum(1 for a in self.accounts if a.usable())

    def acquire(self, model: str, exclude: set[int] | None = None) -> Account:
        """The account for the next attempt on ``model``; raises when none can serve it now."""
        exclude = exclude or set()
        now = time.time()
        with self._lock:
            usable = [a for a in self.accounts if a.usable()]
            if not usable:
                raise ServiceUnavailable(self.no_account_message())
            count = len(self.accounts)
            for step in range(count):
                index = (self._current + step) % count
                account = self.accounts[index]
                if id(account) in exclude or not account.usable():
                    continue
                if account.cooldown_left(model, now) > 0:
                    continue
                self._current = index
                account.last_used = now
                return account
            waits = [a.cooldown_left(model, now) for a in usable if a.cooldown_left(model, now) > 0]
        if waits:
            wait = min(waits)
            raise RateLimited(
                f"every account is rate-limited on {model}; the soonest resets in {wait:.0f}s",
                retry_after=wait,
            )
        raise ServiceUnavailable(f"no account could serve {model}: every usable account failed this request")

    def mark_rate_limited(self, account: Account, model: str, seconds: float) -> None:
        with self._lock:
            account.cooldowns[model] = time.time() + max(seconds, 1.0)
        log.warning("account %s rate-limited on %s for %.1fs", account.label, model, seconds)

    def mark_invalid(self, account: Account, reason: str) -> None:
        account.invalid_reason = reason
        log.error("account %s marked invalid: %s", account.label, reason)

    def no_account_message(self) -> str:
        path = self.accounts_file
        if not self.accounts:
            return (
                f"no Google account is configured: add one with `python -m gateway accounts add`, or point "
                f"GATEWAY_ACCOUNTS_FILE at an accounts file (looked at {path})"
            )
        return (
            "no usable Google account: every configured account is disabled or its refresh token was rejected; "
            "re-add it with `python -m gateway accounts add`"
        )
