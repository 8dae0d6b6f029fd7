"""Every form the upstream uses to say when a rate limit lifts."""

from __future__ import annotations

import json

import pytest

from gateway.upstream.errors import UpstreamHTTPError, parse_duration


def _error(details: list, message: str = "Resource has been exhausted") -> str:
    return json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": message, "details": details}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0.479s", 0.479), ("479.417207ms", 0.479417207), ("1h12m5.221s", 4325.221), ("42s", 42.0), ("2m3s", 123.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_retry_info_wins_over_error_info() -> None:
    body = _error(
        [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "QUOTA_EXHAUSTED",
             "metadata": {"quotaResetDelay": "1h0m0s"}},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12.5s"},
        ]
    )
    error = UpstreamHTTPError(429, body)
    assert error.reason == "QUOTA_EXHAUSTED"
    assert error.retry_delay() == pytest.approx(12.5)


def test_quota_reset_delay_then_timestamp() -> None:
    delay = UpstreamHTTPError(429, _error([{"@type": "x.ErrorInfo", "metadata": {"quotaResetDelay": "500ms"}}]))
    assert delay.retry_delay() == pytest.approx(0.5)
    stamp = UpstreamHTTPError(
        429, _error([{"@type": "x.ErrorInfo", "metadata": {"quotaResetTimeStamp": "2026-01-11T14:00:00Z"}}])
    )
    now = 1768140000.0 - 100  # 100 s before 14:00:00Z
    assert stamp.retry_delay(now=now) == pytest.approx(100.0)


def test_retry_after_header_and_message_forms() -> None:
    assert UpstreamHTTPError(429, _error([]), {"Retry-After": "7"}).retry_delay() == 7.0
    message = UpstreamHTTPError(429, _error([], "You have exhausted your capacity. Your quota will reset after 2h13m5s."))
    assert message.retry_delay() == pytest.approx(2 * 3600 + 13 * 60 + 5)
    assert UpstreamHTTPError(429, _error([])).retry_delay() is None


def test_capacity_errors_are_retryable_and_bad_requests_are_not() -> None:
    capacity = UpstreamHTTPError(
        503, json.dumps({"error": {"code": 503, "message": "No capacity available for model x on the server"}})
    )
    assert capacity.is_capacity and capacity.retryable
    assert not UpstreamHTTPError(400, _error([], "bad")).retryable
