"""What request bodies at the size limit cost a gunicorn worker: RSS while N clients send one each, at once.

    python bench/body_memory.py                       # GATEWAY_MAX_BODY_MB 32, 8 and 2; 1, 10 and 25 clients
    python bench/body_memory.py --mb 32 --clients 1,10,50
    python bench/body_memory.py --mb 32 --clients 100 --budget-mb 1000000   # without the budget (a huge one)

For each size limit it starts ``bench/fast_upstream.py`` (answering after a pause, so that every body is still
held when the last one arrives) and the gateway under gunicorn as the Procfile starts it, with one worker,
bound to loopback. N clients then POST a non-streaming ``/v1/messages`` body of just under the limit at once (one
user message of text: the body is read, parsed, checked, translated and sent upstream). The worker's RSS is
sampled from ``/proc`` every 20 ms; a fresh gateway per run keeps one run's peak (``VmHWM``) from the next.
It prints, per run, the answers' statuses (529: turned away by GATEWAY_BODY_MEMORY_MB, 408: the body came too
slowly), the idle and peak RSS, and the peak above idle per body, in MB and as a multiple of the body.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # the clients are greenlets: thousands at once

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import post, raise_nofile, running, start_gateway, start_upstream  # noqa: E402

MB = 1024 * 1024
# Seconds the upstream waits before each of its answer's chunks: long enough for every body to be in flight.
UPSTREAM_DELAY = 0.5


def body_of(size: int) -> bytes:
    """A /v1/messages body of ``size`` bytes (within a few): one user message of text."""
    head = {"model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": ""}]}
    overhead = len(json.dumps(head).encode())
    text = ("the quick brown fox jumps over the lazy dog " * (size // 44 + 1))[: size - overhead]
    head["messages"][0]["content"] = text
    return json.dumps(head).encode()


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def send(port: int, body: bytes, results: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/v1/messages", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        results.append(response.status)
    except OSError:
        results.append(0)
    finally:
        connection.close()


def measure(limit_mb: float, clients: int, workdir: Path, budget_mb: float | None = None) -> dict[str, float]:
    size = int(limit_mb * MB) - 4096
    body = body_of(size)
    with running(start_upstream(workdir / "upstream.log")) as upstream:
        post(f"{upstream.url}/bench/config?chunks=4&delay={UPSTREAM_DELAY}")
        options = ["-w", "1", "--env", f"GATEWAY_MAX_BODY_MB={limit_mb:g}"]
        if budget_mb is not None:
            options += ["--env", f"GATEWAY_BODY_MEMORY_MB={budget_mb:g}"]
        gateway = start_gateway(upstream, workdir, workdir / "gunicorn.log", options)
        with running(gateway):
            (worker,) = gateway.workers()
            urllib.request.urlopen(gateway.url + "/v1/models", timeout=10).read()  # the listing, imports: warm
            time.sleep(0.5)
            idle = rss_mb(worker)
            peak = idle
            results: list[int] = []
            port = int(gateway.url.rsplit(":", 1)[1])
            threads = [threading.Thread(target=send, args=(port, body, results)) for _ in range(clients)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                peak = max(peak, rss_mb(worker))
                time.sleep(0.02)
            peak = max(peak, rss_mb(worker, "VmHWM"))
            after = rss_mb(worker)
    per_body = (peak - idle) / clients
    statuses = " ".join(f"{status}x{results.count(status)}" for status in sorted(set(results)))
    return {"limit_mb": limit_mb, "clients": clients, "statuses": statuses, "idle_mb": idle, "peak_mb": peak,
            "after_mb": after, "per_body_mb": per_body, "per_body_x": per_body * MB / len(body)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", default="32,8,2", help="GATEWAY_MAX_BODY_MB values, comma-separated")
    parser.add_argument("--clients", default="1,10,25", help="concurrent clients, comma-separated")
    parser.add_argument("--budget-mb", type=float, help="GATEWAY_BODY_MEMORY_MB (default: the gateway's)")
    args = parser.parse_args()
    raise_nofile()
    print("limit MB | clients | answers (status x count) | worker RSS idle MB | peak MB | after MB | "
          "peak above idle per body MB | x body")
    with tempfile.TemporaryDirectory(prefix="bench-body-") as tmp:
        for limit in (float(x) for x in args.mb.split(",")):
            for clients in (int(x) for x in args.clients.split(",")):
                figures = measure(limit, clients, Path(tmp), args.budget_mb)
                print(f"{figures['limit_mb']:g} | {clients} | {figures['statuses']} | {figures['idle_mb']:.0f} | "
                      f"{figures['peak_mb']:.0f} | {figures['after_mb']:.0f} | {figures['per_body_mb']:.1f} | "
                      f"{figures['per_body_x']:.1f}", flush=True)


if __name__ == "__main__":
    main()
