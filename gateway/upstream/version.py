"""The Antigravity version the gateway reports to Google, read from the Antigravity updater's manifest.

Google reads the client version from the User-Agent, refuses versions it considers too old and resolves newer
models only for recent ones (docs/upstream.md, "Client version"). A version written into the code breaks the
gateway each time Google raises that bar; the updater's manifest names the version Antigravity users run, so the
gateway reports that one: read in the background at start and every few hours, read again at once when Google
refuses the version sent, and never below a built-in floor. Requests never wait for the background read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import requests

from ..config import Settings
from ..state import MemoryStore, StateStore

log = logging.getLogger(__name__)

# Reported until a manifest has been read, and never undercut by one: Google resolves the models released since
# August 2026 only for 2.9.0 and later.
FLOOR = "2.9.1"
# How long a version read from the manifest is used before the manifest is read again.
REFRESH_INTERVAL = 3 * 3600.0
# After a failed read: soon enough to recover from an outage, rarely enough not to hammer a dead host.
RETRY_INTERVAL = 300.0
# Shortest time between two reads that refusals trigger: a gate no manifest clears yet must not turn every
# request into a manifest read as well.
REFUSAL_INTERVAL = 60.0
# Connect and read timeouts of a manifest read, short because nothing useful waits for it.
FETCH_TIMEOUT = (3.0, 5.0)
# How long workers keep a shared version: far longer than REFRESH_INTERVAL, so a stale version outlives an outage.
STORE_TTL = 30 * 86400.0

_VERSION = re.compile(r"\d+(?:\.\d+){1,3}")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def manifest_version(text: str) -> str:
    """The top-level ``version:`` of an electron-builder ``latest-*.yml``; ValueError when it names none."""
    for line in text.splitlines():
        if line.startswith("version:"):
            value = line.partition(":")[2].split("#", 1)[0].strip().strip("'\"")
            if not _VERSION.fullmatch(value):
                raise ValueError(f"the manifest's version {value[:40]!r} is not a version number")
            return value
    raise ValueError("the manifest names no version")


def fetch_manifest_version(url: str, timeout: tuple[float, float] = FETCH_TIMEOUT) -> str:
    response = requests.get(url, timeout=timeout)
    response.raise_for_status()
    return manifest_version(response.text)


@dataclass(frozen=True)
class Learned:
    """A version read from the manifest, and when (wall-clock time: workers compare what they store)."""

    version: str
    checked: float


class SharedVersion:
    """The last version read, in the gateway's state store: what one worker or instance reads, the others use."""

    KEY = "client-version"

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def get(self) -> Learned | None:
        value = self._state.get(self.KEY)
        return Learned(*value) if value else None

    def put(self, learned: Learned) -> None:
        self._state.put(self.KEY, [learned.version, learned.checked], STORE_TTL)


def in_background(work: Callable[[], None]) -> None:
    """Run ``work`` in a daemon thread (a greenlet under gevent's patching)."""
    threading.Thread(target=work, name="client-version", daemon=True).start()


