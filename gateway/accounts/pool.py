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
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..catalog import is_listed_id
from ..config import Settings
from ..errors import RateLimited, ServiceUnavailable
from ..upstream.errors import parse_duration
from .credentials import TokenSource
from ..state import MemoryStore, StateStore
from .store import AccountsFileError, AccountsSource, SharedSource, account_entries, open_source

log = logging.getLogger(__name__)

# Requests one account may have in flight on one upstream host before new connections are discarded.
POOL_SIZE_PER_ACCOUNT = 256
# A 429 keeps the account off the model at least this long, whatever delay the upstream gave.
MIN_COOLDOWN = 1.0
# Hybrid strategy: how long a quiet conversation keeps its account, and how many conversations are remembered.
SESSION_TTL = 3600.0
# How long a quota snapshot from the model listing is worth sharing.
QUOTA_TTL = 600.0
MAX_SESSIONS = 10_000
# Quota weight of an account known to be out of quota: still a last resort (the upstream decides).
EXHAUSTED_WEIGHT = 0.01
# ... and of one whose weekly window is empty: out for days, so behind every other.
WEEKLY_EXHAUSTED_WEIGHT = 0.001
# A quota window longer than this is the weekly one (docs/upstream.md, "Quota windows").
SHORT_WINDOW_MAX = 86400.0


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


@dataclass(frozen=True)
class QuotaGroup:
    """The quota windows of one group of models on one account, from retrieveUserQuotaSummary."""

    name: str
    models: tuple[str, ...]
    five_hour: Quota | None = None
    weekly: Quota | None = None


@dataclass(eq=False)
class Account:
    email: str
    tokens: TokenSource
    session: requests.Session
    token_fingerprint: str = ""
    project_id: str | None = None
    enabled: bool = True
    invalid_reason: str | None = None
    # Google refused the account (gateway/accounts/refusals.py): it wants it verified in a browser (at
    # ``verification_url``), or banned it (``suspended_reason``, its message).
    needs_verification: bool = False
    verification_url: str | None = None
    suspended_reason: str | None = None
    # Google One AI credits (gateway/accounts/credits.py): model -> until when credits serve it; the last failure.
    credits_until: dict[str, float] = field(default_factory=dict)
    credits_failed_at: float | None = None
    credits_error: str | None = None
    # model -> epoch seconds when its rate limit lifts
    cooldowns: dict[str, float] = field(default_factory=dict)
    # model -> the quota last seen in the upstream's listing
    quotas: dict[str, Quota] = field(default_factory=dict)
    # The 5-hour and weekly windows per model group; None until the upstream told (or if it cannot).
    windows: list[QuotaGroup] | None = None
    last_used: float | None = None
    project_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def label(self) -> str:
        """How logs name the account: the email's local part, never the whole address or a token."""
        return self.email.split("@", 1)[0]

    def usable(self) -> bool:
        return (self.enabled and self.invalid_reason is None and not self.needs_verification
                and self.suspended_reason is None)

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
        """The smallest remaining fraction last seen for ``model`` (listing, 5-hour and weekly window); 1 when
        unknown or already reset. An empty weekly window weighs least of all: it lasts days."""
        if self.weekly_reset(model, now) is not None:
            return WEEKLY_EXHAUSTED_WEIGHT
        group = self.quota_group(model)
        weight = 1.0
        for quota in (self.quotas.get(model), group and group.five_hour, group and group.weekly):
            if not quota:
                continue
            reset_at = quota.reset_at
            if reset_at is None or reset_at > now:
                weight = min(weight, max(quota.fraction or 0.0, EXHAUSTED_WEIGHT))
        return weight

    def quota_group(self, model: str) -> QuotaGroup | None:
        return next((group for group in self.windows or () if model in group.models), None)

    def weekly_reset(self, model: str, now: float) -> float | None:
        """When ``model``'s weekly window refills, if it is empty now: until then every 429 is that (the 429
        itself does not say so; docs/upstream.md, "Quota windows")."""
        group = self.quota_group(model)
        weekly = group.weekly if group else None
        if weekly is None or weekly.fraction is not None:
            return None
        reset_at = weekly.reset_at
        return reset_at if reset_at is not None and reset_at > now else None


