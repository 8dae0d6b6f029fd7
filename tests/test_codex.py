"""Codex CLI itself (``codex exec``) against the gateway's Responses API, with the strict fake upstream behind it.

Codex is configured as its users would configure it: a custom model provider with ``wire_api = "responses"``
in a ``config.toml`` of a temporary ``CODEX_HOME``. A model catalog there tells Codex what it needs to know of
the gateway's models (their reasoning levels, and that they take ``apply_patch`` as a freeform tool); without
it Codex falls back to generic metadata and offers no ``apply_patch``.

Codex retries a failed stream up to five times and still prints an answer, so besides the output every test
checks what reached the gateway: each ``/v1/responses`` request asked for a stream and was answered 200, and
the upstream accepted every request the gateway made (the fake checks Claude's thinking signatures).

The CLI comes from the npm registry (``.ci/run`` installs a pinned version into a cache directory). In CI a
missing binary fails these tests, because a skip would hide that Codex was never tried; elsewhere they skip
with the reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayServer, RequestLog, require_cli
from tests.fake_cloudcode import FakeCloudCode
from tests.test_claude_code import Run

CODEX_VERSION = "0.169.0"
RUN_TIMEOUT = 180
MODELS = ["claude-opus-4-6-thinking", "gemini-3-flash-agent"]
# printf builds the marker, so it appears in the answer only if Codex really ran the command.
SHELL_ARGS = {"cmd": "printf 'tool-%s' output-42"}
MARKER = "tool-output-42"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from codex\n*** End Patch\n"
# What Codex is told of each model (its catalog format: `codex-rs/models-manager`); Codex reads no model
# listing from a custom provider.
CATALOG_ENTRY: dict[str, Any] = {
    "description": "Served by the Cloud Code gateway",
    "default_reasoning_level": "low",
    "supported_reasoning_levels": [{"effort": "low", "description": "Quick"},
                                   {"effort": "high", "description": "Thorough"}],
    "shell_type": "shell_command",
    "visibility": "list",
    "supported_in_api": True,
    "priority": 1,
    "apply_patch_tool_type": "freeform",
    "supports_reasoning_summaries": True,
    "support_verbosity": False,
    "context_window": 200000,
    "truncation_policy": {"mode": "tokens", "limit": 10000},
    "input_modalities": ["text", "image"],
    "supports_parallel_tool_calls": True,
    "experimental_supported_tools": [],
    "base_instructions": "You are a coding agent running in the Codex CLI. Use the tools to inspect and change "
                         "the user's workspace, then say what you did.",
}


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    return require_cli("CODEX_BIN", "codex", "codex", f"@openai/codex@{CODEX_VERSION}")


def codex_home(path: Path, gateway_url: str, model: str) -> Path:
    """A CODEX_HOME whose config.toml makes the gateway Codex's model provider, as the README says."""
    path.mkdir()
    catalog = path / "gateway-models.json"
    catalog.write_text(json.dumps({"models": [
        {"slug": slug, "display_name": slug, **CATALOG_ENTRY} for slug in MODELS]}))
    (path / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "gateway"\n'
        f'model_catalog_json = "{catalog}"\n'
        "check_for_update_on_startup = false\n"
        "\n"
        "[model_providers.gateway]\n"
        'name = "Cloud Code gateway"\n'
        f'base_url = "{gateway_url}/v1"\n'
        'env_key = "GATEWAY_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    return path


def run_codex(binary: Path, gateway_url: str, model: str, prompt: str, tmp_path: Path) -> tuple[Run, Path]:
    """``codex exec`` with an empty HOME and working directory, so no user settings or project files leak in.

    The sandbox is off: the commands are the ones the fake asks for, in a temporary directory, and Codex's
    sandbox needs kernel features that CI machines may not offer.
    """
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(tmp_path),
        "CODEX_HOME": str(codex_home(tmp_path / "codex-home", gateway_url, model)),
        "GATEWAY_API_KEY": "any",
        "NO_COLOR": "1",
    }
    last = tmp_path / "last-message.txt"
    command = [str(binary), "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never",
               "--dangerously-bypass-approvals-and-sandbox", "-o", str(last), prompt]
    done = subprocess.run(command, env=env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    answer = last.read_text() if last.exists() else ""
    return Run(done.returncode, answer or done.stdout, done.stderr), work


def responses(log: RequestLog) -> list[Any]:
    return [s for s in log.seen if s.method == "POST" and s.path == "/v1/responses"]


def assert_streamed_and_accepted(log: RequestLog, fake: FakeCloudCode, expected: int, model: str) -> None:
    """Every request asked for a stream and got a 200, and the upstream accepted each of the gateway's."""
    made = responses(log)
    summary = [(s.stream, s.status) for s in made]
    assert len(made) == expected, summary
    assert all(s.stream is True and s.status == 200 for s in made), summary
    generated = fake.generate_requests()
    assert [(r.method, r.body["model"], r.status) for r in generated] == [
        ("streamGenerateContent", model, 200)] * expected


def call_tool(name: str, arguments: dict[str, Any]) -> str:
    """The prompt on which the fake upstream answers with a call of ``name``."""
    return f"call tool {name} with {json.dumps(arguments)}"


def assert_thinking_replayed(fake: FakeCloudCode, model: str) -> None:
    """A Claude thinking model's tool loop went back upstream with its signed thinking (the fake checked it)."""
    if not model.startswith("claude"):
        return
    contents = fake.generate_requests()[-1].body["request"]["contents"]
    turn = next(c for c in reversed(contents) if c["role"] == "model")
    assert turn["parts"][0].get("thought") is True and turn["parts"][0]["thoughtSignature"], turn


def test_codex_version(codex_bin: Path) -> None:
    """The pinned version is the one tested: a different CLI may send different requests."""
    done = subprocess.run([str(codex_bin), "--version"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.stdout.split()[-1] == CODEX_VERSION, done.stdout + done.stderr


@pytest.mark.parametrize("model", MODELS)
def test_plain_prompt(codex_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                      model: str, tmp_path: Path) -> None:
    run, _ = run_codex(codex_bin, gateway.url, model, "Reply with the word pineapple-17", tmp_path)

    assert run.returncode == 0, run.explain()
    assert "Echo: Reply with the word pineapple-17" in run.stdout, run.explain()
    assert_streamed_and_accepted(seen, fake, 1, model)
    body = responses(seen)[0].body
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert any(tool["type"] == "web_search" for tool in body["tools"])  # sent, and dropped rather than refused


@pytest.mark.parametrize("model", MODELS)
def test_shell_tool_round_trip(codex_bin: Path, gateway: GatewayServer, fake: FakeCloudCode, seen: RequestLog,
                               model: str, tmp_path: Path) -> None:
    """The fake asks for exec_command; Codex runs it and sends the output back; the answer quotes it."""
    run, _ = run_codex(codex_bin, gateway.url, model, call_tool("exec_command", SHELL_ARGS), tmp_path)

    assert run.returncode == 0, run.explain()
    assert "Tool result received:" in run.stdout and MARKER in run.stdout, run.explain()
    assert_streamed_and_accepted(seen, fake, 2, model)
    replayed = responses(seen)[1].body["input"]
    call = next(item for item in replayed if item.get("type") == "function_call")
    assert (call["name"], json.loads(call["arguments"])) == ("exec_command", SHELL_ARGS)
    output = next(item for item in replayed if item.get("type") == "function_call_output")
    assert output["call_id"] == call["call_id"] and MARKER in json.dumps(output["output"])
    assert any(item.get("type") == "reasoning" and item.get("encrypted_content") for item in replayed)
    assert_thinking_replayed(fake, model)


@pytest.mark.parametrize("model", MODELS)
def test_apply_patch_round_trip_writes_the_file(codex_bin: Path, gateway: GatewayServer, fake: FakeCloudCode,
                                                seen: RequestLog, model: str, tmp_path: Path) -> None:
    """apply_patch is a freeform (custom) tool: the patch text reaches Codex as a custom_tool_call."""
    run, work = run_codex(codex_bin, gateway.url, model, call_tool("apply_patch", {"input": PATCH}), tmp_path)

    assert run.returncode == 0, run.explain()
    assert (work / "hello.txt").read_text() == "hello from codex\n", run.explain()
    assert "Tool result received:" in run.stdout, run.explain()
    assert_streamed_and_accepted(seen, fake, 2, model)
    first, second = (s.body for s in responses(seen))
    offered = next(tool for tool in first["tools"] if tool.get("name") == "apply_patch")
    assert offered["type"] == "custom" and offered["format"]["syntax"] == "lark"
    call = next(item for item in second["input"] if item.get("type") == "custom_tool_call")
    assert (call["name"], call["input"]) == ("apply_patch", PATCH)
    assert any(item.get("type") == "custom_tool_call_output" for item in second["input"])
    assert_thinking_replayed(fake, model)