class ClientVersion:
    """The version to report: the pinned one, else the manifest's (never below the floor), else the floor.

    ``fetch`` returns the manifest's version and raises on any failure; ``clock`` gives wall-clock time;
    ``spawn`` runs a refresh without making its caller wait. Background refreshes begin with ``start()``:
    a one-off command reads the manifest only when Google refuses its version.
    """

    def __init__(
        self,
        fetch: Callable[[], str],
        *,
        store: StateStore | None = None,
        pinned: str | None = None,
        floor: str = FLOOR,
        source: str = "the manifest",
        clock: Callable[[], float] = time.time,
        spawn: Callable[[Callable[[], None]], None] = in_background,
    ) -> None:
        self.pinned = pinned
        self.floor = floor
        self.source = source
        self._fetch = fetch
        self._store = SharedVersion(store if store is not None else MemoryStore())
        self._clock = clock
        self._spawn = spawn
        self._version = pinned or floor
        self._checked = float("-inf")  # when the version in use was read from the manifest, by any worker
        self._next_check = float("inf")  # no background refresh before start()
        self._refreshing = False
        self._refetched = float("-inf")
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        self._refusal_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, state: StateStore | None = None) -> ClientVersion:
        return cls(partial(fetch_manifest_version, settings.client_version_url), store=state,
                   pinned=settings.client_version, source=settings.client_version_url)

    def start(self) -> None:
        """Read the manifest in the background now, and again whenever the version is due."""
        if self.pinned is None:
            self._next_check = float("-inf")
            self.current()

    def current(self) -> str:
        """The version to send now; starts a background refresh when one is due, never waits for it."""
        if self._clock() >= self._next_check:
            with self._lock:
                due = not self._refreshing and self._clock() >= self._next_check
                self._refreshing = self._refreshing or due
            if due:
                self._spawn(self._refresh_in_background)
        return self._version

    def refresh(self) -> None:
        """Use what another worker read recently, else read the manifest; a failed read keeps the last good version."""
        if self.pinned is not None:
            return
        self._adopt_shared()
        now = self._clock()
        if now - self._checked < REFRESH_INTERVAL:
            self._next_check = self._checked + REFRESH_INTERVAL
        elif self._read(now):
            self._next_check = now + REFRESH_INTERVAL
        else:
            self._next_check = now + RETRY_INTERVAL

    def after_refusal(self, refused: str) -> str | None:
        """The version to retry with after Google refused ``refused``; None when there is no other.

        Refusals wait for one another: a read of the manifest serves every refusal waiting for it, as Google
        answers every account the same. None is logged once per version.
        """
        with self._refusal_lock:
            if self.pinned is None:
                self._adopt_shared()
                now = self._clock()
                if self._version == refused and now - self._refetched >= REFUSAL_INTERVAL:
                    self._refetched = now
                    if self._read(now):
                        self._next_check = now + REFRESH_INTERVAL
                if self._version != refused:
                    return self._version
            if refused not in self._logged:
                self._logged.add(refused)
                log.error("%s", self.refusal_message(refused, self.source))
            return None

    def refusal_message(self, version: str, manifest: str = "the manifest") -> str:
        """What Google's refusal of ``version`` means, and the two settings that change the version."""
        if self.pinned is not None:
            return (f"Google refuses client version {version}, which GATEWAY_CLIENT_VERSION pins: set it to a "
                    "version Google accepts, or unset it to follow the manifest at GATEWAY_CLIENT_VERSION_URL")
        return (f"Google refuses client version {version} and {manifest} names no newer one: set "
                "GATEWAY_CLIENT_VERSION to a version Google accepts, or GATEWAY_CLIENT_VERSION_URL to a manifest "
                "that names one")

    # -- internals --------------------------------------------------------------------------------

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        finally:
            self._refreshing = False

    def _read(self, now: float) -> bool:
        """Read the manifest and use its version; False (and a warning) when that fails."""
        try:
            version = self._fetch()
            if not _VERSION.fullmatch(version):
                raise ValueError(f"{version[:40]!r} is not a version number")
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good version
            log.warning("could not read the Antigravity version from %s (%s); reporting %s",
                        self.source, _reason(exc), self._version)
            return False
        learned = Learned(version, now)
        self._store.put(learned)
        self._adopt(learned)
        return True

    def _adopt_shared(self) -> None:
        learned = self._store.get()
        if learned is not None and learned.checked >= self._checked:
            self._adopt(learned)

    def _adopt(self, learned: Learned) -> None:
        self._checked = learned.checked
        version = max(learned.version, self.floor, key=version_key)
        if version != self._version:
            log.info("reporting Antigravity version %s to Google (%s names %s)", version, self.source, learned.version)
            self._version = version


def _reason(exc: Exception) -> str:
    """A short cause for the log: the exception type, or the message of our own ValueErrors."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, ValueError) and not isinstance(exc, requests.RequestException):
        return str(exc)
    return type(exc).__name__
