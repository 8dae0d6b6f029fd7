"""Run every benchmark and print the table of docs/performance.md.

    python bench/run.py            # everything, about 10 minutes
    python bench/run.py --quick    # shorter runs, fewer streams: a smoke test of the harness
    python bench/run.py --profile  # also py-spy one worker under load and print where its time goes

It starts ``bench/fast_upstream.py`` and the gateway under gunicorn exactly as the Procfile starts it (2 gevent
workers, bound to loopback), then drives them with wrk (``bench/wrk/post.lua``) and ``bench/streams.py``.
Every figure comes with a baseline measured in the same run: the same load sent straight to the upstream.
Needs ``wrk`` (``apt-get install wrk``); ``--profile`` needs ``py-spy`` (``pip install -r bench/requirements.txt``).
Only loopback addresses are used; every load run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import translate  # noqa: E402
from bench.claude_code_request import claude_code_body  # noqa: E402

BIN = Path(sys.executable).parent
LUA = ROOT / "bench" / "wrk" / "post.lua"
HOST = "127.0.0.1"
REPEAT = 3
UPSTREAM_PATH = "/v1internal:streamGenerateContent?alt=sse"
PHASES = ["throughput", "latency", "ttfb", "streams", "translate", "floor"]
TARGETS = {
    "messages_rps": 1700, "stream_rps": 1500, "p50_added_ms": 1.0, "p99_added_ms": 5.0,
    "streams_held": 5000, "kb_per_stream": 40, "translate_ms": 0.3,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def post(url: str, body: dict[str, Any] | None = None) -> bytes:
    data = json.dumps(body or {}).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", "x-api-key": "bench"})
    return urllib.request.urlopen(req, timeout=30).read()


def raise_nofile() -> None:
    """Slow streams need a descriptor each in the client, two in the gateway and one in the upstream."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- processes --------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def workers(self) -> list[int]:
        """gunicorn's worker pids: the master's children."""
        pid = self.process.pid
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []


def start_upstream(log: Path) -> Server:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    server = Server(process, f"http://{HOST}:{port}")
    wait_http(server.url + "/health")
    return server


def procfile_command(port: int, extra: list[str], root: Path = ROOT) -> list[str]:
    """The Procfile's ``web`` line, on loopback, with ``extra`` options appended (gunicorn: last one wins)."""
    line = next(x for x in (root / "Procfile").read_text().splitlines() if x.startswith("web:"))
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1), m.group(2)), line.split(":", 1)[1])
    line = line.replace("$PORT", str(port)).replace("0.0.0.0", HOST)
    argv = shlex.split(line)
    argv[0] = str(BIN / argv[0])
    return argv + extra


def start_gateway(upstream: Server, workdir: Path, log: Path, extra: list[str] | None = None,
                  root: Path = ROOT, env: dict[str, str] | None = None) -> Server:
    """The gateway under gunicorn as the Procfile of ``root`` (a checkout of the project) starts it."""
    accounts = workdir / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [{"email": "bench@example.com", "refreshToken": "1//bench",
                                                  "projectId": "bench-project", "enabled": True}]}))
    accounts.chmod(0o600)
    port = free_port()
    env = {**os.environ, "GATEWAY_ACCOUNTS_FILE": str(accounts), "GATEWAY_CLOUDCODE_URLS": upstream.url,
           "GATEWAY_OAUTH_TOKEN_URL": upstream.url + "/token", "HOME": str(workdir), **(env or {})}
    process = subprocess.Popen(procfile_command(port, extra or [], root), cwd=root, env=env, stdout=log.open("a"),
                               stderr=subprocess.STDOUT)
    server = Server(process, f"http://{HOST}:{port}")
    wait_http(server.url + "/health")
    return server


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# -- load -------------------------------------------------------------------------------------------


