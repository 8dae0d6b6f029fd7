"""Redaction: the one-scan shortcut must never let through what the full set of patterns would mask."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.redact import mask_patterns, redact

FRAGMENTS = ["ya29.", "1//", "4/0", "GOCSPX-", "Bearer ", "bearer\t", "BEARER  ", "access_token=", "Refresh_Token:",
             "api-key ", "API_KEY\"", "apikey'", "client_secret=", "abc", "Q-_9.", " ", "\"", ",", "&", "=", "/", "1", "4"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join))
def test_the_shortcut_masks_exactly_what_every_pattern_masks(text: str) -> None:
    assert redact(text) == mask_patterns(text)


def test_each_kind_of_secret_is_masked_and_plain_lines_pass_unchanged() -> None:
    line = "method=POST path=/v1/messages model=claude-sonnet-4-6 status=200 account=me@example.com"
    assert redact(line) == line
    for secret in ("ya29.a0AfB_token", "1//0g-refresh", "4/0AY0e-code", "GOCSPX-abc_def"):
        assert secret not in redact(f"x {secret} y")
    assert redact("Authorization: Bearer sk-live-123") == "Authorization: Bearer [redacted]"
    assert redact('{"api_key": "k-123"}') == '{"api_key": "[redacted]"}'
    assert redact("token sekrit-value here", ["sekrit-value"]) == "token [redacted] here"