def build_account(entry: dict[str, Any], settings: Settings, state: StateStore | None = None) -> Account:
    """``state``: where the workers and instances share the account's access token (one refresh for all)."""
    session = new_session()
    tokens = TokenSource(
        entry["refreshToken"],
        token_url=settings.oauth_token_url,
        client_id=settings.oauth_client_id,
        client_secret=settings.oauth_client_secret,
        session=session,
        shared=state,
        key=fingerprint(entry["refreshToken"]),
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
        needs_verification=entry.get("needsVerification") is True,
        verification_url=_text(entry.get("validationUrl")),
        suspended_reason=_suspended_reason(entry),
    )


def _invalid_reason(entry: dict[str, Any]) -> str | None:
    """A rejected refresh token stays rejected: the mark holds until `accounts verify` or a re-add clears it."""
    if entry.get("isInvalid") is not True:
        return None
    return str(entry.get("invalidReason") or "refresh token rejected")


def _suspended_reason(entry: dict[str, Any]) -> str | None:
    """A ban stays until the user lifts it with `accounts enable`."""
    if entry.get("isSuspended") is not True:
        return None
    return _text(entry.get("suspendedReason")) or "suspended by Google"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def verification_fields(url: str | None, message: str, now: float) -> dict[str, Any]:
    """How the accounts file keeps a needs-verification mark (the CLI writes it too)."""
    return {"needsVerification": True, "validationUrl": url, "verificationMessage": message,
            "needsVerificationAt": iso(now)}


def suspension_fields(reason: str, now: float) -> dict[str, Any]:
    return {"isSuspended": True, "suspendedReason": reason, "suspendedAt": iso(now)}


CLEAR_VERIFICATION = {"needsVerification": False, "validationUrl": None, "verificationMessage": None}
CLEAR_SUSPENSION = {"isSuspended": False, "suspendedReason": None}


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


def parse_windows(summary: dict[str, Any]) -> list[QuotaGroup]:
    """The groups of a retrieveUserQuotaSummary answer that name their models, with their two windows."""
    groups: list[QuotaGroup] = []
    for group in summary.get("groups") or []:
        if not isinstance(group, dict):
            continue
        models = tuple(_model_ids(group.get("modelIds") or group.get("models")))
        windows: dict[str, Quota] = {}
        for bucket in group.get("buckets") or []:
            kind = window_kind(bucket.get("window")) if isinstance(bucket, dict) else None
            if kind is None:
                continue
            fraction, reset = bucket.get("remainingFraction"), bucket.get("resetTime")
            windows[kind] = Quota(
                float(fraction) if isinstance(fraction, (int, float)) and fraction > 0 else None,
                reset if isinstance(reset, str) else None,
            )
        if models and windows:
            name = group.get("displayName")
            groups.append(QuotaGroup(name if isinstance(name, str) and name else models[0], models,
                                     windows.get("fiveHour"), windows.get("weekly")))
    return groups


def _model_ids(value: Any) -> list[str]:
    """``["id", ...]`` or ``[{"id"|"modelId": ...}, ...]``."""
    ids = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            item = item.get("modelId") or item.get("id")
        if isinstance(item, str) and item:
            ids.append(item)
    return ids


def window_kind(window: Any) -> str | None:
    """``fiveHour`` or ``weekly`` for a bucket's ``window``: a proto Duration (``"18000s"``) or a name."""
    if not isinstance(window, str):
        return None
    text = window.strip().upper()
    seconds = parse_duration(window)
    if seconds is not None:
        return "weekly" if seconds > SHORT_WINDOW_MAX else "fiveHour"
    if "WEEK" in text or "7D" in text or "7_D" in text:
        return "weekly"
    if "HOUR" in text or "5H" in text or "5_H" in text:
        return "fiveHour"
    return None


class AllTried(ServiceUnavailable):
    """Every account that could serve the model already failed this request."""


