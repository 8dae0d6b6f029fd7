"""Streams whose upstream sends many events at once (a fast model's long answer arriving in a few reads).

The relay's pump may get ``streaming.MAX_PENDING`` events ahead of the client. Past that it waits for room,
and a burst larger than that once hung the stream for good: the client got pings and nothing else, and the
stuck stream held up gunicorn's graceful shutdown. Under gevent (gunicorn, ``python app.py``) every such burst
hung; with the test server's threads only now and then.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import anthropic
import openai
import pytest

from tests.fake_cloudcode import FakeCloudCode, Reply
from tests.test_gunicorn import free_port, start_gunicorn, upstream_env, wait_healthy

MODEL = "gemini-3-flash-agent"
# Well over MAX_PENDING (256) events, written by the fake in one write.
CHUNKS = 600
TEXT = "".join(f"{k:04d} " for k in range(CHUNKS))  # splits into exactly CHUNKS deltas
# A burst is relayed in well under a second; a hung stream fails the test after this long instead of hanging it.
DEADLINE = 10.0

T = TypeVar("T")


@pytest.fixture(params=["werkzeug", "gunicorn"])
def url(request: pytest.FixtureRequest, fake: FakeCloudCode, accounts_file: Path, tmp_path: Path) -> Iterator[str]:
    """The gateway under the test server (threads) and under gunicorn (gevent)."""
    if request.param == "werkzeug":
        yield request.getfixturevalue("gateway").url
        return
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**upstream_env(fake, accounts_file), "GATEWAY_LOG_LEVEL": "WARNING"}
    with log.open("w") as output:
        process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", "1", stderr=output)
    try:
        if not wait_healthy(f"http://127.0.0.1:{port}"):
            pytest.fail("gunicorn did not start: " + log.read_text()[-2000:])
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)  # a stream still stuck in the worker would hold this up
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def within(seconds: float, read: Callable[[], T]) -> T:
    """``read()``, or a TimeoutError after ``seconds``: keep-alive pings would keep a hung stream open forever."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(read())
        except BaseException as exc:  # noqa: BLE001 - raised in the test by future.result()
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future.result(timeout=seconds)


def test_anthropic_stream_of_a_burst_completes(url: str, fake: FakeCloudCode) -> None:
    fake.enqueue(Reply.text(TEXT, chunks=CHUNKS, burst=True))
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0, timeout=DEADLINE)

    def read() -> tuple[list[str], str | None]:
        with client, client.messages.stream(
                model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "a long answer"}]) as stream:
            return list(stream.text_stream), stream.get_final_message().stop_reason

    deltas, stop_reason = within(DEADLINE, read)
    assert "".join(deltas) == TEXT
    assert len(deltas) == CHUNKS
    assert stop_reason == "end_turn"


def test_openai_stream_of_a_burst_completes(url: str, fake: FakeCloudCode) -> None:
    fake.enqueue(Reply.text(TEXT, chunks=CHUNKS, burst=True))
    client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=DEADLINE)

    def read() -> tuple[list[str], str | None]:
        deltas, finish = [], None
        with client, client.chat.completions.create(
                model=MODEL, stream=True, messages=[{"role": "user", "content": "a long answer"}]) as stream:
            for chunk in stream:
                if chunk.choices:
                    deltas += [chunk.choices[0].delta.content] if chunk.choices[0].delta.content else []
                    finish = chunk.choices[0].finish_reason or finish
        return deltas, finish

    deltas, finish = within(DEADLINE, read)
    assert "".join(deltas) == TEXT
    assert len(deltas) == CHUNKS
    assert finish == "stop"


def test_client_leaving_a_burst_stream_releases_the_upstream(url: str, fake: FakeCloudCode) -> None:
    """The client reads the start of a burst and leaves while the upstream is silent (the rest of the answer
    to come): the gateway must notice at once and close the upstream request."""
    fake.enqueue(Reply.text(TEXT, chunks=CHUNKS, burst=True, stall_after=CHUNKS // 2, stall_seconds=20))
    body = json.dumps({"model": MODEL, "max_tokens": 4096, "stream": True,
                       "messages": [{"role": "user", "content": "a long answer"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=DEADLINE)
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-api-key: k\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    received = b""
    while b"content_block_delta" not in received:
        data = sock.recv(65536)  # socket.timeout when the stream hangs
        assert data, received[-500:]
        received += data
    sock.close()
    closed = time.monotonic()
    while (fake.closed_by_client == 0 or fake.open_streams) and time.monotonic() < closed + DEADLINE / 2:
        time.sleep(0.005)
    assert (fake.closed_by_client, fake.open_streams) == (1, 0)
    assert time.monotonic() - closed < 2.0  # at once, not at the next ping (ten seconds)
