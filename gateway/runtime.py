"""The gateway's long-lived parts, built once per application and shared by every request."""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

from .accounts.limits import refresh_windows
from .accounts.pool import AccountPool
from .catalog import Catalog
from .config import Settings
from .dispatch import Dispatcher
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient

log = logging.getLogger(__name__)

MODEL_LISTING_TTL = 300.0


class Gateway:
    def __init__(self, settings: Settings, pool: AccountPool | None = None) -> None:
        self.settings = settings
        # An unusable accounts file still starts the gateway: /health and requests say what is wrong.
        self.pool = pool if pool is not None else AccountPool.from_file(settings)
        self.client = CloudCodeClient(settings)
        self.catalog = Catalog(settings.model_aliases)
        self.signatures = SignatureRegistry(settings.shared_state_dir)
        self.dispatcher = Dispatcher(settings, self.pool, self.client, self.catalog, self.signatures)
        self._listing_at = 0.0
        self._listing_lock = threading.Lock()

    def refresh_model_listing(self) -> None:
        """Merge the upstream's model listing into the catalogue, at most every few minutes."""
        if time.monotonic() - self._listing_at < MODEL_LISTING_TTL:
            return
        with self._listing_lock:
            if time.monotonic() - self._listing_at < MODEL_LISTING_TTL:
                return
            self._listing_at = time.monotonic()
            for account in self.pool.accounts:
                if not account.usable():
                    continue
                try:
                    self.client.discover_project(account)
                    listing = self.client.fetch_available_models(account)
                    self.catalog.update_from_listing(listing)
                    self.pool.record_quotas(account, listing)
                    refresh_windows(self.pool, self.client, account)
                    return
                except Exception as exc:  # noqa: BLE001 - a failed listing must not fail /v1/models
                    log.warning("model listing via %s failed: %s", account.label, type(exc).__name__)


def current_gateway() -> Gateway:
    return current_app.extensions["gateway"]