class AccountPool:
    """The accounts and the choice among them. Without ``settings`` (to build accounts from entries) the
    pool does not follow its file: it serves the accounts it was given."""

    def __init__(
        self,
        accounts: list[Account],
        source: AccountsSource | None = None,
        *,
        strategy: str = "hybrid",
        settings: Settings | None = None,
        state: StateStore | None = None,
    ) -> None:
        self.accounts = accounts
        self.source = source
        # What every worker and instance shares: cooldowns, quota snapshots, conversation affinity.
        self.state = state if state is not None else MemoryStore()
        self.strategy = strategy
        # Why the accounts file could not be used, if it could not.
        self.error: str | None = None
        self._settings = settings
        self._lock = threading.Lock()
        self._last: Account | None = None
        self._sessions: OrderedDict[str, tuple[Account, float]] = OrderedDict()
        self._load: Counter[Account] = Counter()
        self._reload_lock = threading.Lock()
        self._source_version = source.version() if source is not None else None
        self._writes: queue.SimpleQueue[tuple[Account, dict[str, Any]]] | None = None
        self._checked_at = time.monotonic()
        # Seconds between two looks at the accounts file for changes.
        self.reload_interval = 1.0
        # Told of every 429 (account, model): the metrics count them per account.
        self.on_rate_limit: Callable[[Account, str], None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, state: StateStore | None = None) -> AccountPool:
        """The pool for GATEWAY_ACCOUNTS_JSON or the accounts file; unusable ones give an empty pool saying why."""
        state = state if state is not None else MemoryStore()
        try:
            source = open_source(settings.accounts_json, settings.accounts_file, state, shared=bool(settings.redis_url))
        except AccountsFileError as exc:
            pool = cls([], None, strategy=settings.account_strategy, settings=settings, state=state)
            pool.error = str(exc)
            log.error("accounts unusable: %s", exc)
            return pool
        pool = cls([], source, strategy=settings.account_strategy, settings=settings, state=state)
        try:
            pool.accounts = _build_all(account_entries(source.read()), settings, [], state)
        except AccountsFileError as exc:
            pool.error = str(exc)
            log.error("accounts unusable: %s", exc)
        log.info("loaded %d account(s) from %s (strategy %s)", len(pool.accounts), source.description,
                 settings.account_strategy)
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
        bound = self._share_in(model, [a for a in self.accounts if a.usable()], session, now)
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
            account = self._choose(preferred, model, session, bound, now)
            self._last = account
            account.last_used = now
        if session is not None and self.strategy == "hybrid" and account is not bound:
            self.state.put(f"affinity:{session}", account.email, SESSION_TTL)
        return account

    def _share_in(self, model: str, usable: list[Account], session: str | None, now: float) -> Account | None:
        """Bring in, in one round trip, what other workers and instances learned that this choice needs: their
        cooldowns on ``model``, their quota snapshots of it, and the account the conversation is bound to."""
        keys = [f"cooldown:{a.email}:{model}" for a in usable]
        shared_marks = isinstance(self.source, SharedSource)
        if shared_marks:  # a mark another instance made (a ban, a verification) keeps this one off too, at once
            keys += [f"account:{a.email}" for a in usable]
        hybrid = self.strategy == "hybrid"
        if hybrid:
            keys += [f"quota:{a.email}:{model}" for a in usable]
            if session is not None:
                keys.append(f"affinity:{session}")
        values = self.state.get_many(keys)
        for account, until in zip(usable, values):
            if isinstance(until, (int, float)) and until > account.cooldowns.get(model, 0.0):
                account.cooldowns[model] = until
        rest = values[len(usable):]
        if shared_marks:
            for account, overrides in zip(usable, rest):
                if isinstance(overrides, dict):
                    _take_marks(account, overrides)
            rest = rest[len(usable):]
        if not hybrid:
            return None
        for account, quota in zip(usable, rest):
            if isinstance(quota, list) and len(quota) == 2:
                account.quotas[model] = Quota(*quota)
        email = rest[-1] if session is not None else None
        return next((a for a in usable if a.email == email), None)

    def _choose(self, candidates: list[Account], model: str, session: str | None, bound: Account | None,
                now: float) -> Account:
        if self.strategy == "sticky" and self._last in candidates:
            return self._last
        if self.strategy != "hybrid":
            return self._rotation(candidates)[0]
        if bound is None and session in self._sessions:
            bound = self._sessions[session][0]
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
        """Keep the account off ``model`` for ``seconds``, or until its weekly window refills if that is empty."""
        now = time.time()
        given, seconds = seconds, cooldown_seconds(account, model, seconds, now)
        until = now + max(seconds, MIN_COOLDOWN)
        with self._lock:
            account.cooldowns[model] = until
        log.warning("account %s rate-limited on %s for %.1fs%s", account.label, model, seconds,
                    " (its weekly quota is empty)" if seconds > given else "")
        # Every worker and instance stays off the pair too (they read it as they choose an account).
        self.state.put(f"cooldown:{account.email}:{model}", until, until - now)
        if self.on_rate_limit is not None:
            self.on_rate_limit(account, model)

    def mark_invalid(self, account: Account, reason: str) -> None:
        """Take the account out of rotation and say why in the accounts file (``accounts list`` shows it)."""
        account.invalid_reason = reason
        log.error("account %s marked invalid: %s", account.label, reason)
        self.save(account, {"isInvalid": True, "invalidReason": reason, "invalidAt": iso(time.time())})

    def clear_invalid(self, account: Account) -> None:
        """Its token worked again: back into rotation."""
        if account.invalid_reason is None:
            return
        account.invalid_reason = None
        log.info("account %s is valid again", account.label)
        self.save(account, {"isInvalid": False, "invalidReason": None})

    def mark_needs_verification(self, account: Account, url: str | None, message: str) -> None:
        """Google wants the account verified in a browser: out of rotation, and the URL kept in the accounts
        file for the user, until a call succeeds again (`accounts verify`, POST /refresh-token)."""
        with self._lock:
            if account.needs_verification and account.verification_url == url:
                return  # said once already
            account.needs_verification, account.verification_url = True, url
        log.error("account %s needs verification: open %s, then run `python -m gateway accounts verify`",
                  account.label, url or f"the link Google sent ({message})")
        self.save(account, verification_fields(url, message, time.time()))

    def clear_needs_verification(self, account: Account) -> None:
        if not account.needs_verification:
            return
        account.needs_verification, account.verification_url = False, None
        log.info("account %s is verified again", account.label)
        self.save(account, CLEAR_VERIFICATION)

    def mark_suspended(self, account: Account, reason: str) -> None:
        """Google banned the account: it is never used again until the user runs `accounts enable` (the mark
        is in the accounts file, so a restart does not forget it)."""
        with self._lock:
            if account.suspended_reason is not None:
                return
            account.suspended_reason = reason
        log.error("account %s suspended by Google: %s; it stays out until `python -m gateway accounts enable`",
                  account.label, reason)
        self.save(account, suspension_fields(reason, time.time()))

    def refused_counts(self) -> dict[str, int]:
        """How many accounts Google refused, by why; only the non-zero counts."""
        self.reload_if_changed()
        counts = {"needsVerification": sum(1 for a in self.accounts if a.needs_verification),
                  "suspended": sum(1 for a in self.accounts if a.suspended_reason is not None)}
        return {name: count for name, count in counts.items() if count}

    def record_quotas(self, account: Account, listing: dict[str, Any]) -> None:
        account.quotas = quotas = parse_quotas(listing)
        for model, quota in quotas.items():  # the hybrid strategy of every worker weighs by them
            self.state.put(f"quota:{account.email}:{model}", [quota.fraction, quota.reset_time], QUOTA_TTL)

    def record_windows(self, account: Account, summary: dict[str, Any] | None) -> None:
        """The account's quota windows; None when the upstream could not say (they are then unknown)."""
        account.windows = parse_windows(summary) if summary is not None else None

    def no_account_message(self, *, public: bool = False) -> str:
        """Why no account can serve. ``public`` (for /health, which needs no key) names no file: a path tells a
        stranger the user's name and the machine's layout."""
        path = getattr(self.source, "path", None)
        if self.error:
            error = self.error.replace(str(path), "the accounts file") if public and path else self.error
            return f"the accounts cannot be used: {error}"
        if not self.accounts:
            return (
                "no Google account is configured: add one with `python -m gateway accounts add`, or point "
                "GATEWAY_ACCOUNTS_FILE at an accounts file, or set GATEWAY_ACCOUNTS_JSON"
                + ("" if public or path is None else f" (looked at {path})")
            )
        return (
            "no usable Google account: every configured account is disabled, suspended, waiting for verification "
            "or its refresh token was rejected; see `python -m gateway accounts list`, and re-add rejected ones "
            "with `python -m gateway accounts add`"
        )

    def save(self, account: Account, fields: dict[str, Any]) -> None:
        """Keep what was learned about the account (project id, marks) where its entry lives, off the request path:
        a file write waits for the disk (fsync), and nothing the request does depends on it having finished. One
        writer, in order, so a mark and its clearing cannot land the wrong way round."""
        if self.source is None:
            return
        with self._lock:
            if self._writes is None:
                self._writes = queue.SimpleQueue()
                threading.Thread(target=self._write_entries, name="save-accounts", daemon=True).start()
            self._writes.put((account, fields))

    def _write_entries(self) -> None:
        assert self._writes is not None and self.source is not None
        while True:
            account, fields = self._writes.get()
            try:
                self.source.update_entry(account.email, fields)
            except (OSError, AccountsFileError) as exc:
                log.warning("could not save the state of %s: %s", account.label, exc)

    # -- following the accounts file --------------------------------------------------------------

    def reload_if_changed(self) -> None:
        """Re-read the accounts file if it changed (at most once per ``reload_interval``)."""
        if self._settings is None or self.source is None:
            return
        if time.monotonic() - self._checked_at < self.reload_interval:
            return
        if not self._reload_lock.acquire(blocking=False):
            return  # another request is reloading right now
        try:
            self._checked_at = time.monotonic()
            version = self.source.version()
            if version == self._source_version:
                return
            self._source_version = version
            try:
                entries = account_entries(self.source.read())
            except AccountsFileError as exc:
                self.error = str(exc)
                log.error("accounts file unusable, keeping the accounts loaded before: %s", exc)
                return
            with self._lock:
                self.accounts = _build_all(entries, self._settings, self.accounts, self.state)
                self.error = None
            log.info("accounts file changed: %d account(s)", len(self.accounts))
        finally:
            self._reload_lock.release()


