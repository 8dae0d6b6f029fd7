"""Claude Code itself (``claude -p``) against the gateway, with the strict fake upstream behind it.

Claude Code hides broken streams: when a stream is malformed it silently asks again with ``stream: false`` and
still prints an answer. So besides the printed output, every test checks what reached the gateway: each
``/v1/messages`` request must have asked for a stream and been answered 200.

The CLI comes from the npm registry (``.ci/run`` installs a pinned version into a cache directory). In CI a
missing binary fails these tests, because a skip would hide that Claude Code was never tried; elsewhere they
skip with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayServer, RequestLog, require_cli
from tests.fake_cloudcode import FakeCloudCode

CLAUDE_CODE_VERSION = "2.1.332"
RUN_TIMEOUT = 180
# printf builds the marker, so it appears in the answer only if Claude Code really ran the command.
BASH_ARGS = {"command": "printf 'tool-%s' output-42", "description": "Print a marker"}
MARKER = "tool-output-42"
MODELS = ["claude-opus-4-6-thinking", "gemini-3-flash-agent"]


@pytest.fixture(scope="module")
def claude_bin() -> Path:
    return require_cli("CLAUDE_CODE_BIN", "claude-code", "claude", f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-3000:]}"


def run_claude(binary: Path, gateway_url: str, model: str, prompt: str, tmp_path: Path, *,
               allowed_tools: str = "Bash", extra_env: dict[str, str] | None = None) -> Run:
    """``claude -p`` with an empty HOME and cwd, so no user settings, login or project files leak in."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "ANTHROPIC_BASE_URL": gateway_url,
        "ANTHROPIC_AUTH_TOKEN": "any",
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gemini-3-flash-agent",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        **(extra_env or {}),
    }
    command = [str(binary), "-p", "--allowedTools", allowed_tools, "--", prompt]
    done = subprocess.run(command, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    return Run(done.returncode, done.stdout, done.stderr)


def assert_all_streamed(log: RequestLog, expected: int) -> None:
    """Every /v1/messages request asked for a stream and got a 200: no silent non-streaming fallback."""
    requests = log.messages()
    summary = [(s.stream, s.status) for s in requests]
    assert len(requests) == expected, summary
    assert all(s.stream is True and s.status == 200 for s in requests), summary


def function_responses(fake: FakeCloudCode) -> list[dict[str, Any]]:
    parts = []
    for recorded in fake.generate_requests():
        for content in recorded.body["request"]["contents"]:
            parts += [p["functionResponse"] for p in content.get("parts", []) if "functionResponse" in p]
    return parts


def test_claude_code_version(claude_bin: Path) -> None:
    """The pinned version is the one tested: a different CLI may send different requests."""
    done = subprocess.run([str(claude_bin), "--version"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, "DISABLE_AUTOUPDATER": "1"})
    assert done.stdout.split()[0] == CLAUDE_CODE_VERSION, done.stdout + done.stderr


@pytest.mark.parametrize("model", MODELS)
def test_plain_answer(claude_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                      model: str, tmp_path: Path) -> None:
    run = run_claude(claude_bin, gateway.url, model, "Reply with the word pineapple-17", tmp_path)

    assert run.returncode == 0, run.explain()
    assert "Echo: Reply with the word pineapple-17" in run.stdout, run.explain()
    assert_all_streamed(seen, 1)
    generated = fake.generate_requests()
    assert [(r.method, r.body["model"], r.status) for r in generated] == [("streamGenerateContent", model, 200)]


@pytest.mark.parametrize("model", MODELS)
def test_bash_tool_round_trip(claude_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                              model: str, tmp_path: Path) -> None:
    """The fake asks for Bash; Claude Code runs it and sends the output back; the answer quotes it."""
    run = run_claude(claude_bin, gateway.url, model, f"call tool Bash with {json.dumps(BASH_ARGS)}", tmp_path)

    assert run.returncode == 0, run.explain()
    assert f"Tool result received: {MARKER}" in run.stdout, run.explain()
    assert_all_streamed(seen, 2)
    first, second = seen.messages()
    assert "Bash" in {tool.get("name") for tool in first.body.get("tools", [])}
    tool_use = [b for b in second.body["messages"][-2]["content"] if b.get("type") == "tool_use"]
    assert [(b["name"], b["input"]) for b in tool_use] == [("Bash", BASH_ARGS)]
    responses = function_responses(fake)
    assert [r["name"] for r in responses] == ["Bash"]
    assert MARKER in json.dumps(responses[0]["response"])


@pytest.mark.parametrize("model", MODELS)
def test_web_search(claude_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                    model: str, tmp_path: Path) -> None:
    """The model calls WebSearch; Claude Code asks the gateway for the search in a request of its own (its only tool
    the web_search server tool), the gateway searches upstream, and the final answer holds a result's URL.

    Claude Code 2.1.332 defers WebSearch behind its ToolSearch tool, which the fake's model cannot use:
    ``ENABLE_TOOL_SEARCH=false`` makes it declare WebSearch up front.
    """
    prompt = f"call tool WebSearch with {json.dumps({'query': 'gateway grounding'})}"
    run = run_claude(claude_bin, gateway.url, model, prompt, tmp_path, allowed_tools="WebSearch",
                     extra_env={"ENABLE_TOOL_SEARCH": "false"})

    assert run.returncode == 0, run.explain()
    assert "https://docs.example.com/gateway-grounding" in run.stdout, run.explain()
    assert_all_streamed(seen, 3)
    first, search, last = seen.messages()
    assert "WebSearch" in {tool.get("name") for tool in first.body.get("tools", [])}
    assert [tool["type"].startswith("web_search_") for tool in search.body["tools"]] == [True]
    assert "gateway grounding" in json.dumps(search.body["messages"])
    generated = [(r.body["requestType"], r.body["model"], r.status) for r in fake.generate_requests()]
    assert generated == [("agent", model, 200), ("web_search", "gemini-3-flash-agent", 200), ("agent", model, 200)]
    assert fake.generate_requests()[1].body["request"]["tools"] == [{"googleSearch": {}}]
    responses = function_responses(fake)
    assert [r["name"] for r in responses] == ["WebSearch"]
    assert "https://news.example.org/gateway-grounding" in json.dumps(responses[0]["response"])
