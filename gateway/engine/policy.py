"""What a request does after each failed attempt, as plain decisions over an injected clock and random source.

The dispatcher does the I/O (connections, sleeps, keep-alives) and asks this module what comes next, so every
rule here is unit-tested without sleeping or sockets. The rules: a rate-limited account is left for another at
once; a server failure backs off exponentially with jitter (so requests that failed together do not retry
together) and prefers another account; a 401 gets one more try on the same account with a fresh token; an
account that cannot serve this request at all is not tried again for it.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import GatewayError

A = TypeVar("A", bound=Hashable)

# Longest single pause between two re-sends after server failures, before jitter.
MAX_BACKOFF = 16.0


class Failure(enum.Enum):
    """How an attempt failed, which decides what the next one does."""

    RATE_LIMITED = "rate limited"  # the pool put the account on cooldown: any other account, now
    TRANSIENT = "transient"  # 5xx, capacity, connection: back off, then preferably another account
    UNAUTHORIZED = "unauthorized"  # 401: the same account once more with a fresh token
    BROKEN = "broken"  # the account cannot serve this request at all: any other account


@dataclass(frozen=True)
class RetryPolicy:
    """The limits of one request's retries, from the settings."""

    max_retries: int = 4
    # Seconds from the first attempt within which a re-send after a server failure may still start.
    retry_budget: float = 30.0
    # The first backoff pause; each later one doubles, up to MAX_BACKOFF.
    base_delay: float = 1.0
    # Longest wait for a rate-limited account to free up, from the first attempt.
    max_wait: float = 120.0
    # Re-sends of an answer that came back without any content.
    empty_retries: int = 2
    clock: Callable[[], float] = time.monotonic
    # A number in [0, 1): the jitter cuts each pause by up to half.
    rand: Callable[[], float] = random.random

    def begin(self) -> Attempts:
        return Attempts(self)


@dataclass
class Attempts(Generic[A]):
    """One request's retry bookkeeping on one model."""

    policy: RetryPolicy
    failed: set[A] = field(default_factory=set)
    refreshed: set[A] = field(default_factory=set)
    # An account to use only if no other can serve (it just failed in a way that may pass).
    avoid: A | None = None
    retries: int = 0
    last_error: GatewayError | None = None

    def __post_init__(self) -> None:
        self.started = self.policy.clock()
        self.empty_left = self.policy.empty_retries

    def after_failure(self, account: A, kind: Failure, error: GatewayError) -> float | None:
        """Seconds to pause before the next attempt, or None when retrying is pointless or the budget is spent."""
        self.last_error = error
        self.avoid = None
        if kind is Failure.TRANSIENT:
            delay = self.backoff()
            if delay is not None:
                self.avoid = account
            return delay
        if kind is Failure.UNAUTHORIZED and account not in self.refreshed:
            self.refreshed.add(account)
        elif kind is not Failure.RATE_LIMITED:
            self.failed.add(account)
        return 0.0

    def backoff(self) -> float | None:
        """The pause before a re-send after a server failure: about 1 s, 2 s, 4 s, ..., each cut by up to half."""
        policy = self.policy
        if self.retries >= policy.max_retries:
            return None
        delay = min(MAX_BACKOFF, policy.base_delay * 2**self.retries) * (1.0 - policy.rand() / 2)
        if policy.clock() + delay - self.started > policy.retry_budget:
            return None
        self.retries += 1
        return delay

    def may_wait(self, seconds: float) -> bool:
        """Whether waiting this long for a rate-limited account stays within the request's longest wait."""
        return self.policy.clock() + seconds <= self.started + self.policy.max_wait

    def retry_empty(self) -> bool:
        """Whether an answer without content may be asked for again."""
        if self.empty_left <= 0:
            return False
        self.empty_left -= 1
        return True