def wrk(url: str, body: Path, connections: int, seconds: float, repeat: int = REPEAT) -> dict[str, float]:
    """The median (by requests/s) of ``repeat`` wrk runs: on a shared 2-core VM single runs vary by +-30%."""
    runs = sorted((wrk_once(url, body, connections, seconds) for _ in range(repeat)), key=lambda r: r["rps"])
    median = dict(runs[len(runs) // 2])
    median["all_rps"] = [round(r["rps"]) for r in runs]
    median["total_requests"] = sum(r["requests"] for r in runs)
    return median


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk_with_cpu(gw: Server, url: str, body: Path, connections: int, seconds: float,
                 repeat: int = REPEAT) -> dict[str, float]:
    """wrk figures plus the gateway workers' CPU milliseconds per request, which other load on the machine
    disturbs much less than requests/s."""
    workers = gw.workers()
    before = cpu_seconds(workers)
    figures = wrk(url, body, connections, seconds, repeat)
    figures["cpu_ms_per_request"] = (cpu_seconds(workers) - before) * 1000 / max(1, figures["total_requests"])
    return figures


def wrk_once(url: str, body: Path, connections: int, seconds: float) -> dict[str, float]:
    threads = 1 if connections < 4 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(LUA),
                          url], env={**os.environ, "BENCH_BODY": str(body)}, capture_output=True, text=True,
                         timeout=seconds + 60, check=True).stdout
    match = re.search(r"^BENCH (\{.*\})$", out, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    figures = json.loads(match.group(1))
    errors = sum(v for k, v in figures.items() if k.startswith("errors_"))
    if errors:
        print(f"  warning: {errors} errors in {url} ({figures})", file=sys.stderr)
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def streams(mode: str, url: str, body: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "streams.py"), mode, url, str(body), *args],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"streams.py {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def configure(upstream: Server, chunks: int, delay: float = 0.0) -> None:
    post(f"{upstream.url}/bench/config?chunks={chunks}&delay={delay}")


# -- the benchmark ----------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    gateway: str
    baseline: str
    ratio: str
    target: str
    met: str

    @classmethod
    def rps(cls, name: str, gateway: float, baseline: float, target: float | None) -> Row:
        met = "" if target is None else ("yes" if gateway >= target else "no")
        return cls(name, f"{gateway:,.0f} req/s", f"{baseline:,.0f} req/s", f"{gateway / baseline:.2f}",
                   f">= {target:,.0f} req/s" if target else "", met)


def bodies(workdir: Path) -> dict[str, Path]:
    """Small requests, as in the README's examples; the upstream gets what the gateway would send it."""
    ask = [{"role": "user", "content": "Hello"}]
    files = {
        "messages": {"model": "claude-sonnet-4-6", "max_tokens": 200, "messages": ask},
        "messages_stream": {"model": "claude-sonnet-4-6", "max_tokens": 200, "messages": ask, "stream": True},
        "chat": {"model": "claude-sonnet-4-6", "messages": ask},
        "chat_stream": {"model": "claude-sonnet-4-6", "messages": ask, "stream": True},
        "upstream": {"project": "bench-project", "model": "claude-sonnet-4-6", "userAgent": "antigravity",
                     "requestId": "agent-bench", "request": {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
                                                             "generationConfig": {"maxOutputTokens": 200}}},
        "claude_code": claude_code_body(50_000, model="claude-sonnet-4-6"),
    }
    paths = {}
    for name, body in files.items():
        paths[name] = workdir / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    return paths


