"""CPU time to translate a Claude Code-sized request (about 50 KB), step by step, with timeit.

The target is the gateway's own work: schema load (validation into the canonical request) plus
``build_request`` (the Cloud Code body). JSON decoding of the client body and encoding of the upstream body
are shown apart, because they depend on the JSON library rather than on the gateway's code (the gateway
encodes with ``gateway.fastjson``, i.e. orjson; the ``json`` module's time is shown for comparison).

Cleaned tool schemas are cached (``gateway/translate/tool_cache.py``), so each translation is timed twice:
``cold`` empties the cache before every run (a session's first turn, or new tools), ``warm`` repeats the same
request (every later turn of a session, which sends the same tools). ``translate_ms`` is the cold figure.

Run: ``python bench/translate.py [--bytes 50000] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.claude_code_request import claude_code_body  # noqa: E402
from gateway import fastjson  # noqa: E402
from gateway.catalog import Catalog  # noqa: E402
from gateway.schemas.anthropic import MESSAGES_SCHEMA  # noqa: E402
from gateway.translate.cloudcode import TOOL_SCHEMAS, build_request  # noqa: E402
from gateway.translate.signatures import SignatureRegistry  # noqa: E402


def best_ms(func: Callable[[], Any], repeat: int = 7) -> float:
    """The best per-call time of several timeit runs: the least disturbed by other processes."""
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1000


def measure(size: int, model: str = "claude-opus-4-6-thinking") -> dict[str, float]:
    body = claude_code_body(size, model=model)
    raw = json.dumps(body).encode()
    catalog, signatures = Catalog(), SignatureRegistry()
    # A real conversation replays signatures the gateway relayed earlier, so they are known.
    for message in body["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") == "thinking":
                signatures.remember(block["signature"], "claude")

    def translate() -> dict[str, Any]:
        canonical = MESSAGES_SCHEMA.load(body)
        info = catalog.resolve(canonical.model)
        return build_request(canonical, info, project="bench-project", signatures=signatures).body

    def cold(step: Callable[[], Any]) -> Callable[[], Any]:
        """The step as on a session's first turn: no tool schema cleaned before."""
        def run() -> Any:
            TOOL_SCHEMAS.clear()
            return step()
        return run

    def build() -> Any:
        return build_request(canonical, info, project="p", signatures=signatures)

    canonical = MESSAGES_SCHEMA.load(body)
    info = catalog.resolve(canonical.model)
    upstream = translate()
    figures = {
        "request_bytes": len(raw),
        "json_loads_ms": best_ms(lambda: json.loads(raw)),
        "schema_load_ms": best_ms(lambda: MESSAGES_SCHEMA.load(body)),
        "build_request_cold_ms": best_ms(cold(build)),
        "build_request_warm_ms": best_ms(build),
        "translate_cold_ms": best_ms(cold(translate)),
        "translate_warm_ms": best_ms(translate),
        "json_dumps_ms": best_ms(lambda: json.dumps(upstream, separators=(",", ":"), ensure_ascii=False).encode()),
        "fastjson_dumps_ms": best_ms(lambda: fastjson.dumps(upstream)),
    }
    # Earlier names, kept for bench/run.py and saved --json files: the cold figures.
    figures["build_request_ms"] = figures["build_request_cold_ms"]
    figures["translate_ms"] = figures["translate_cold_ms"]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time the translation of a Claude Code-sized request.")
    parser.add_argument("--bytes", type=int, default=50_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    figures = measure(args.bytes)
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:22s} {value:10.3f}" if isinstance(value, float) else f"{name:22s} {value:10d}")


if __name__ == "__main__":
    main()
