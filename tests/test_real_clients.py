"""Finding the real clients the end-to-end tests run (Claude Code, Codex, gemini-cli)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import cli_cache, find_cli


@pytest.mark.parametrize(("env_var", "name", "binary"), [
    ("CLAUDE_CODE_BIN", "claude-code", "claude"),
    ("CODEX_BIN", "codex", "codex"),
    ("GEMINI_CLI_BIN", "gemini-cli", "gemini"),
])
def test_bin_lookup_prefers_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env_var: str, name: str,
                                binary: str) -> None:
    """The variable wins over the cache, and a path that is not an executable counts as missing."""
    fake_bin = tmp_path / binary
    fake_bin.write_text("#!/bin/sh\n")
    monkeypatch.setenv(env_var, str(fake_bin))
    assert find_cli(env_var, name, binary) is None
    fake_bin.chmod(0o755)
    assert find_cli(env_var, name, binary) == fake_bin
    monkeypatch.delenv(env_var)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli_cache(name) == tmp_path / "cache" / "gateway-ci" / name
    assert find_cli(env_var, name, binary) is None
