"""Shared state in Redis against local state, and one gateway instance against two, under the same load.

    python bench/scaleout.py             # about 2 minutes
    python bench/scaleout.py --quick

Prints two tables: what one request's state round trips cost in each store (in-process loop, the calls a request
makes as it chooses an account: one read of its cooldowns, quota snapshots and affinity), and wrk figures for
non-streaming /v1/messages through one instance with local state, one with Redis, and two with Redis (two gunicorn
masters, each with the Procfile's 2 workers, each driven by its own wrk with half the clients). Needs wrk and a
Redis (GATEWAY_TEST_REDIS_URL, else 127.0.0.1:6379; database 14 is emptied). Loopback only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import os  # noqa: E402

import redis  # noqa: E402

from bench.run import bodies, running, start_gateway, start_upstream, wrk_with_cpu  # noqa: E402
from gateway.state import MemoryStore, SQLiteStore  # noqa: E402
from gateway.state.redis import RedisStore  # noqa: E402

REDIS = (os.environ.get("GATEWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + "/14"


def store_costs(rounds: int) -> list[tuple[str, float, float]]:
    """Microseconds per request-shaped read (get_many of 3 keys) and per write, in each store."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, store in (("memory", MemoryStore()), ("sqlite", SQLiteStore(Path(tmp) / "s.sqlite3")),
                            ("redis", RedisStore(REDIS))):
            keys = ["cooldown:a@x:m", "quota:a@x:m", "affinity:s"]
            store.put(keys[1], [0.5, None], 60)
            started = time.perf_counter()
            for _ in range(rounds):
                store.get_many(keys)
            read = (time.perf_counter() - started) / rounds * 1e6
            started = time.perf_counter()
            for n in range(rounds):
                store.put("affinity:s", "a@x", 3600)
            write = (time.perf_counter() - started) / rounds * 1e6
            results.append((name, read, write))
    return results


def load(urls: list[str], gateways: list, body: Path, clients: int, seconds: float) -> dict[str, float]:
    """wrk on every instance at once, ``clients`` in all; summed requests/s, mean CPU ms per request."""
    figures: list[dict] = [{} for _ in urls]

    def drive(index: int) -> None:
        figures[index] = wrk_with_cpu(gateways[index], urls[index] + "/v1/messages", body, clients // len(urls),
                                      seconds, repeat=1)

    threads = [threading.Thread(target=drive, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(f["total_requests"] for f in figures)
    return {"rps": sum(f["rps"] for f in figures), "p50_ms": max(f["p50_us"] for f in figures) / 1000,
            "p99_ms": max(f["p99_us"] for f in figures) / 1000,
            "cpu_ms": sum(f["cpu_ms_per_request"] * f["total_requests"] for f in figures) / max(1, total)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seconds, rounds = (4, 2000) if args.quick else (10, 20000)
    redis.Redis.from_url(REDIS).flushdb()
    print("State round trips (in-process, per call)\n")
    print(f"{'store':8} {'read 3 keys':>12} {'write':>10}")
    for name, read, write in store_costs(rounds):
        print(f"{name:8} {read:9.1f} us {write:7.1f} us")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = bodies(work)
        rows = []
        with running(start_upstream(work / "upstream.log")) as upstream:
            for label, count, env in (("1 instance, local state", 1, {}),
                                      ("1 instance, Redis", 1, {"GATEWAY_REDIS_URL": REDIS}),
                                      ("2 instances, Redis", 2, {"GATEWAY_REDIS_URL": REDIS})):
                gateways = []
                try:
                    for n in range(count):
                        directory = work / f"{label}-{n}".replace(" ", "_").replace(",", "")
                        directory.mkdir()
                        gateways.append(start_gateway(upstream, directory, work / "gateway.log", env=env))
                    urls = [g.url for g in gateways]
                    load(urls, gateways, files["messages"], 20, 2)  # warm-up
                    rows.append((label, load(urls, gateways, files["messages"], 50, seconds)))
                finally:
                    for gateway in gateways:
                        gateway.stop()
    print(f"\nNon-streaming /v1/messages, 50 clients in all, {seconds:.0f} s each (2 cores shared by everything)\n")
    print(f"{'setup':26} {'req/s':>8} {'p50':>9} {'p99':>9} {'CPU/request':>12}")
    for label, f in rows:
        print(f"{label:26} {f['rps']:8.0f} {f['p50_ms']:6.2f} ms {f['p99_ms']:6.2f} ms {f['cpu_ms']:9.2f} ms")


if __name__ == "__main__":
    main()
