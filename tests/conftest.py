"""Fixtures: the fake Cloud Code upstream and the gateway, both real HTTP servers on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import pytest
from werkzeug.serving import make_server

from app import create_app
from gateway.config import Settings
from tests.fake_cloudcode import FakeCloudCode

REFRESH_TOKEN = "1//refresh-token-alice-SECRET"


@dataclass
class GatewayServer:
    url: str
    app: object
    settings: Settings
    accounts_file: Path

    @property
    def gateway(self):  # noqa: ANN201 - the runtime object, for white-box checks
        return self.app.extensions["gateway"]


@pytest.fixture
def fake() -> Iterator[FakeCloudCode]:
    server = FakeCloudCode().start()
    server.add_account("alice@example.com", refresh_token=REFRESH_TOKEN, project_id="proj-alice")
    yield server
    server.stop()


def write_accounts(path: Path, accounts: list[dict]) -> Path:
    path.write_text(json.dumps({"accounts": accounts}))
    path.chmod(0o600)
    return path


def gateway_settings(fake: FakeCloudCode, accounts_file: Path, **overrides) -> Settings:
    values = dict(
        host="127.0.0.1",
        port=0,
        accounts_file=accounts_file,
        cloudcode_urls=(fake.base_url,),
        oauth_token_url=fake.token_url,
        log_level="DEBUG",
        server_error_delay=0.0,
        empty_retry_delay=0.0,
        allow_private_image_urls=True,
    )
    values.update(overrides)
    return Settings(**values)


def serve(settings: Settings) -> tuple[str, object, object]:
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", app, server


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return write_accounts(
        tmp_path / "accounts.json",
        [{"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice", "enabled": True}],
    )


@pytest.fixture
def gateway(fake: FakeCloudCode, accounts_file: Path) -> Iterator[GatewayServer]:
    settings = gateway_settings(fake, accounts_file)
    url, app, server = serve(settings)
    yield GatewayServer(url, app, settings, accounts_file)
    server.shutdown()


@pytest.fixture
def client(gateway: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="any-key", max_retries=0, timeout=30)
