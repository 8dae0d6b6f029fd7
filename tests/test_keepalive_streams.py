"""The stream relay's disconnect watcher and pump under load: two bugs the benchmark (bench/run.py) found, and
the per-process watcher and light pump that keep thousands of held streams cheap.

* On keep-alive connections (Claude Code and the SDKs use them) the watcher of a finished stream peeked at the
  client socket while gunicorn was reading the next request from it; gevent refuses two waiters on one socket,
  so gunicorn's read failed ("Error handling request (no URI read)") and the client's next request was lost.
* With a few hundred streams open, client sockets got descriptors above 1024, which ``select()`` refuses; the
  watcher took that for a broken client and each such stream ended at its next ping without ``message_stop``.
* One watcher per process (an epoll object over every stream's client socket) replaced a watcher greenlet per
  stream; a list and a lock replaced the pump's queue. Both are concurrency-critical and tested here directly.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from gateway.api import streaming
from tests.fake_cloudcode import FakeCloudCode, Reply
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
            body = {"model": "gemini-3-flash-agent", "max_tokens": 50, "stream": True,
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


def test_client_disconnect_releases_the_upstream_under_gunicorn(gunicorn: tuple[str, Path], fake: FakeCloudCode) -> None:
    """Under gevent the per-process watcher waits through gevent's poll() on the epoll object's descriptor."""
    url, log = gunicorn
    fake.enqueue(Reply(text="long silence follows", chunks=3, stall_after=1, stall_seconds=20))
    body = json.dumps({"model": "gemini-3-flash-agent", "max_tokens": 50, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-api-key: k\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b"content_block_delta" not in received:
        received += sock.recv(65536)
    sock.close()
    closed = time.monotonic()
    while fake.closed_by_client == 0 and time.monotonic() < closed + 3:
        time.sleep(0.005)
    assert fake.closed_by_client == 1, log.read_text()[-3000:]
    assert time.monotonic() - closed < 1.0
    # The worker serves on, its watcher too.
    assert streams_on_one_connection(url, 0)[:1] == []


class _Stream:
    """What the watcher needs of a stream's pump: a stop flag and stop()."""

    def __init__(self) -> None:
        self.stopped = False
        self.stopped_at = threading.Event()

    def stop(self) -> None:
        self.stopped = True
        self.stopped_at.set()


@pytest.fixture(params=["shared", "per-stream"])
def watcher_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The per-process epoll watcher, and the per-stream fallback where there is no epoll."""
    if request.param == "per-stream":
        monkeypatch.setattr(streaming, "_native_epoll", lambda: None)
        monkeypatch.setattr(streaming, "_watcher", None)
        monkeypatch.setattr(streaming, "WATCH_INTERVAL", 0.05)
    return request.param


def test_disconnect_watcher_works_on_descriptors_above_1024(watcher_kind: str) -> None:
    """Holding a few hundred streams puts client sockets above FD_SETSIZE, where select() refuses them.

    The watcher used to take that refusal for a broken client and stop the stream, which then ended at its next
    ping without message_stop. It must keep watching, and still notice the client going away.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2100:
        pytest.skip(f"cannot open descriptor 2000 (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2100), hard))
    ours, theirs = socket.socketpair()
    high = socket.socket(fileno=os.dup2(ours.fileno(), 2000))
    ours.close()
    stream = _Stream()
    unwatch = streaming.watch_client(high, stream)  # type: ignore[arg-type]
    try:
        time.sleep(0.3)
        assert not stream.stopped, "the watcher stopped a stream whose client is still there"
        theirs.close()
        assert stream.stopped_at.wait(5), "the watcher did not notice the client going away"
    finally:
        unwatch()
        stream.stop()
        high.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_one_watcher_stops_exactly_the_streams_whose_clients_left() -> None:
    pairs = [socket.socketpair() for _ in range(40)]
    streams = [_Stream() for _ in pairs]
    unwatches = [streaming.watch_client(ours, stream) for (ours, _), stream in zip(pairs, streams)]  # type: ignore[arg-type]
    try:
        assert len({id(streaming._shared_watcher())}) == 1
        leaving = set(range(0, 40, 3))
        started = time.monotonic()
        for index in leaving:
            pairs[index][1].close()
        for index in leaving:
            assert streams[index].stopped_at.wait(2), index
        assert time.monotonic() - started < 1.0
        time.sleep(0.1)
        assert [i for i, s in enumerate(streams) if s.stopped] == sorted(leaving)
    finally:
        for unwatch in unwatches:
            unwatch()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_a_forgotten_stream_and_its_socket_are_left_alone() -> None:
    """After its response, the socket is the server's again: data or EOF on it must not reach the stream.

    A pipelined request on a live stream's socket ends the watch without stopping the stream, and leaves the
    data where the server will read it.
    """
    (done, done_peer), (busy, busy_peer) = socket.socketpair(), socket.socketpair()
    finished, pipelined = _Stream(), _Stream()
    streaming.watch_client(done, finished)()  # type: ignore[arg-type]
    unwatch = streaming.watch_client(busy, pipelined)  # type: ignore[arg-type]
    try:
        done_peer.sendall(b"GET /next HTTP/1.1\r\n\r\n")
        done_peer.close()
        busy_peer.sendall(b"GET /pipelined HTTP/1.1\r\n\r\n")
        time.sleep(0.3)
        assert not finished.stopped and not pipelined.stopped
        assert done.recv(100).startswith(b"GET /next") and busy.recv(100).startswith(b"GET /pipelined")
        assert streaming._shared_watcher().forget(busy.fileno(), pipelined) is False  # type: ignore[union-attr, arg-type]
    finally:
        unwatch()
        for sock in (done, busy, busy_peer):
            sock.close()


def _endless(closed: threading.Event) -> Iterator[int]:
    try:
        count = 0
        while True:
            count += 1
            yield count
    finally:
        closed.set()


def test_pump_holds_back_a_fast_upstream_and_stop_releases_it() -> None:
    """The worker waits when the client is MAX_PENDING events behind; stop() must wake it and close the upstream."""
    closed = threading.Event()
    pump = streaming._Pump(_endless(closed), abort=None)  # type: ignore[arg-type]
    pump.start()
    time.sleep(0.2)
    assert len(pump._pending) == streaming.MAX_PENDING
    assert [item for _, item in pump.take(1)] == list(range(1, streaming.MAX_PENDING + 1))
    time.sleep(0.1)
    assert len(pump._pending) == streaming.MAX_PENDING
    pump.stop()
    assert closed.wait(2), "the stopped worker did not close the upstream iterator"


def test_pump_take_times_out_for_a_ping_and_ends_at_once_when_stopped() -> None:
    gate = threading.Event()

    def silent() -> Iterator[int]:
        gate.wait(5)
        yield 1

    aborted = threading.Event()
    pump = streaming._Pump(silent(), abort=aborted.set)  # type: ignore[arg-type]
    pump.start()
    started = time.monotonic()
    assert pump.take(0.2) == []
    assert 0.15 < time.monotonic() - started < 1.0
    threading.Timer(0.1, pump.stop).start()
    started = time.monotonic()
    assert pump.take(5) == []
    assert time.monotonic() - started < 1.0 and aborted.is_set()
    gate.set()
