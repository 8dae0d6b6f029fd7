"""Two revisions of the gateway side by side: the same load, alternating between them, in one run.

    python bench/compare.py 2748068                 # this working tree against commit 2748068
    python bench/compare.py HEAD~3 --rounds 7       # more rounds, steadier medians
    python bench/compare.py 5b28aaf --loads long    # only the long streamed answers (400 chunks)

On the project's shared 2-core VM, whole runs of ``bench/run.py`` made one after the other differ by up to 20%
(the machine's speed drifts over minutes), which hides a 10% change. Here both revisions run at once under
gunicorn exactly as their own Procfile starts them, behind one fast upstream, and each round loads one, then
the other, with short wrk runs (the order swapped every round): drift hits both alike. Reported per figure: the
median over the rounds of requests/s, of the workers' CPU milliseconds per request, and of the latency at one
client. A revision is checked out with ``git worktree`` into a temporary directory and removed afterwards.

The long streamed answers are read whole by ``bench/streams.py relay`` rather than by wrk, which cuts off the
streams in flight when its time is up: the workers' CPU is then divided by exactly the chunks relayed. A stream
that does not end in time (a revision that hangs) is reported, not waited for.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    Server,
    bodies,
    configure,
    cpu_seconds,
    raise_nofile,
    running,
    start_gateway,
    start_upstream,
    streams,
    wrk_once,
    wrk_with_cpu,
)

# (figure, path, body file from bench.run.bodies, clients)
LOADS = [
    ("non-streaming /v1/messages, 50 clients", "/v1/messages", "messages", 50),
    ("streaming /v1/messages (8 chunks), 50 clients", "/v1/messages", "messages_stream", 50),
    ("non-streaming /v1/chat/completions, 50 clients", "/v1/chat/completions", "chat", 50),
    ("non-streaming 50 KB Claude Code request, 50 clients", "/v1/messages", "claude_code", 50),
    ("non-streaming /v1/messages, 1 client", "/v1/messages", "messages", 1),
]
# Long answers: (figure, path, body file, upstream chunks, seconds before each chunk). Spaced chunks arrive one
# read each, as a model streams them; a burst arrives in a few reads (more events than the relay may hold).
LONG_STREAMS = [
    ("streaming /v1/messages (400 chunks 2 ms apart), 50 clients", "/v1/messages", "messages_stream", 400, 0.002),
    ("streaming /v1/chat/completions (400 chunks 2 ms apart), 50 clients", "/v1/chat/completions", "chat_stream",
     400, 0.002),
    ("streaming /v1/messages (400 chunks in one burst), 50 clients", "/v1/messages", "messages_stream", 400, 0.0),
]
LONG_FIGURES = {figure for figure, *_ in LONG_STREAMS}
LONG_CLIENTS, LONG_EACH, LONG_TIMEOUT = 50, 4, 15.0


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """``revision`` of this repository in a temporary directory, sharing this checkout's virtualenv."""
    directory = Path(tempfile.mkdtemp(prefix="gateway-compare-"))
    tree = directory / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision], check=True,
                   capture_output=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def relay_with_cpu(gw: Server, url: str, body: Path, chunks: int) -> dict:
    """Whole streams of ``chunks`` chunks from 50 clients; the workers' CPU per request and per chunk relayed."""
    workers = gw.workers()
    before = cpu_seconds(workers)
    figures = streams("relay", url, body, "-c", str(LONG_CLIENTS), "--each", str(LONG_EACH),
                      "--timeout", str(LONG_TIMEOUT))
    cpu_ms = (cpu_seconds(workers) - before) * 1000
    figures["cpu_ms_per_request"] = cpu_ms / max(1, figures["done"])
    figures["cpu_us_per_chunk"] = cpu_ms * 1000 / max(1, figures["done"] * chunks)
    return figures


