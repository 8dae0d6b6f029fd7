"""The production server: gunicorn with gevent workers, as the Procfile runs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest
import requests

from tests.conftest import free_port, manifest_url
from tests.fake_cloudcode import Reply

ROOT = Path(__file__).resolve().parent.parent


def upstream_env(fake, accounts_file) -> dict[str, str]:  # noqa: ANN001
    return {**os.environ, "GATEWAY_ACCOUNTS_FILE": str(accounts_file), "GATEWAY_CLOUDCODE_URLS": fake.base_url,
            "GATEWAY_OAUTH_TOKEN_URL": fake.token_url, "GATEWAY_CLIENT_VERSION_URL": manifest_url(fake)}


def start_gunicorn(env: dict[str, str], bind: str, *options: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "--no-control-socket", *options, "-b", bind, "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
    )


def wait_healthy(url: str) -> bool:
    """Wait for the first answer: a worker still booting also delays gunicorn's shutdown."""
    for _ in range(100):
        try:
            requests.get(f"{url}/health", timeout=1)
            return True
        except requests.RequestException:
            time.sleep(0.1)
    return False


@contextmanager
def gunicorn_instance(env: dict[str, str], workers: int = 2) -> Iterator[str]:
    """One gateway instance as production runs it: a gunicorn master with its workers, on a free loopback port."""
    port = free_port()
    process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", str(workers), stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url):
            pytest.fail("gunicorn did not start: " + process.stderr.read1(4000).decode())
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@pytest.fixture
def gunicorn_url(fake, accounts_file):
    with gunicorn_instance(upstream_env(fake, accounts_file)) as url:
        yield url


def test_gunicorn_gevent_serves_stream_and_json(gunicorn_url, fake) -> None:
    client = anthropic.Anthropic(base_url=gunicorn_url, api_key="k", max_retries=0)
    fake.enqueue(Reply.text("through gunicorn", chunks=3))
    with client.messages.stream(model="gemini-3-flash-agent", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert "".join(stream.text_stream) == "through gunicorn"
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=50,
                                     messages=[{"role": "user", "content": "plain"}])
    assert message.content[0].text == "Echo: plain"
    assert requests.get(f"{gunicorn_url}/health", timeout=5).json()["activeAccounts"] == 1


