"""The retry policy on its own: an injected clock and random source, no sleeping, no sockets."""

from __future__ import annotations

import pytest

from gateway.engine.policy import MAX_BACKOFF, Failure, RetryPolicy
from gateway.errors import RateLimited, UpstreamError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock, rand: float = 0.0, **limits) -> RetryPolicy:
    return RetryPolicy(clock=clock, rand=lambda: rand, **limits)


ERROR = UpstreamError("boom")


def test_backoff_doubles_up_to_the_cap_and_stops_after_max_retries() -> None:
    attempts = policy(Clock(), base_delay=1.0, max_retries=7, retry_budget=1e9).begin()
    delays = [attempts.after_failure("a", Failure.TRANSIENT, ERROR) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF, None]


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 4.0), (0.5, 3.0), (0.999, 2.002)])
def test_jitter_cuts_a_pause_by_up_to_half(rand: float, expected: float) -> None:
    attempts = policy(Clock(), rand=rand, base_delay=4.0).begin()
    assert attempts.after_failure("a", Failure.TRANSIENT, ERROR) == pytest.approx(expected)


def test_no_backoff_beyond_the_retry_budget() -> None:
    clock = Clock()
    attempts = policy(clock, base_delay=1.0, retry_budget=10.0).begin()
    assert attempts.after_failure("a", Failure.TRANSIENT, ERROR) == 1.0
    clock.now += 8.5  # 8.5 s in, the next pause (2 s) would end past the 10 s budget
    assert attempts.after_failure("a", Failure.TRANSIENT, ERROR) is None
    assert attempts.last_error is ERROR


def test_a_transient_failure_prefers_another_account_next() -> None:
    attempts = policy(Clock()).begin()
    attempts.after_failure("a", Failure.TRANSIENT, ERROR)
    assert attempts.avoid == "a" and not attempts.failed
    attempts.after_failure("b", Failure.RATE_LIMITED, RateLimited("limited"))
    assert attempts.avoid is None  # a rate limit moves on without pausing: nothing left to avoid


def test_unauthorized_gets_one_more_try_then_the_account_is_out() -> None:
    attempts = policy(Clock()).begin()
    assert attempts.after_failure("a", Failure.UNAUTHORIZED, ERROR) == 0.0
    assert "a" not in attempts.failed
    assert attempts.after_failure("a", Failure.UNAUTHORIZED, ERROR) == 0.0
    assert "a" in attempts.failed


def test_rate_limited_and_broken_accounts() -> None:
    attempts = policy(Clock()).begin()
    assert attempts.after_failure("a", Failure.RATE_LIMITED, ERROR) == 0.0
    assert not attempts.failed  # the pool's cooldown keeps it off; it may serve again after a wait
    assert attempts.after_failure("b", Failure.BROKEN, ERROR) == 0.0
    assert attempts.failed == {"b"}


def test_waiting_for_a_rate_limited_account_is_bounded_from_the_first_attempt() -> None:
    clock = Clock()
    attempts = policy(clock, max_wait=60.0).begin()
    assert attempts.may_wait(60.0) and not attempts.may_wait(60.1)
    clock.now += 50
    assert attempts.may_wait(10.0) and not attempts.may_wait(10.1)


def test_empty_answers_are_asked_for_again_a_limited_number_of_times() -> None:
    attempts = policy(Clock(), empty_retries=2).begin()
    assert [attempts.retry_empty() for _ in range(3)] == [True, True, False]