def compare(base: Path, head: Path, rounds: int, seconds: float, work: Path,
            loads: list[str]) -> dict[str, dict[str, list[dict]]]:
    files = bodies(work)
    short = LOADS if "short" in loads else []
    long_streams = LONG_STREAMS if "long" in loads else []
    results: dict[str, dict[str, list[dict]]] = {figure: {"base": [], "head": []}
                                                 for figure, *_ in short + long_streams}
    with ExitStack() as stack:
        up = stack.enter_context(running(start_upstream(work / "upstream.log")))
        gateways = {
            "base": stack.enter_context(running(start_gateway(up, work, work / "base.log", root=base))),
            "head": stack.enter_context(running(start_gateway(up, work, work / "head.log", root=head))),
        }
        for gw in gateways.values():  # warm-up: connections, imports, caches
            wrk_once(gw.url + "/v1/messages", files["messages"], 20, 2)
        for round_ in range(rounds):
            order = ["base", "head"] if round_ % 2 == 0 else ["head", "base"]
            for figure, path, body, clients in short:
                for name in order:
                    gw = gateways[name]
                    results[figure][name].append(wrk_with_cpu(gw, gw.url + path, files[body], clients, seconds, 1))
            for figure, path, body, chunks, delay in long_streams:
                configure(up, chunks, delay)
                for name in order:
                    gw = gateways[name]
                    results[figure][name].append(relay_with_cpu(gw, gw.url + path, files[body], chunks))
                configure(up, 8, 0.0)
            print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr)
    return results


def table(results: dict[str, dict[str, list[dict]]], base_name: str, head_name: str) -> str:
    lines = [f"| figure | {base_name} | {head_name} | change |", "|---|---:|---:|---:|"]
    for figure, runs in results.items():
        def median(name: str, key: str) -> float:
            return statistics.median(run[key] for run in runs[name])

        if figure in LONG_FIGURES:
            lines += long_rows(figure, runs)
            continue
        if figure.endswith("1 client"):
            rows = [("p50 latency", "p50_us", 1 / 1000, "{:.2f} ms", -1), ("p99 latency", "p99_us", 1 / 1000, "{:.2f} ms", -1)]
        else:
            rows = [("requests/s", "rps", 1, "{:,.0f} req/s", 1), ("CPU per request", "cpu_ms_per_request", 1, "{:.2f} ms", -1)]
        for label, key, scale, shape, better in rows:
            old, new = median("base", key) * scale, median("head", key) * scale
            change = (new - old) / old * 100 if old else 0.0
            verdict = "better" if change * better > 0 else "worse"
            lines.append(f"| {figure}: {label} | {shape.format(old)} | {shape.format(new)} | {change:+.0f}% ({verdict}) |")
    return "\n".join(lines)


def long_rows(figure: str, runs: dict[str, list[dict]]) -> list[str]:
    """CPU per request and per relayed chunk, with the streams that did not end in time (a hung stream's CPU
    is counted, its chunks are not); a revision none of whose streams ended shows only that."""
    cells: dict[str, tuple[float | None, float | None, str]] = {}
    for name in ("base", "head"):
        done = [run for run in runs[name] if run["done"]]
        failed = sum(run["failed"] for run in runs[name])
        note = ""
        if failed:
            requested = sum(run["requested"] for run in runs[name])
            errors = sorted({error for run in runs[name] for error in run["errors"]})
            note = f"{failed} of {requested} streams failed ({', '.join(errors)})"
        if not done:
            cells[name] = (None, None, note)
            continue
        request = statistics.median(run["cpu_ms_per_request"] for run in done)
        chunk = statistics.median(run["cpu_us_per_chunk"] for run in done)
        cells[name] = (request, chunk, f"; {note}" if note else "")
    lines = []
    for label, index, shape in (("CPU per request", 0, "{:.2f} ms"), ("CPU per relayed chunk", 1, "{:.1f} us")):
        shown = []
        for name in ("base", "head"):
            value, note = cells[name][index], cells[name][2]
            shown.append(note if value is None else shape.format(value) + (note if index == 1 else ""))
        old, new = cells["base"][index], cells["head"][index]
        change = f"{(new - old) / old * 100:+.0f}% ({'better' if new < old else 'worse'})" if old and new else ""
        lines.append(f"| {figure}: {label} | {shown[0]} | {shown[1]} | {change} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare this tree with another revision under the same load.")
    parser.add_argument("revision", help="the baseline: a commit, tag or branch of this repository")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each wrk run")
    parser.add_argument("--loads", nargs="+", choices=["short", "long"], default=["short", "long"],
                        help="short: the wrk loads; long: 400-chunk streamed answers read whole")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    raise_nofile()
    with checkout(args.revision) as base, tempfile.TemporaryDirectory(prefix="gateway-compare-work-") as work:
        results = compare(base, ROOT, args.rounds, args.seconds, Path(work), args.loads)
    print(f"\n{args.rounds} alternating rounds of {args.seconds:g} s per wrk figure, {LONG_CLIENTS} x {LONG_EACH} "
          f"whole streams per long figure; medians.\n")
    print(table(results, args.revision, "this tree"))


if __name__ == "__main__":
    main()