def test_sigterm_lets_in_flight_streams_finish(fake, accounts_file) -> None:
    """Graceful shutdown: gunicorn stops accepting, the stream in flight still ends with message_stop."""
    import signal
    import threading

    port = free_port()
    process = start_gunicorn(upstream_env(fake, accounts_file), f"127.0.0.1:{port}", "-w", "1",
                             "--graceful-timeout", "10")
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(url)
        fake.enqueue(Reply(text="slow answer that outlives the signal", chunks=4, stall_after=1, stall_seconds=1.5))
        response = requests.post(f"{url}/v1/messages", stream=True, timeout=20, json={
            "model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]})
        lines = response.iter_lines(decode_unicode=True)
        seen = []
        for line in lines:
            seen.append(line)
            if "content_block_delta" in line:
                break
        threading.Timer(0.1, process.send_signal, args=(signal.SIGTERM,)).start()
        seen.extend(lines)
        assert any("message_stop" in line for line in seen)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()


def test_refuses_to_listen_beyond_loopback_without_keys(accounts_file, tmp_path) -> None:
    """The Procfile binds 0.0.0.0: without keys gunicorn stops before binding, naming the variable to set."""
    port = free_port()
    env = {**os.environ, "GATEWAY_ACCOUNTS_FILE": str(accounts_file), "GATEWAY_CLIENT_VERSION": "2.9.1"}
    for name in ("GATEWAY_API_KEYS", "GATEWAY_API_KEYS_FILE", "GATEWAY_ALLOW_NO_AUTH"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-k", "gevent", "--no-control-socket", "-w", "1",
                           "-b", f"0.0.0.0:{port}", "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "GATEWAY_API_KEYS" in done.stderr and "0.0.0.0" in done.stderr
    assert "Booting worker" not in done.stderr


@pytest.mark.parametrize("extra", [{"GATEWAY_API_KEYS": "key-123456"}, {"GATEWAY_ALLOW_NO_AUTH": "1"}])
def test_serves_beyond_loopback_with_keys_or_when_told_to(accounts_file, tmp_path, extra) -> None:
    port = free_port()
    env = {**os.environ, "GATEWAY_ACCOUNTS_FILE": str(accounts_file), **extra}
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log_file:
        process = start_gunicorn(env, f"0.0.0.0:{port}", "-w", "1", stderr=log_file)
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}")
        output = log_path.read_text()
        assert ("without API keys" in output) == ("GATEWAY_ALLOW_NO_AUTH" in extra)
        assert "MonkeyPatchWarning" not in output
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_bind_hosts_of_every_gunicorn_address_form() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.bind_hosts(["127.0.0.1:8080", "[::1]:80", "localhost", "unix:/tmp/g.sock", ":8080", "fd://3"]) == [
        "127.0.0.1", "::1", "localhost", None, "0.0.0.0", "fd://3"]


def test_python_app_refuses_to_listen_beyond_loopback_without_keys(accounts_file) -> None:
    env = {**os.environ, "GATEWAY_ACCOUNTS_FILE": str(accounts_file), "HOST": "0.0.0.0", "PORT": str(free_port())}
    for name in ("GATEWAY_API_KEYS", "GATEWAY_API_KEYS_FILE", "GATEWAY_ALLOW_NO_AUTH"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "GATEWAY_API_KEYS" in done.stderr and "GATEWAY_ALLOW_NO_AUTH" in done.stderr
    assert "Traceback" not in done.stderr


def test_python_app_exposure_check(caplog) -> None:
    import logging

    from app import check_exposure
    from gateway.config import Settings

    caplog.set_level(logging.WARNING, logger="gateway")
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(host, Settings())
    assert "without API keys" not in caplog.text
    for host in ("0.0.0.0", "::", "192.168.1.5", "gateway.example.com"):
        with pytest.raises(SystemExit, match="GATEWAY_API_KEYS"):
            check_exposure(host, Settings())
    check_exposure("0.0.0.0", Settings(api_keys=frozenset({"k"})))
    assert "without API keys" not in caplog.text
    check_exposure("0.0.0.0", Settings(allow_no_auth=True))
    assert "without API keys" in caplog.text


def test_the_open_file_limit_is_raised_for_the_worker_connections() -> None:
    """With two descriptors per stream, a 1,024 soft limit would cap a worker at about 500 streams."""
    probe = (
        "import resource, sys; sys.path.insert(0, '.');"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE);"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard));"
        "import importlib.util as u; spec = u.spec_from_file_location('conf', 'gunicorn.conf.py');"
        "conf = u.module_from_spec(spec); spec.loader.exec_module(conf);"
        "print(conf.raise_open_files_limit(1000), conf.raise_open_files_limit(10), "
        "resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    raised, unchanged, soft, hard = map(int, done.stdout.split())
    assert raised == soft == (1000 if hard < 0 else min(1000, hard))  # hard < 0: RLIM_INFINITY
    assert unchanged == soft  # never lowered


def test_python_app_turns_nagle_off_for_accepted_connections() -> None:
    """gevent's server writes headers and body apart: with Nagle on, each answer waited 40 ms for an ACK."""
    import app

    server = app.listener("127.0.0.1", 0)
    try:
        with socket.create_connection(server.getsockname()) as client:
            accepted, _ = server.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"
    finally:
        server.close()


def test_metrics_add_up_the_workers(gunicorn_url, fake) -> None:
    """Each scrape lands on one worker; every one of them must show the requests all workers served."""
    def served() -> list[float]:
        counts = []
        for _ in range(6):  # new connections: the workers take them in turn as they come
            text = requests.get(f"{gunicorn_url}/metrics", headers={"Connection": "close"}, timeout=5).text
            counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("gateway_requests_total{")))
        return counts

    for index in range(12):
        answer = requests.post(f"{gunicorn_url}/v1/messages", headers={"Connection": "close"}, timeout=10, json={
            "model": "gemini-3-flash-agent", "max_tokens": 20, "messages": [{"role": "user", "content": f"n{index}"}]})
        assert answer.status_code == 200
    for _ in range(50):  # the last request is counted just after its answer went out
        counts = served()
        if counts == [12.0] * 6:
            break
        time.sleep(0.1)
    assert counts == [12.0] * 6


def test_a_429_seen_by_one_worker_keeps_every_worker_off_that_account(fake, tmp_path) -> None:
    """The cooldown goes into the state the workers share (no file write in the request), read as they choose."""
    from tests.conftest import REFRESH_TOKEN, write_accounts

    fake.add_account("bob@example.com", refresh_token="1//refresh-bob", project_id="proj-bob")
    accounts = write_accounts(tmp_path / "accounts.json", [
        {"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"},
        {"email": "bob@example.com", "refreshToken": "1//refresh-bob", "projectId": "proj-bob"}])
    before = accounts.read_bytes()
    fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s"), email="alice@example.com")
    port = free_port()
    env = {**upstream_env(fake, accounts), "GATEWAY_ACCOUNT_STRATEGY": "sticky"}
    process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", "2")
    url = f"http://127.0.0.1:{port}"
    ask = {"model": "gemini-3-flash-agent", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    try:
        assert wait_healthy(url)
        first = requests.post(f"{url}/v1/messages", json=ask, headers={"Connection": "close"}, timeout=10)
        assert first.status_code == 200  # alice's 429, then bob
        for _ in range(10):  # new connections: both workers take some
            answer = requests.post(f"{url}/v1/messages", json=ask, headers={"Connection": "close"}, timeout=10)
            assert answer.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    served = [r.email for r in fake.generate_requests()]
    assert served.count("alice@example.com") == 1 and served.count("bob@example.com") == 11
    assert accounts.read_bytes() == before


def test_claude_thinking_kept_for_an_openai_client_reaches_whichever_worker_takes_the_next_turn(
        gunicorn_url, fake) -> None:
    """OpenAI clients drop reasoning; the gateway keeps the signed thinking, in memory all workers share."""
    import openai

    from tests.test_openai_api import WEATHER, replay

    ask = dict(model="claude-opus-4-6-thinking", tools=[WEATHER], reasoning_effort="low")
    for n in range(6):
        fake.enqueue(Reply(thinking=f"Call the tool, turn {n}.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                     Reply(thinking="Done.", text="Snow."))
        history: list[dict] = [{"role": "user", "content": f"Weather in Oslo? ({n})"}]
        with openai.OpenAI(base_url=f"{gunicorn_url}/v1", api_key="k", max_retries=0) as first_client:
            message = first_client.chat.completions.create(messages=history, **ask).choices[0].message
        call = message.tool_calls[0]
        history += [replay(message), {"role": "tool", "tool_call_id": call.id, "content": "snow"}]
        with openai.OpenAI(base_url=f"{gunicorn_url}/v1", api_key="k", max_retries=0) as second_client:  # new connection
            assert second_client.chat.completions.create(messages=history, **ask).choices[0].message.content == "Snow."
        parts = fake.generate_requests()[-1].body["request"]["contents"][1]["parts"]
        assert parts[0].get("thought") is True and parts[0]["text"] == f"Call the tool, turn {n}.", parts


@pytest.mark.parametrize("trickle", [True, False], ids=["a-byte-now-and-then", "silent"])
def test_a_body_sent_too_slowly_is_cut_with_a_408_and_the_connection_closes(fake, accounts_file, trickle) -> None:
    """No read timeout trips on a byte every 0.1 s: the body's own time limit does, and gunicorn must not then
    wait for the rest of the body before it lets the connection go."""
    import json as json_module
    import threading

    port = free_port()
    env = {**upstream_env(fake, accounts_file), "GATEWAY_BODY_TIMEOUT_SECONDS": "1"}
    process = start_gunicorn(env, f"127.0.0.1:{port}", "-w", "1")
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(url)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"model\": ")

        def drip() -> None:
            try:
                for _ in range(100):
                    time.sleep(0.1)
                    sock.sendall(b" ")
            except OSError:
                pass

        if trickle:
            threading.Thread(target=drip, daemon=True).start()
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
        assert time.monotonic() - started < 4
        sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        error = json_module.loads(body)
        assert error["type"] == "error" and "GATEWAY_BODY_TIMEOUT_SECONDS" in error["error"]["message"]
        ok = requests.post(f"{url}/v1/messages", timeout=10, json={
            "model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
