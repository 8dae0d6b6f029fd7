"""Following the upstream's model listing, so that model names resolve against what Google serves today.

Google renames and retires models every few months (docs/upstream.md, "Models"): the listing is fetched before the
first lookup, refreshed in the background once it is old, and at once when the upstream says a model is gone.
"""

from __future__ import annotations

import logging
import threading
import time

from .accounts.credentials import InvalidGrant
from .accounts.limits import refresh_windows
from .accounts.pool import AccountPool
from .catalog import Catalog
from .upstream.client import CloudCodeClient
from .upstream.errors import ClientVersionRefused

log = logging.getLogger(__name__)

# How old the model listing may grow before a request refreshes it (in the background), and how soon after a
# failed or forced refresh another may be tried.
MODEL_LISTING_TTL = 300.0
MODEL_LISTING_RETRY = 30.0


class ModelListing:
    def __init__(self, pool: AccountPool, client: CloudCodeClient, catalog: Catalog) -> None:
        self.pool = pool
        self.client = client
        self.catalog = catalog
        self._listing_at = 0.0
        # Seconds between two listing fetches that a failure or a missing model asks for.
        self.retry = MODEL_LISTING_RETRY
        self._tried_at = -MODEL_LISTING_RETRY
        self._listing_lock = threading.Lock()

    def follow(self) -> None:
        """Keep the catalog on the upstream's listing: fetched before the first model lookup, then refreshed in
        the background once it is older than MODEL_LISTING_TTL, so no request waits for it after the first."""
        now = time.monotonic()
        if not self.catalog.live:
            if now - self._tried_at >= self.retry:
                self.refresh(force=True)
        elif now - self._listing_at >= MODEL_LISTING_TTL and now - self._tried_at >= self.retry:
            self._tried_at = now
            threading.Thread(target=self.refresh, kwargs={"force": True}, daemon=True).start()

    def model_missing(self) -> bool:
        """The upstream answered 404 for a model: refresh the listing at once (at most every
        MODEL_LISTING_RETRY seconds); True when it was refreshed, so the name may resolve differently."""
        if time.monotonic() - self._tried_at < self.retry:
            return False
        return self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> bool:
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