def throughput(gw: Server, up: Server, files: dict[str, Path], seconds: float, chat: bool) -> tuple[list[Row], dict]:
    rows, raw = [], {}
    upstream = up.url + UPSTREAM_PATH
    wrk_once(gw.url + "/v1/messages", files["messages"], 20, 2)  # warm-up: connections, imports, caches
    base = raw["upstream_50"] = wrk(upstream, files["upstream"], 50, seconds)
    runs = [("messages_50", "non-streaming /v1/messages, 50 clients", "/v1/messages", "messages",
             TARGETS["messages_rps"])]
    if chat:
        runs.append(("chat_50", "non-streaming /v1/chat/completions, 50 clients", "/v1/chat/completions", "chat",
                     None))
    runs += [("stream_50", "streaming /v1/messages (8 chunks), 50 clients", "/v1/messages", "messages_stream",
              TARGETS["stream_rps"]),
             ("claude_code_50", "non-streaming 50 KB Claude Code request, 50 clients", "/v1/messages",
              "claude_code", None)]
    cpu_rows = []
    for key, label, path, body, target in runs:
        res = raw[key] = wrk_with_cpu(gw, gw.url + path, files[body], 50, seconds)
        rows.append(Row.rps(label, res["rps"], base["rps"], target))
        cpu_rows.append(Row(f"gateway CPU per request: {label.split(',')[0]}", f"{res['cpu_ms_per_request']:.2f} ms",
                            "", "", "", ""))
    return rows + cpu_rows, raw


def latency(gw: Server, up: Server, files: dict[str, Path], seconds: float, raw: dict) -> list[Row]:
    rows = []
    for clients in (1, 10, 50):
        base = raw.get(f"upstream_{clients}") or wrk(up.url + UPSTREAM_PATH, files["upstream"], clients, seconds)
        res = raw.get(f"messages_{clients}") or wrk(gw.url + "/v1/messages", files["messages"], clients, seconds)
        raw[f"upstream_{clients}"], raw[f"messages_{clients}"] = base, res
        for pct in ("p50", "p99"):
            gw_ms, up_ms = res[f"{pct}_us"] / 1000, base[f"{pct}_us"] / 1000
            added = gw_ms - up_ms
            target = TARGETS[f"{pct}_added_ms"] if clients == 1 else None
            rows.append(Row(f"added latency {pct}, {clients} client{'s' * (clients > 1)}", f"{gw_ms:.2f} ms",
                            f"{up_ms:.2f} ms", f"+{added:.2f} ms",
                            f"<= {target:g} ms added" if target else "",
                            "" if target is None else ("yes" if added <= target else "no")))
    return rows


def first_byte(gw: Server, up: Server, files: dict[str, Path], count: int) -> list[Row]:
    res = streams("ttfb", gw.url + "/v1/messages", files["messages_stream"], "-n", str(count))
    base = streams("ttfb", up.url + UPSTREAM_PATH, files["upstream"], "-n", str(count))
    return [Row(f"time to first byte of a stream {pct}", f"{res[f'{pct}_ms']:.2f} ms", f"{base[f'{pct}_ms']:.2f} ms",
                f"+{res[f'{pct}_ms'] - base[f'{pct}_ms']:.2f} ms", "", "") for pct in ("p50", "p99")]


