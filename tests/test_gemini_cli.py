"""gemini-cli itself (``gemini -p``) against the gateway's Gemini API, with the strict fake upstream behind it.

gemini-cli retries a stream it finds wanting (no finish reason, no text) with a nudge of its own and still prints
an answer, so besides the printed output every test checks what reached the gateway and the upstream: each request
answered 2xx, each generate call accepted upstream.

The CLI comes from the npm registry (``.ci/run`` installs a pinned version into a cache directory). In CI a missing
binary fails these tests, because a skip would hide that gemini-cli was never tried; elsewhere they skip with the
reason. What 0.61.0 needs to run offline against a gateway: a settings file that selects API-key auth (with
``GOOGLE_GEMINI_BASE_URL`` alone it picks an auth type it then refuses, "Invalid auth method selected"), usage
statistics and update checks off, and ``GEMINI_CLI_TRUST_WORKSPACE`` (it refuses untrusted folders headless).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import GatewayServer, RequestLog, require_cli
from tests.fake_cloudcode import FakeCloudCode
from tests.test_claude_code import Run

GEMINI_CLI_VERSION = "0.61.0"
RUN_TIMEOUT = 180
# printf builds the marker, so it appears in the answer only if gemini-cli really ran the command.
SHELL_ARGS = {"command": "printf 'tool-%s' output-42", "description": "Print a marker"}
MARKER = "tool-output-42"
# What the user types after -m, and the upstream model it reaches: gemini-cli itself sends gemini-3-flash as
# gemini-3.8-flash (with thinking level HIGH), which the upstream serves as its -tiered id.
MODELS = {"gemini-3-flash": "gemini-3.8-flash-tiered", "gemini-3-flash-agent": "gemini-3-flash-agent",
          "claude-opus-4-6-thinking": "claude-opus-4-6-thinking"}
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


@pytest.fixture(scope="module")
def gemini_bin() -> Path:
    return require_cli("GEMINI_CLI_BIN", "gemini-cli", "gemini", f"@google/gemini-cli@{GEMINI_CLI_VERSION}")


def run_gemini(binary: Path, gateway_url: str, model: str, prompt: str, tmp_path: Path, *,
               yolo: bool = False) -> Run:
    """``gemini -p`` with an empty HOME (but for its settings file) and cwd: no user settings or login leak in."""
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".gemini").mkdir(parents=True)
    work.mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "GOOGLE_GEMINI_BASE_URL": gateway_url,
        "GEMINI_API_KEY": "any",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "NO_COLOR": "1",
    }
    command = [str(binary), "-m", model, *(["--yolo"] if yolo else []), "-p", prompt]
    done = subprocess.run(command, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    return Run(done.returncode, done.stdout, done.stderr)


def assert_all_served(log: RequestLog, fake: FakeCloudCode, expected: int) -> None:
    """Every request gemini-cli made got a 2xx (streams, as SSE), and the upstream accepted every generate call."""
    requests = [s for s in log.seen if s.method == "POST"]
    summary = [(s.path, s.status) for s in requests]
    assert all(s.status is not None and 200 <= s.status < 300 for s in requests), summary
    streams = [s for s in requests if s.path.endswith(":streamGenerateContent")]
    assert len(streams) == expected, summary
    assert [r.status for r in fake.generate_requests()] == [200] * len(fake.generate_requests())
    assert all(r.query.get("alt") == "sse" for r in fake.generate_requests())


def function_responses(fake: FakeCloudCode) -> list[dict]:
    parts = []
    for recorded in fake.generate_requests():
        for content in recorded.body["request"]["contents"]:
            parts += [p["functionResponse"] for p in content.get("parts", []) if "functionResponse" in p]
    return parts


def test_gemini_cli_version(gemini_bin: Path) -> None:
    """The pinned version is the one tested: a different CLI may send different requests."""
    done = subprocess.run([str(gemini_bin), "--version"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.stdout.strip() == GEMINI_CLI_VERSION, done.stdout + done.stderr


@pytest.mark.parametrize("model", MODELS)
def test_plain_answer(gemini_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                      model: str, tmp_path: Path) -> None:
    run = run_gemini(gemini_bin, gateway.url, model, "Reply with the word pineapple-17", tmp_path)

    assert run.returncode == 0, run.explain()
    assert "Echo: Reply with the word pineapple-17" in run.stdout, run.explain()
    assert_all_served(seen, fake, 1)
    assert [r.body["model"] for r in fake.generate_requests()] == [MODELS[model]]


@pytest.mark.parametrize("model", MODELS)
def test_shell_tool_round_trip(gemini_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                               model: str, tmp_path: Path) -> None:
    """The fake asks for run_shell_command; gemini-cli runs it (--yolo approves) and sends the output back; the
    answer quotes it. For the thinking Claude, the gateway put back the signed thinking gemini-cli dropped."""
    prompt = f"call tool run_shell_command with {json.dumps(SHELL_ARGS)}"
    run = run_gemini(gemini_bin, gateway.url, model, prompt, tmp_path, yolo=True)

    assert run.returncode == 0, run.explain()
    assert "Tool result received:" in run.stdout and MARKER in run.stdout, run.explain()
    assert_all_served(seen, fake, 2)
    first, second = fake.generate_requests()
    assert "run_shell_command" in {d["name"] for t in first.body["request"]["tools"]
                                   for d in t.get("functionDeclarations", [])}
    responses = function_responses(fake)
    assert [r["name"] for r in responses] == ["run_shell_command"]
    assert MARKER in json.dumps(responses[0]["response"])
    model_turn = second.body["request"]["contents"][-2]["parts"]
    if model.startswith("claude"):
        assert model_turn[0]["thought"] is True and "[Continue]" not in json.dumps(second.body)
    else:
        assert model_turn[-1]["thoughtSignature"].startswith("C")  # Gemini's own, as it issued it
