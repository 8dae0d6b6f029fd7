"""The gateway's long-lived parts, built once per application and shared by every request."""

from __future__ import annotations

from flask import current_app

from .accounts.pool import AccountPool
from .catalog import Catalog
from .config import Settings
from .dispatch import Dispatcher
from .model_listing import ModelListing
from .sealed import server_sealer
from .state import open_store
from .state.responses import response_store
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient
from .upstream.version import ClientVersion
from .websearch import WebSearch


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
        self.listing = ModelListing(self.pool, self.client, self.catalog)
        self.dispatcher = Dispatcher(settings, self.pool, self.client, self.catalog, self.signatures,
                                     models_changed=self.listing.model_missing)
        self.dispatcher.before_resolve = self.listing.follow
        self.web_search = WebSearch(self.dispatcher)


def current_gateway() -> Gateway:
    return current_app.extensions["gateway"]