def slow_streams(up: Server, workdir: Path, count: int, chunk_delay: float) -> tuple[list[Row], dict]:
    """Many streams that each last ``8 * chunk_delay`` s; the Procfile's workers, connections raised to fit."""
    per_worker = str(count // 2 + 500)
    configure(up, 8, chunk_delay)
    gw = start_gateway(up, workdir, workdir / "gunicorn-streams.log", ["--worker-connections", per_worker])
    with running(gw):
        time.sleep(1)
        res = streams("hold", gw.url + "/v1/messages", workdir / "messages_stream.json", "-c", str(count),
                      "--pids", *map(str, gw.workers()), "--timeout", str(8 * chunk_delay + 120))
    configure(up, 8, 0.0)
    held_ok = "yes" if res["max_held"] >= TARGETS["streams_held"] else "no"
    kb = res["kb_per_stream"]
    rows = [
        Row(f"concurrent slow streams held ({8 * chunk_delay:g} s each)", f"{res['max_held']:,}",
            f"{count:,} opened", f"{res['failed']} failed", f">= {TARGETS['streams_held']:,}", held_ok),
        Row("gateway RSS per held stream", f"{kb} KB" if kb is not None else "-", f"{res['idle_rss_kb'] / 1024:.0f} MB idle",
            f"{res['peak_rss_kb'] / 1024:.0f} MB peak", f"<= {TARGETS['kb_per_stream']} KB",
            "yes" if kb is not None and kb <= TARGETS["kb_per_stream"] else "no"),
    ]
    return rows, res


def floor(up: Server, workdir: Path, files: dict[str, Path], seconds: float) -> tuple[list[Row], dict]:
    """Trivial apps (bench/floor_apps.py) under the Procfile's gunicorn command: what the stack costs alone."""
    rows, raw = [], {}
    base = raw["upstream_50"] = wrk(up.url + UPSTREAM_PATH, files["upstream"], 50, seconds)
    apps = [("raw", "bare WSGI app"), ("flask", "Flask view, JSON in and out"),
            ("flask_upstream", "Flask view + one requests call to the upstream")]
    for name, label in apps:
        port = free_port()
        argv = procfile_command(port, [])
        argv[-1] = f"bench.floor_apps:{name}"
        env = {**os.environ, "BENCH_UPSTREAM": up.url, "HOME": str(workdir)}
        with (workdir / "floor.log").open("a") as log:
            server = Server(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                            f"http://{HOST}:{port}")
        with running(server):
            wait_http(server.url + "/", timeout=20)
            wrk_once(server.url + "/v1/messages", files["messages"], 20, 2)
            res = raw[name] = wrk_with_cpu(server, server.url + "/v1/messages", files["messages"], 50, seconds)
            one = raw[f"{name}_1"] = wrk(server.url + "/v1/messages", files["messages"], 1, seconds)
        rows.append(Row(f"floor: {label}, 50 clients ({res['cpu_ms_per_request']:.2f} ms CPU per request, "
                        f"p50 {one['p50_us'] / 1000:.2f} ms at 1 client)", f"{res['rps']:,.0f} req/s",
                        f"{base['rps']:,.0f} req/s", f"{res['rps'] / base['rps']:.2f}", "", ""))
    return rows, raw


def translation() -> tuple[list[Row], dict]:
    res = translate.measure(50_000)
    rows = []
    # Cleaned tool schemas are cached: a session's first turn misses (cold), its later turns hit (warm).
    for key, turn in (("translate_cold_ms", "first turn"), ("translate_warm_ms", "repeat turn")):
        ms = res[key]
        rows.append(Row(f"translate a {res['request_bytes'] / 1000:.0f} KB Claude Code request (schema + build), "
                        f"{turn}", f"{ms:.3f} ms", f"{res['json_loads_ms']:.3f} ms json.loads",
                        f"{ms / res['json_loads_ms']:.1f}x", f"<= {TARGETS['translate_ms']} ms",
                        "yes" if ms <= TARGETS["translate_ms"] else "no"))
    return rows, res


def profile(gw: Server, files: dict[str, Path], seconds: float, workdir: Path) -> str:
    """py-spy one worker while 50 clients load the non-streaming route; print where its samples fall."""
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    worker = gw.workers()[0]
    out = workdir / "profile.txt"
    load = subprocess.Popen(["wrk", "-t2", "-c50", f"-d{int(seconds) + 4}s", "-s", str(LUA), gw.url + "/v1/messages"],
                            env={**os.environ, "BENCH_BODY": str(files["messages"])}, stdout=subprocess.DEVNULL)
    time.sleep(1)
    subprocess.run([spy, "record", "-p", str(worker), "-d", str(int(seconds)), "-r", "250", "-f", "raw",
                    "--nonblocking", "-o", str(out)], check=True, capture_output=True)
    load.wait()
    return summarize_profile(out)


COMPONENTS = [  # first match wins, checked from the innermost frame outwards
    ("JSON encode/decode", ("json/encoder.py", "json/decoder.py", "json/__init__.py", "flask/json")),
    ("access log + metrics", ("logging/", "gateway/logs.py", "prometheus_client", "gateway/metrics.py")),
    ("upstream HTTP client (requests/urllib3/http.client)", ("requests/", "urllib3/", "http/client.py")),
    ("schema load (marshmallow)", ("marshmallow/", "gateway/schemas/")),
    ("translation (build_request)", ("gateway/translate/",)),
    ("SSE parse + events + render", ("gateway/upstream/sse.py", "gateway/core/", "gateway/render/",
                                     "gateway/upstream/client.py")),
    ("socket send/recv (kernel)", ("gevent/_socketcommon.py", "gevent/_socket3.py")),
    ("gunicorn HTTP parse/write", ("gunicorn/",)),
    ("Flask/Werkzeug request handling", ("flask/", "werkzeug/")),
    ("gateway request code", ("gateway/", "app.py")),
    ("gevent hub/loop", ("gevent/",)),
]


def summarize_profile(path: Path) -> str:
    """Self time of each sample, attributed to the innermost frame that matches a component."""
    totals: dict[str, int] = {}
    count = 0
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        count += n
        frames = stack.split(";")[::-1]
        name = next((label for frame in frames for label, keys in COMPONENTS if any(k in frame for k in keys)),
                    "other")
        totals[name] = totals.get(name, 0) + n
    lines = [f"py-spy: {count} samples of one worker under 50 clients (non-streaming /v1/messages)"]
    lines += [f"  {100 * n / count:5.1f}%  {name}" for name, n in sorted(totals.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    header = "| figure | gateway | baseline | ratio / added | target | met |\n|---|---:|---:|---:|---|---|\n"
    return header + "\n".join(f"| {r.figure} | {r.gateway} | {r.baseline} | {r.ratio} | {r.target} | {r.met} |"
                              for r in rows)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}, {wrk_version.strip()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark the gateway against a fast fake upstream.")
    parser.add_argument("--quick", action="store_true", help="2 s load runs, 500 slow streams")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each wrk run (3 runs per figure)")
    parser.add_argument("--streams", type=int, default=5000, help="slow streams to hold at once")
    parser.add_argument("--chunk-delay", type=float, default=5.0, help="seconds between slow-stream chunks")
    parser.add_argument("--profile", action="store_true", help="py-spy a worker under load")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, bodies, profile)")
    parser.add_argument("--only", nargs="+", choices=PHASES, default=PHASES, help="run only these parts")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.streams, args.chunk_delay = 2.0, 500, 1.0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    # SIGTERM (a timeout, a kill) still runs the finally blocks that stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_nofile()
    chat = (ROOT / "gateway" / "api" / "openai.py").exists()
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    report = ""
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        files = bodies(workdir)
        print(f"machine: {machine()}", flush=True)
        with running(start_upstream(workdir / "upstream.log")) as up:
            if {"throughput", "latency", "ttfb"} & set(args.only) or args.profile:
                with running(start_gateway(up, workdir, workdir / "gunicorn.log")) as gw:
                    raw["load"] = {}
                    if "throughput" in args.only:
                        print("throughput ...", flush=True)
                        found, raw["load"] = throughput(gw, up, files, args.seconds, chat)
                        rows += found
                    if "latency" in args.only:
                        print("latency ...", flush=True)
                        rows += latency(gw, up, files, args.seconds, raw["load"])
                    if "ttfb" in args.only:
                        print("time to first byte ...", flush=True)
                        rows += first_byte(gw, up, files, 100 if args.quick else 300)
                    if args.profile:
                        print("profile ...", flush=True)
                        report = profile(gw, files, args.seconds, workdir)
            if "floor" in args.only:
                print("floor ...", flush=True)
                found, raw["floor"] = floor(up, workdir, files, args.seconds)
                rows += found
            if "streams" in args.only:
                print(f"{args.streams} slow streams ...", flush=True)
                found, raw["streams"] = slow_streams(up, workdir, args.streams, args.chunk_delay)
                rows += found
        if "translate" in args.only:
            print("translation ...", flush=True)
            found, raw["translate"] = translation()
            rows += found
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(rows))
    if report:
        print()
        print(report)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