def _take_marks(account: Account, entry: dict[str, Any]) -> None:
    """The marks of an entry that take an account out of rotation (lifting them waits for the next reload)."""
    account.invalid_reason = account.invalid_reason or _invalid_reason(entry)
    account.suspended_reason = account.suspended_reason or _suspended_reason(entry)
    if entry.get("needsVerification") is True and not account.needs_verification:
        account.needs_verification, account.verification_url = True, _text(entry.get("validationUrl"))


def cooldown_seconds(account: Account, model: str, seconds: float, now: float) -> float:
    """How long a 429 keeps ``account`` off ``model``: what the upstream said, but at least until the weekly
    reset when the weekly window is empty (the upstream's delay then speaks of the 5-hour window, or nothing)."""
    weekly = account.weekly_reset(model, now)
    return max(seconds, weekly - now) if weekly is not None else seconds


def _build_all(entries: list[dict[str, Any]], settings: Settings, current: list[Account],
               state: StateStore | None = None) -> list[Account]:
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
            account = build_account(entry, settings, state)
        else:
            account.enabled = entry.get("enabled", True) is not False
            account.invalid_reason = _invalid_reason(entry)
            account.needs_verification = entry.get("needsVerification") is True
            account.verification_url = _text(entry.get("validationUrl"))
            account.suspended_reason = _suspended_reason(entry)
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
