"""The accounts the gateway serves with, and which one takes the next request.

Each account owns its ``requests.Session`` (connections are reused per account and never shared between
identities) and its token source. The pool keeps per-(account, model) cooldowns after 429s, marks accounts
whose refresh token stopped working, and picks an account by the configured strategy:

* ``sticky``: the same account while it can serve (the upstream's prompt cache stays warm), the next one
  when it cannot.
* ``round-robin``: the next account for every request.
* ``hybrid``: each conversation sticks to one account; a new conversation goes to the account with the most
  remaining quota per conversation it already carries.

The accounts file is re-read when it changes, so accounts added, removed, enabled or disabled with the CLI
take effect without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..catalog import is_listed_id
from ..config import Settings
from ..errors import RateLimited, ServiceUnavailable
from .credentials import TokenSource
from .store import AccountsFileError, account_entries, read_accounts_file, update_account_entry, update_accounts_file

log = logging.getLogger(__name__)

# Requests one account may have in flight on one upstream host before new connections are discarded.
POOL_SIZE_PER_ACCOUNT = 256
# A 429 keeps the account off the model at least this long, whatever delay the upstream gave.
MIN_COOLDOWN = 1.0
# Hybrid strategy: how long a quiet conversation keeps its account, and how many conversations are remembered.
SESSION_TTL = 3600.0
MAX_SESSIONS = 10_000
# Quota weight of an account known to be out of quota: still a last resort (the upstream decides).
EXHAUSTED_WEIGHT = 0.01


def new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE_PER_ACCOUNT)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def fingerprint(refresh_token: str) -> str:
    """Identifies a refresh token (to notice a re-added account) without keeping a second copy of it."""
    return hashlib.sha256(refresh_token.encode("utf-8")).hexdigest()[:16]


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Quota:
    """One model's quota on one account, from the upstream's model listing.

    ``fraction`` None means exhausted: the upstream leaves the field out when it is zero.
    """

    fraction: float | None
    reset_time: str | None

    @property
    def reset_at(self) -> float | None:
        return epoch(self.reset_time)


@dataclass(eq=False)
class Account:
    email: str
    tokens: TokenSource
    session: requests.Session
    token_fingerprint: str = ""
    project_id: str | None = None
    enabled: bool = True
    invalid_reason: str | None = None
    # model -> epoch seconds when its rate limit lifts
    cooldowns: dict[str, float] = field(default_factory=dict)
    # model -> the quota last seen in the upstream's listing
    quotas: dict[str, Quota] = field(default_factory=dict)
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

    def active_cooldowns(self, now: float) -> dict[str, float]:
        """model -> seconds left, for the models this account is rate-limited on right now."""
        return {model: until - now for model, until in list(self.cooldowns.items()) if until > now}

    def quota_weight(self, model: str, now: float) -> float:
        """The remaining fraction last seen for ``model``; 1 when unknown or already reset."""
        quota = self.quotas.get(model)
        if quota is None:
            return 1.0
        reset_at = quota.reset_at
        if reset_at is not None and reset_at <= now:
            return 1.0
        return max(quota.fraction or 0.0, EXHAUSTED_WEIGHT)


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
        token_fingerprint=fingerprint(entry["refreshToken"]),
        project_id=project if isinstance(project, str) and project else None,
        enabled=entry.get("enabled", True) is not False,
        invalid_reason=_invalid_reason(entry),
    )


def _invalid_reason(entry: dict[str, Any]) -> str | None:
    """A rejected refresh token stays rejected: the mark holds until `accounts verify` or a re-add clears it."""
    if entry.get("isInvalid") is not True:
        return None
    return str(entry.get("invalidReason") or "refresh token rejected")


def parse_quotas(listing: dict[str, Any]) -> dict[str, Quota]:
    """model -> Quota from a fetchAvailableModels answer (internal ids and entries without quota skipped)."""
    quotas: dict[str, Quota] = {}
    models = listing.get("models")
    for model, entry in (models.items() if isinstance(models, dict) else []):
        info = entry.get("quotaInfo") if isinstance(entry, dict) else None
        if not is_listed_id(model) or not isinstance(info, dict):
            continue
        fraction = info.get("remainingFraction")
        reset = info.get("resetTime")
        quotas[model] = Quota(
            float(fraction) if isinstance(fraction, (int, float)) and fraction > 0 else None,
            reset if isinstance(reset, str) else None,
        )
    return quotas


class AllTried(ServiceUnavailable):
    """Every account that could serve the model already failed this request."""


class AccountPool:
    """The accounts and the choice among them. Without ``settings`` (to build accounts from entries) the
    pool does not follow its file: it serves the accounts it was given."""

    def __init__(
        self,
        accounts: list[Account],
        accounts_file: Path | None = None,
        *,
        strategy: str = "hybrid",
        settings: Settings | None = None,
    ) -> None:
        self.accounts = accounts
        self.accounts_file = accounts_file
        self.strategy = strategy
        # Why the accounts file could not be used, if it could not.
        self.error: str | None = None
        self._settings = settings
        self._lock = threading.Lock()
        self._last: Account | None = None
        self._sessions: OrderedDict[str, tuple[Account, float]] = OrderedDict()
        self._load: Counter[Account] = Counter()
        self._reload_lock = threading.Lock()
        self._file_state = _file_state(accounts_file)
        self._checked_at = time.monotonic()
        # Seconds between two looks at the accounts file for changes.
        self.reload_interval = 1.0
        # Told of every 429 (account, model): the metrics count them per account.
        self.on_rate_limit: Callable[[Account, str], None] | None = None

    @classmethod
    def from_file(cls, settings: Settings) -> AccountPool:
        """The pool for the configured accounts file; an unusable file gives an empty pool saying why."""
        path = settings.accounts_file
        pool = cls([], path, strategy=settings.account_strategy, settings=settings)
        try:
            pool.accounts = _build_all(account_entries(read_accounts_file(path)), settings, [])
        except AccountsFileError as exc:
            pool.error = str(exc)
            log.error("accounts file unusable: %s", exc)
        log.info("loaded %d account(s) from %s (strategy %s)", len(pool.accounts), path, settings.account_strategy)
        return pool

    # -- choosing ---------------------------------------------------------------------------------

    def acquire(
        self,
        model: str,
        *,
        exclude: Iterable[Account] = (),
        avoid: Account | None = None,
        session: str | None = None,
    ) -> Account:
        """The account for the next attempt on ``model``.

        ``exclude``: accounts that must not be used again for this request. ``avoid``: one to use only if
        no other can serve (it just failed in a way that may pass). ``session``: the conversation, for the
        hybrid strategy. Raises ServiceUnavailable (no usable account), AllTried, or RateLimited with the
        time until the soonest cooldown ends.
        """
        self.reload_if_changed()
        excluded = set(exclude)
        now = time.time()
        with self._lock:
            usable = [a for a in self.accounts if a.usable()]
            if not usable:
                raise ServiceUnavailable(self.no_account_message())
            ready = [a for a in usable if a.cooldown_left(model, now) == 0]
            candidates = [a for a in ready if a not in excluded]
            if not candidates:
                if ready:
                    raise AllTried(f"no account could serve {model}: every usable account failed this request")
                wait = min(a.cooldown_left(model, now) for a in usable)
                raise RateLimited(
                    f"every account is rate-limited on {model}; the soonest resets in {wait:.0f}s",
                    retry_after=wait,
                )
            preferred = [a for a in candidates if a is not avoid] or candidates
            account = self._choose(preferred, model, session, now)
            self._last = account
            account.last_used = now
            return account

    def _choose(self, candidates: list[Account], model: str, session: str | None, now: float) -> Account:
        if self.strategy == "sticky" and self._last in candidates:
            return self._last
        if self.strategy != "hybrid":
            return self._rotation(candidates)[0]
        bound = self._sessions.get(session)[0] if session in self._sessions else None
        if bound in candidates:
            account = bound
        else:
            # max() keeps the first of equals: ties go round the accounts instead of piling on the first.
            account = max(self._rotation(candidates), key=lambda a: a.quota_weight(model, now) / (1 + self._load[a]))
        if session is not None:
            self._bind(session, account, now)
        return account

    def _rotation(self, candidates: Sequence[Account]) -> list[Account]:
        """``candidates`` in the file's order, starting after the account used last."""
        accounts = self.accounts
        start = accounts.index(self._last) + 1 if self._last in accounts else 0
        return [a for a in accounts[start:] + accounts[:start] if a in candidates]

    def _bind(self, session: str, account: Account, now: float) -> None:
        previous = self._sessions.pop(session, None)
        if previous is not None:
            self._load[previous[0]] -= 1
        self._sessions[session] = (account, now)
        self._load[account] += 1
        while self._sessions:
            oldest, (holder, seen) = next(iter(self._sessions.items()))
            if seen > now - SESSION_TTL and len(self._sessions) <= MAX_SESSIONS:
                break
            del self._sessions[oldest]
            self._load[holder] -= 1

    # -- state ------------------------------------------------------------------------------------

    def active_count(self) -> int:
        """Accounts that can serve now: enabled and with a working refresh token."""
        self.reload_if_changed()
        return sum(1 for a in self.accounts if a.usable())

    def find(self, email: str) -> Account | None:
        self.reload_if_changed()
        return next((a for a in self.accounts if a.email == email), None)

    def mark_rate_limited(self, account: Account, model: str, seconds: float) -> None:
        until = time.time() + max(seconds, MIN_COOLDOWN)
        with self._lock:
            account.cooldowns[model] = until
        log.warning("account %s rate-limited on %s for %.1fs", account.label, model, seconds)
        self._share_cooldown(account, model, until)
        if self.on_rate_limit is not None:
            self.on_rate_limit(account, model)

    def _share_cooldown(self, account: Account, model: str, until: float) -> None:
        """Write the cooldown into the accounts file, where the other gunicorn workers pick it up (within
        ``reload_interval``) instead of each meeting the same 429; in antigravity-claude-proxy's shape."""
        if self.accounts_file is None:
            return
        now = time.time()

        def change(data: dict[str, Any]) -> None:
            for entry in data.get("accounts", []):
                if isinstance(entry, dict) and entry.get("email") == account.email:
                    limits = {m: v for m, v in (entry.get("modelRateLimits") or {}).items()
                              if _cooldown_until(v) > now} if isinstance(entry.get("modelRateLimits"), dict) else {}
                    limits[model] = {"isRateLimited": True, "resetTime": int(until * 1000)}
                    entry["modelRateLimits"] = limits

        try:
            update_accounts_file(self.accounts_file, change)
        except (OSError, AccountsFileError) as exc:
            log.warning("could not save the cooldown of %s: %s", account.label, exc)

    def mark_invalid(self, account: Account, reason: str) -> None:
        """Take the account out of rotation and say why in the accounts file (``accounts list`` shows it)."""
        account.invalid_reason = reason
        log.error("account %s marked invalid: %s", account.label, reason)
        self._save(account, {"isInvalid": True, "invalidReason": reason, "invalidAt": iso(time.time())})

    def clear_invalid(self, account: Account) -> None:
        """Its token worked again: back into rotation."""
        if account.invalid_reason is None:
            return
        account.invalid_reason = None
        log.info("account %s is valid again", account.label)
        self._save(account, {"isInvalid": False, "invalidReason": None})

    def record_quotas(self, account: Account, listing: dict[str, Any]) -> None:
        account.quotas = parse_quotas(listing)

    def no_account_message(self, *, public: bool = False) -> str:
        """Why no account can serve. ``public`` (for /health, which needs no key) names no file: a path tells a
        stranger the user's name and the machine's layout."""
        path = self.accounts_file
        if self.error:
            error = self.error.replace(str(path), "the accounts file") if public and path else self.error
            return f"the accounts file cannot be used: {error}"
        if not self.accounts:
            return (
                "no Google account is configured: add one with `python -m gateway accounts add`, or point "
                "GATEWAY_ACCOUNTS_FILE at an accounts file" + ("" if public else f" (looked at {path})")
            )
        return (
            "no usable Google account: every configured account is disabled or its refresh token was rejected; "
            "see `python -m gateway accounts list`, and re-add rejected ones with `python -m gateway accounts add`"
        )

    def _save(self, account: Account, fields: dict[str, Any]) -> None:
        if self.accounts_file is None:
            return
        try:
            update_account_entry(self.accounts_file, account.email, fields)
        except (OSError, AccountsFileError) as exc:
            log.warning("could not save the state of %s: %s", account.label, exc)

    # -- following the accounts file --------------------------------------------------------------

    def reload_if_changed(self) -> None:
        """Re-read the accounts file if it changed (at most once per ``reload_interval``)."""
        if self._settings is None or self.accounts_file is None:
            return
        if time.monotonic() - self._checked_at < self.reload_interval:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another request is reloading right now
        try:
            self._checked_at = time.monotonic()
            state = _file_state(self.accounts_file)
            if state == self._file_state:
                return
            self._file_state = state
            try:
                entries = account_entries(read_accounts_file(self.accounts_file))
            except AccountsFileError as exc:
                self.error = str(exc)
                log.error("accounts file unusable, keeping the accounts loaded before: %s", exc)
                return
            with self._lock:
                self.accounts = _build_all(entries, self._settings, self.accounts)
                self.error = None
            log.info("accounts file changed: %d account(s)", len(self.accounts))
        finally:
            self._reload_lock.release()


