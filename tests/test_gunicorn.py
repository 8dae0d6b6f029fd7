"""The production server: gunicorn with gevent workers, as the Procfile runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest
import requests

from tests.fake_cloudcode import Reply

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_url(fake, accounts_file):
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_ACCOUNTS_FILE": str(accounts_file),
        "GATEWAY_CLOUDCODE_URLS": fake.base_url,
        "GATEWAY_OAUTH_TOKEN_URL": fake.token_url,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "2", "--no-control-socket",
         "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start: " + process.stderr.read1(4000).decode())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_gunicorn_gevent_serves_stream_and_json(gunicorn_url, fake) -> None:
    client = anthropic.Anthropic(base_url=gunicorn_url, api_key="k", max_retries=0)
    fake.enqueue(Reply.text("through gunicorn", chunks=3))
    with client.messages.stream(model="gemini-3-flash", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "through gunicorn"
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=50,
                                     messages=[{"role": "user", "content": "plain"}])
    assert message.content[0].text == "Echo: plain"
    assert requests.get(f"{gunicorn_url}/health", timeout=5).json()["activeAccounts"] == 1
