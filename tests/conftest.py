"""Fixtures: the fake Cloud Code upstream and the gateway, both real HTTP servers on loopback."""

from __future__ import annotations

import base64
import io
import json
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest
from werkzeug.serving import make_server

from app import create_app
from gateway.config import Settings
from tests.fake_cloudcode import FakeCloudCode

ROOT = Path(__file__).resolve().parent.parent
REFRESH_TOKEN = "1//refresh-token-alice-SECRET"
# A real 1x1 PNG, base64.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4f20000000049454e44ae426082"
    )
).decode()
RAW_PNG = base64.b64decode(PNG)


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


# Three accounts: alice (the ``fake`` fixture's), bob and carol.
EMAILS = ["alice@example.com", "bob@example.com", "carol@example.com"]
TOKENS = {"alice@example.com": REFRESH_TOKEN, "bob@example.com": "1//refresh-bob",
          "carol@example.com": "1//refresh-carol"}


@pytest.fixture
def trio_file(fake: FakeCloudCode, tmp_path: Path) -> Path:
    """alice (from the fake fixture), bob and carol, all usable, in one accounts file."""
    for email in EMAILS[1:]:
        fake.add_account(email, refresh_token=TOKENS[email], project_id=f"proj-{email.split('@')[0]}")
    entries = [{"email": e, "refreshToken": TOKENS[e], "projectId": f"proj-{e.split('@')[0]}"} for e in EMAILS]
    return write_accounts(tmp_path / "accounts.json", entries)


@pytest.fixture
def gateway(fake: FakeCloudCode, accounts_file: Path) -> Iterator[GatewayServer]:
    settings = gateway_settings(fake, accounts_file)
    url, app, server = serve(settings)
    yield GatewayServer(url, app, settings, accounts_file)
    server.shutdown()


@pytest.fixture
def client(gateway: GatewayServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="any-key", max_retries=0, timeout=30)


class ImageServer:
    """A loopback server answering PNG bytes on any path, ``/redirect?to=URL`` with a 302; it records each Host."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.hosts.append(self.headers.get("Host", ""))
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(RAW_PNG)))
                self.end_headers()
                self.wfile.write(RAW_PNG)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image_server() -> Iterator[str]:
    """The base URL of a local server answering PNG bytes (for image URLs the gateway must fetch)."""
    server = ImageServer()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


# -- Redis ----------------------------------------------------------------------------------------------------

# The project's machines (CI's included) run Redis here; each test run takes a database no other run holds.
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server of the test's own (for tests that stop and start it), on a free loopback port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process = None

    def start(self) -> RedisServer:
        import shutil
        import subprocess
        import time

        binary = shutil.which("redis-server")
        if binary is None:
            _missing_redis("redis-server is not on PATH")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if _redis_answers(self.url):
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def _missing_redis(reason: str) -> None:
    import os

    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis is needed in CI: {reason}")
    pytest.skip(f"no Redis: {reason}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """GATEWAY_TEST_REDIS_URL, else the machine's Redis at 127.0.0.1:6379, else a redis-server started here."""
    import os

    url = os.environ.get("GATEWAY_TEST_REDIS_URL") or DEFAULT_TEST_REDIS
    if _redis_answers(url):
        yield url
        return
    if os.environ.get("GATEWAY_TEST_REDIS_URL"):
        _missing_redis(f"GATEWAY_TEST_REDIS_URL={url} does not answer")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: str) -> Iterator[str]:
    """A database of that Redis no other test run is using (runs on one machine must not empty each other's)."""
    import os

    import redis

    base = redis_server.rsplit("/", 1)[0]
    for number in range(1, 16):
        url = f"{base}/{number}"
        client = redis.Redis.from_url(url)
        if client.set("gateway-tests:owner", os.getpid(), nx=True, ex=3600):
            try:
                yield url
            finally:
                client.delete("gateway-tests:owner")
            return
    pytest.fail("every Redis database is taken by another test run")


@pytest.fixture
def redis_db(redis_url: str) -> str:
    """The test Redis, emptied: the URL to give the gateway."""
    import os

    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.set("gateway-tests:owner", os.getpid(), ex=3600)
    return redis_url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def saved_accounts(path: Path, ready, timeout: float = 5.0) -> dict:  # noqa: ANN001
    """The accounts file once ``ready(data)`` holds: the gateway saves what it learns off the request path."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        data = json.loads(path.read_text())
        if ready(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.02)


# -- the real clients (Claude Code, Codex, gemini-cli) --------------------------------------------------------


def cli_cache(name: str) -> Path:
    """Where ``.ci/run`` installs a client's npm package; kept between CI runs when the machine is."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gateway-ci" / name


def find_cli(env_var: str, name: str, binary: str) -> Path | None:
    """``env_var`` if set, else the CI cache's ``node_modules/.bin/<binary>``; None unless it is an executable."""
    import os

    explicit = os.environ.get(env_var)
    candidate = Path(explicit) if explicit else cli_cache(name) / "node_modules" / ".bin" / binary
    return candidate if candidate.exists() and os.access(candidate, os.X_OK) else None


def require_cli(env_var: str, name: str, binary: str, package: str) -> Path:
    """The client's executable; a test without it skips, or fails in CI (``CI=true``), saying how to get it."""
    import os

    found = find_cli(env_var, name, binary)
    if found is None:
        reason = (f"{name} not found: set {env_var} or install it with "
                  f"`npm install --prefix {cli_cache(name)} {package}` (.ci/run does)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@dataclass
class Seen:
    """One request as it reached the gateway's WSGI app, and the status it was answered with."""

    method: str
    path: str
    body: Any
    status: int | None = None

    @property
    def stream(self) -> Any:
        return self.body.get("stream") if isinstance(self.body, dict) else None


class RequestLog:
    """WSGI middleware that records every request body before the gateway reads it.

    Reading the body here, rather than relying on the access log, records requests that fail validation too,
    and records them before the response ends (the access line is written only when the response closes).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.seen: list[Seen] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = Seen(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), body)
        self.seen.append(seen)

        def recording_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            seen.status = int(status.split()[0])
            return start_response(status, headers, *args)

        return self.app(environ, recording_start_response)

    def messages(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path == "/v1/messages"]


@pytest.fixture
def seen(gateway: GatewayServer) -> RequestLog:
    log = RequestLog(gateway.app.wsgi_app)
    gateway.app.wsgi_app = log  # type: ignore[attr-defined]
    return log


