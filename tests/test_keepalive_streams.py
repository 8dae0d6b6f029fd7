"""The stream relay's disconnect watcher under load: two bugs the benchmark (bench/run.py) found.

* On keep-alive connections (Claude Code and the SDKs use them) the watcher of a finished stream peeked at the
  client socket while gunicorn was reading the next request from it; gevent refuses two waiters on one socket,
  so gunicorn's read failed ("Error handling request (no URI read)") and the client's next request was lost.
* With a few hundred streams open, client sockets got descriptors above 1024, which ``select()`` refuses; the
  watcher took that for a broken client and each such stream ended at its next ping without ``message_stop``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fake_cloudcode import FakeCloudCode
from tests.test_gunicorn import free_port, start_gunicorn, upstream_env, wait_healthy

CLIENTS, REQUESTS_EACH = 6, 15


@pytest.fixture
def gunicorn(fake: FakeCloudCode, accounts_file: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The gateway under gunicorn with gevent workers; yields its URL and the file its stderr goes to."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**upstream_env(fake, accounts_file), "GATEWAY_LOG_LEVEL": "WARNING"}
    with log.open("w") as output:
        process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", "2", stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url):
            pytest.fail("gunicorn did not start: " + log.read_text()[-2000:])
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=15)


def streams_on_one_connection(url: str, index: int) -> list[str]:
    """Sequential streaming requests over one keep-alive session; the problems seen, if any."""
    problems = []
    with requests.Session() as session:
        for k in range(REQUESTS_EACH):
            body = {"model": "gemini-3-flash", "max_tokens": 50, "stream": True,
                    "messages": [{"role": "user", "content": f"client {index} request {k}"}]}
            try:
                response = session.post(f"{url}/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=20)
            except requests.RequestException as exc:
                problems.append(f"{index}/{k}: {type(exc).__name__}")
                continue
            if response.status_code != 200 or "event: message_stop" not in response.text:
                problems.append(f"{index}/{k}: {response.status_code} {response.text[:200]}")
    return problems


def test_back_to_back_streams_on_keepalive_connections(gunicorn: tuple[str, Path]) -> None:
    url, log = gunicorn
    with ThreadPoolExecutor(CLIENTS) as pool:
        problems = [p for found in pool.map(lambda i: streams_on_one_connection(url, i), range(CLIENTS))
                    for p in found]
    text = log.read_text()
    assert problems == []
    assert "ConcurrentObjectUseError" not in text and "Error handling request" not in text, text[-3000:]


class _Pump:
    """What the watcher needs of the relay's pump: a stop flag and stop()."""

    def __init__(self) -> None:
        import threading

        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()


def test_disconnect_watcher_works_on_descriptors_above_1024(monkeypatch: pytest.MonkeyPatch) -> None:
    """Holding a few hundred streams puts client sockets above FD_SETSIZE, where select() refuses them.

    The watcher used to take that refusal for a broken client and stop the stream, which then ended at its next
    ping without message_stop. It must keep watching, and still notice the client going away.
    """
    import resource
    import socket
    import threading

    from gateway.api import streaming

    monkeypatch.setattr(streaming, "WATCH_INTERVAL", 0.05)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"cannot open descriptor 2000 (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    ours, theirs = socket.socketpair()
    high = socket.socket(fileno=os.dup2(ours.fileno(), 2000))
    ours.close()
    pump = _Pump()
    watcher = threading.Thread(target=streaming._watch, args=(high, pump), daemon=True)
    try:
        watcher.start()
        time.sleep(0.3)
        assert not pump.stopped.is_set(), "the watcher stopped a stream whose client is still there"
        theirs.close()
        assert pump.stopped.wait(5), "the watcher did not notice the client going away"
    finally:
        pump.stop()
        watcher.join(5)
        high.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
