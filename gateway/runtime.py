"""The gateway's long-lived parts, built once per application and shared by every request."""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

from .accounts.credentials import InvalidGrant
from .accounts.limits import refresh_windows
from .accounts.pool import AccountPool
from .catalog import Catalog
from .config import Settings
from .dispatch import Dispatcher
from .sealed import server_sealer
from .state import open_store
from .state.responses import response_store
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient
from .upstream.errors import ClientVersionRefused
from .upstream.version import ClientVersion
from .websearch import WebSearch

log = logging.getLogger(__name__)

# How old the model listing may grow before a request refreshes it (in the background), and how soon after a
# failed or forced refresh another may be tried.
MODEL_LISTING_TTL = 300.0
MODEL_LISTING_RETRY = 30.0


class Gateway:
    def __init__(self, settings: Settings, pool: AccountPool | None = None) -> None:
        self.settings = settings
        # An unusable accounts file still starts the gateway: /health and requests say what is wrong.
        self.state = open_store(settings.redis_url, settings.shared_state_dir)
        self.pool = pool if pool is not None else AccountPool.from_settings(settings, self.state)
        self.version = ClientVersion.from_settings(settings, self.state)
        self.version.start()
        self.client = CloudCodeClient(settings, self.version)
        self.catalog = Catalog(settings.model_aliases)
        self.signatures = SignatureRegistry(self.state)
        # The Responses API's stored responses, and the key that seals what its clients carry back.
        self.responses = response_store(self.state, settings.shared_state_dir, shared=settings.redis_url is not None,
                                        ttl=settings.responses_ttl, max_bytes=settings.responses_max_bytes)
        self.sealer = server_sealer(settings.secret_key, self.state)
        self.dispatcher = Dispatcher(settings, self.pool, self.client, self.catalog, self.signatures,
                                     models_changed=self.model_missing)
        self._listing_at = 0.0
        # Seconds between two listing fetches that a failure or a missing model asks for.
        self.listing_retry = MODEL_LISTING_RETRY
        self._tried_at = -MODEL_LISTING_RETRY
        self._listing_lock = threading.Lock()
        self.dispatcher.before_resolve = self.follow_model_listing
        self.web_search = WebSearch(self.dispatcher)

    def follow_model_listing(self) -> None:
        """Keep the catalog on the upstream's listing: fetched before the first model lookup, then refreshed in
        the background once it is older than MODEL_LISTING_TTL, so no request waits for it after the first."""
        now = time.monotonic()
        if not self.catalog.live:
            if now - self._tried_at >= self.listing_retry:
                self.refresh_model_listing(force=True)
        elif now - self._listing_at >= MODEL_LISTING_TTL and now - self._tried_at >= self.listing_retry:
            self._tried_at = now
            threading.Thread(target=self.refresh_model_listing, kwargs={"force": True}, daemon=True).start()

    def model_missing(self) -> bool:
        """The upstream answered 404 for a model: refresh the listing at once (at most every
        MODEL_LISTING_RETRY seconds); True when it was refreshed, so the name may resolve differently."""
        if time.monotonic() - self._tried_at < self.listing_retry:
            return False
        return self.refresh_model_listing(force=True)

    def refresh_model_listing(self, *, force: bool = False) -> bool:
        """Take the upstream's model listing into the catalog (from the first account that can fetch it)."""
        if not force and time.monotonic() - self._listing_at < MODEL_LISTING_TTL:
            return False
        with self._listing_lock:
            if not force and time.monotonic() - self._listing_at < MODEL_LISTING_TTL:
                return False
            self._tried_at = time.monotonic()
            for account in list(self.pool.accounts):
                if not account.usable():
                    continue
                try:
                    listing = self.client.fetch_available_models(account)
                except InvalidGrant as exc:
                    self.pool.mark_invalid(account, f"refresh token rejected: {exc}")
                    continue
                except ClientVersionRefused:  # every account would hear the same (logged where it was learned)
                    return False
                except Exception as exc:  # noqa: BLE001 - a failed listing must not fail the request that asked
                    log.warning("model listing via %s failed: %s", account.label, type(exc).__name__)
                    continue
                self.pool.record_quotas(account, listing)
                refresh_windows(self.pool, self.client, account)
                if self.catalog.update_from_listing(listing):
                    self._listing_at = time.monotonic()
                    return True
            return False


def current_gateway() -> Gateway:
    return current_app.extensions["gateway"]