def _file_state(path: Path | None) -> tuple[int, int, int] | None:
    """What tells a rewritten file apart: every atomic write is a new inode."""
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _build_all(entries: list[dict[str, Any]], settings: Settings, current: list[Account]) -> list[Account]:
    """Accounts for the file's entries, keeping the live ones (tokens, cooldowns) whose token is unchanged."""
    known = {a.email: a for a in current}
    accounts: list[Account] = []
    seen: set[str] = set()
    for entry in entries:
        email = entry["email"]
        if email in seen:
            continue
        seen.add(email)
        account = known.get(email)
        if account is None or account.token_fingerprint != fingerprint(entry["refreshToken"]):
            account = build_account(entry, settings)
        else:
            account.enabled = entry.get("enabled", True) is not False
            account.invalid_reason = _invalid_reason(entry)
            project = entry.get("projectId")
            if isinstance(project, str) and project:
                account.project_id = project
        for model, until in file_cooldowns(entry).items():  # another worker's 429s
            account.cooldowns[model] = max(until, account.cooldowns.get(model, 0.0))
        accounts.append(account)
    return accounts


def file_cooldowns(entry: dict[str, Any], now: float | None = None) -> dict[str, float]:
    """model -> end of cooldown (epoch seconds) from an entry's ``modelRateLimits``, the ones still running.

    The shape is antigravity-claude-proxy's: ``{"isRateLimited": true, "resetTime": <epoch ms>}``.
    """
    limits = entry.get("modelRateLimits")
    if not isinstance(limits, dict):
        return {}
    now = time.time() if now is None else now
    return {model: until for model, value in limits.items() if (until := _cooldown_until(value)) > now}


def _cooldown_until(value: Any) -> float:
    if not isinstance(value, dict) or value.get("isRateLimited") is False:
        return 0.0
    reset = value.get("resetTime")
    return reset / 1000 if isinstance(reset, (int, float)) and not isinstance(reset, bool) else 0.0
