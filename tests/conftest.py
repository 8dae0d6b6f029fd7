"""Fixtures: the fake Cloud Code upstream and the gateway, both real HTTP servers on loopback."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anthropic
import pytest
from werkzeug.serving import make_server

from app import create_app
from gateway.config import Settings
from tests.fake_cloudcode import FakeCloudCode

REFRESH_TOKEN = "1//refresh-token-alice-SECRET"
# A real 1x1 PNG, base64.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4f20000000049454e44ae426082"
    )
).decode()


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


def manifest_url(fake: FakeCloudCode) -> str:
    """The fake's copy of the Antigravity updater's manifest (never the real one: tests stay off the network)."""
    return f"{fake.base_url}/manifest/latest-arm64-mac.yml"


def gateway_settings(fake: FakeCloudCode, accounts_file: Path, **overrides) -> Settings:
    values = dict(
        host="127.0.0.1",
        port=0,
        accounts_file=accounts_file,
        cloudcode_urls=(fake.base_url,),
        oauth_token_url=fake.token_url,
        client_version_url=manifest_url(fake),
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


@pytest.fixture
def image_server() -> Iterator[str]:
    """The base URL of a local server answering PNG bytes (for image URLs the gateway must fetch)."""
    raw = base64.b64decode(PNG)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
