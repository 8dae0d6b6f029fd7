"""A small gevent client for what wrk cannot measure: time to first byte, and many slow streams at once.

wrk reports whole-response latency only, and it cannot tell how many of its connections are being served
at the same moment. This client uses raw sockets so that it costs little per connection.

* ``ttfb URL BODY_FILE -n N``: N sequential requests; the time from sending each request to its first
  response byte (the gateway sends nothing before the first upstream event, so this is when an answer starts).
* ``hold URL BODY_FILE -c C --pids P...``: open C streams (ramped), and sample the summed RSS of the given
  processes while they are open; report the most streams held at once and the RSS they added.
* ``relay URL BODY_FILE -c C -n N``: C clients, each reading N whole streams one after the other; how many
  completed, so that the CPU the gateway spent on them can be divided by exactly what it relayed (wrk cuts
  off the streams in flight when its time is up).

Both print one JSON object. Loopback only: the URL must point at 127.0.0.0/8.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402


def target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise SystemExit(f"refusing a non-loopback target: {host}")
    return host, parts.port or 80, parts.path + (f"?{parts.query}" if parts.query else "")


def request_bytes(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"x-api-key: bench\r\nAuthorization: Bearer bench\r\nanthropic-version: 2023-06-01\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def ttfb(url: str, body: bytes, count: int) -> dict[str, float]:
    host, port, path = target(url)
    payload = request_bytes(host, port, path, body)
    times: list[float] = []
    for _ in range(count):
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started = time.perf_counter()
            sock.sendall(payload)
            first = sock.recv(65536)
            times.append((time.perf_counter() - started) * 1000)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            read_to_end(sock, first)
    return {"count": count, "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99),
            "mean_ms": statistics.fmean(times)}


def read_to_end(sock: socket.socket, data: bytes) -> bytes:
    """Read until the chunked body's last chunk, as HTTP clients do, rather than until the server closes."""
    tail = data[-64:]
    while not tail.endswith(b"\r\n0\r\n\r\n") and (data := sock.recv(65536)):
        tail = (tail + data)[-64:]
    return tail


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@dataclass
class Hold:
    """Counters shared by the stream greenlets and the sampler."""

    open: int = 0
    held: int = 0
    done: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def one_stream(host: str, port: int, payload: bytes, state: Hold, timeout: float) -> None:
    counted = False
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            state.open += 1
            try:
                sock.sendall(payload)
                first = sock.recv(65536)
                if not first.startswith(b"HTTP/1.1 200"):
                    raise OSError(f"status {first[:12]!r}")
                state.held += 1
                counted = True
                if b"message_stop" not in read_to_end(sock, first):
                    raise OSError("cut short")
                state.done += 1
            finally:
                state.open -= 1
    except (OSError, gevent.Timeout) as exc:
        state.failed += 1
        name = str(exc) if str(exc).startswith(("status", "cut")) else type(exc).__name__
        state.errors[name] = state.errors.get(name, 0) + 1
    finally:
        if counted:
            state.held -= 1


def hold(url: str, body: bytes, count: int, pids: list[int], ramp: float, timeout: float) -> dict[str, float]:
    """Open ``count`` streams at ``ramp`` per second; sample held streams and RSS until all end."""
    host, port, path = target(url)
    payload = request_bytes(host, port, path, body)
    state = Hold()
    idle = rss_kb(pids)
    best = {"held": 0, "rss_kb": idle, "at_s": 0.0}
    timeline: list[tuple[float, int, int, int, int]] = []  # (seconds, open, held, done, rss_kb)
    started = time.monotonic()
    pool = Pool(count)

    def sample() -> None:
        while True:
            held, rss = state.held, rss_kb(pids)
            timeline.append((round(time.monotonic() - started, 1), state.open, held, state.done, rss))
            if held > best["held"] or (held == best["held"] and rss > best["rss_kb"]):
                best.update(held=held, rss_kb=rss, at_s=round(time.monotonic() - started, 1))
            gevent.sleep(0.5)

    sampler = gevent.spawn(sample)
    for index in range(count):
        pool.spawn(one_stream, host, port, payload, state, timeout)
        if ramp and index % 50 == 49:
            gevent.sleep(50 / ramp)
    pool.join()
    sampler.kill()
    added = best["rss_kb"] - idle
    return {"requested": count, "max_held": best["held"], "done": state.done, "failed": state.failed,
            "errors": state.errors, "idle_rss_kb": idle, "peak_rss_kb": best["rss_kb"],
            "kb_per_stream": round(added / best["held"], 1) if best["held"] else None,
            "peak_at_s": best["at_s"], "elapsed_s": round(time.monotonic() - started, 1),
            "timeline": timeline[::4]}  # every 2 s: (seconds, open, held, done, rss_kb)


def relay(url: str, body: bytes, clients: int, each: int, timeout: float) -> dict[str, Any]:
    """``clients`` clients reading ``each`` streams in a row; a stream that does not end within ``timeout``
    seconds counts as failed and stops its client (keep-alive pings would hold a hung stream open forever)."""
    host, port, path = target(url)
    payload = request_bytes(host, port, path, body)
    state = Hold()

    def client() -> None:
        for _ in range(each):
            try:
                with gevent.Timeout(timeout), socket.create_connection((host, port)) as sock:
                    sock.sendall(payload)
                    first = sock.recv(65536)
                    if not first.startswith(b"HTTP/1.1 200"):
                        raise OSError(f"status {first[:12]!r}")
                    tail = read_to_end(sock, first)
                    if b"message_stop" not in tail and b"[DONE]" not in tail:
                        raise OSError("cut short")
                state.done += 1
            except (OSError, gevent.Timeout) as exc:
                state.failed += 1
                name = str(exc) if str(exc).startswith(("status", "cut")) else type(exc).__name__
                state.errors[name] = state.errors.get(name, 0) + 1
                return

    started = time.monotonic()
    gevent.joinall([gevent.spawn(client) for _ in range(clients)])
    return {"requested": clients * each, "done": state.done, "failed": state.failed, "errors": state.errors,
            "elapsed_s": round(time.monotonic() - started, 2)}


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time to first byte, and concurrent slow streams.")
    parser.add_argument("mode", choices=["ttfb", "hold", "relay"])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("-n", "-c", "--count", type=int, default=200)
    parser.add_argument("--each", type=int, default=4, help="streams per client, one after the other (relay)")
    parser.add_argument("--pids", type=int, nargs="*", default=[])
    parser.add_argument("--ramp", type=float, default=500.0, help="new streams per second (hold)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    raise_nofile()
    body = args.body.read_bytes()
    if args.mode == "ttfb":
        print(json.dumps(ttfb(args.url, body, args.count)))
    elif args.mode == "relay":
        print(json.dumps(relay(args.url, body, args.count, args.each, args.timeout)))
    else:
        print(json.dumps(hold(args.url, body, args.count, args.pids, args.ramp, args.timeout)))


if __name__ == "__main__":
    main()
