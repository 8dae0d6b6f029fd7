"""From a canonical request to a canonical event stream: account choice, retries, failover.

The rule that shapes this module: a request may be re-sent (another endpoint, another account, after an
empty answer) only until its first content event has been handed to the caller. After that an upstream
failure ends the stream with an error; the client never sees a second start of the same answer.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from .accounts import credits
from .accounts.credentials import InvalidGrant, TokenRefreshFailed
from .accounts.pool import Account, AccountPool
from .accounts.refusals import note_refusal
from .accounts.store import update_account_entry
from .catalog import ANTHROPIC, Catalog, ModelInfo
from .config import Settings
from .core.events import CONTENT_EVENTS, Event, Finish, KeepAlive, SignatureDelta, TextDelta, ToolCallEvent, Usage
from .core.request import Request
from .errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    UpstreamError,
)
from .media import resolve_remote_images
from .translate.cloudcode import ResponseParser, build_request, count_tokens_body, session_id
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient, UpstreamStream
from .upstream.errors import UpstreamConnectionError, UpstreamHTTPError

log = logging.getLogger(__name__)

NO_RESPONSE_TEXT = "[No response after retries - please try again]"
# A 429 with no usable delay keeps the account off that model this long.
DEFAULT_COOLDOWN = 60.0
# Names the model that answered when GATEWAY_MODEL_FALLBACK replaced the one asked for.
FALLBACK_HEADER = "X-Gateway-Fallback-Model"
# Names the upstream model that answered whenever it is not the name the client asked for.
MODEL_HEADER = "X-Gateway-Model"
# Longest single pause between two re-sends after server failures, before jitter.
MAX_BACKOFF = 16.0
# Answers about the account rather than the request (no permission on its project, a suspended account, a
# model its tier lacks): another account may serve it. The last account's answer is what the client sees.
ACCOUNT_REFUSALS = frozenset({403, 404})


@dataclass
class Outcome:
    """What one request did: for the access log, the metrics and the response headers."""

    account: str | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    # The upstream model that answered, and the one asked for when a fallback answered instead.
    model: str | None = None
    requested: str | None = None
    fallback_from: str | None = None
    upstream: UpstreamStream | None = field(default=None, repr=False)

    def abort(self) -> None:
        """Unblock a read on the upstream from another greenlet (the client went away)."""
        upstream = self.upstream
        if upstream is not None:
            upstream.abort()

    def response_headers(self) -> dict[str, str]:
        """Headers that tell the client how it was served: which model answered, when not the one named."""
        headers = {}
        if self.model is not None and self.model != self.requested:
            headers[MODEL_HEADER] = self.model
        if self.fallback_from is not None and self.model is not None:
            headers[FALLBACK_HEADER] = self.model
        return headers


class _Failure(enum.Enum):
    """How an attempt failed, which decides what the next one does."""

    RATE_LIMITED = "rate limited"  # the pool put the account on cooldown: any other account, now
    TRANSIENT = "transient"  # 5xx, capacity, connection: back off, then preferably another account
    UNAUTHORIZED = "unauthorized"  # 401: the same account once more with a fresh token
    BROKEN = "broken"  # the account cannot serve this request at all: any other account


class _Failed(Exception):
    def __init__(self, error: GatewayError, kind: _Failure) -> None:
        super().__init__(error.message)
        self.error = error
        self.kind = kind


@dataclass
class _Budget:
    """The retry bookkeeping of one request on one model."""

    settings: Settings
    started: float = field(default_factory=time.monotonic)
    failed: set[Account] = field(default_factory=set)
    refreshed: set[Account] = field(default_factory=set)
    avoid: Account | None = None
    retries: int = 0
    last_error: GatewayError | None = None

    def __post_init__(self) -> None:
        self.empty_left = self.settings.empty_retries
        self.wait_until = self.started + self.settings.max_wait

    def backoff(self) -> float | None:
        """The pause before the next re-send after a server failure; None once the budget is spent.

        Exponential with jitter, so concurrent requests that failed together do not retry together.
        """
        if self.retries >= self.settings.max_retries:
            return None
        delay = min(MAX_BACKOFF, self.settings.server_error_delay * 2**self.retries) * random.uniform(0.5, 1.0)
        if time.monotonic() + delay - self.started > self.settings.retry_budget:
            return None
        self.retries += 1
        return delay


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        pool: AccountPool,
        client: CloudCodeClient,
        catalog: Catalog,
        signatures: SignatureRegistry,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.catalog = catalog
        self.signatures = signatures

    def resolve_model(self, request: Request) -> ModelInfo:
        return self.catalog.resolve(request.model, thinking=request.thinking is not None)

    def events(self, request: Request, outcome: Outcome | None = None) -> Iterator[Event]:
        """The answer as canonical events. Raises GatewayError before the first event if nothing serves it.

        The generator does its retries on the first ``next()``: callers can look at the first event
        before committing HTTP headers, so early failures still get a real status code. While it waits
        for a rate-limited account it yields KeepAlive events (never content).
        """
        outcome = outcome or Outcome()
        outcome.requested = request.model
        model = self.resolve_model(request)
        resolve_remote_images(request, self.settings)
        try:
            relay = yield from self._begin(request, model, outcome)
        except RateLimited:
            # Only raised before any content: _relay turns every failure into UpstreamError.
            fallback = self._fallback(request, model)
            if fallback is None:
                raise
            log.warning("every account is out of quota for %s, answering with %s", model.id, fallback.id)
            outcome.fallback_from = model.id
            relay = yield from self._begin(request, fallback, outcome)
        # The answer has started and nothing re-sends the request now: let its conversation go (a Claude Code
        # request holds several hundred KB of text) while the rest of a long stream is relayed.
        del request
        yield from relay

    def _fallback(self, request: Request, model: ModelInfo) -> ModelInfo | None:
        target = self.settings.model_fallbacks.get(model.id)
        if target is None or target == model.id:
            return None
        try:
            return self.catalog.resolve(target, thinking=request.thinking is not None)
        except NotFound:
            log.warning("GATEWAY_MODEL_FALLBACK names %s, which is not a known model", target)
            return None

    def _begin(self, request: Request, model: ModelInfo, outcome: Outcome) -> Generator[Event, None, Iterator[Event]]:
        """Attempts on ``model`` until one produces content; returns the relay of the rest of that answer.

        Yields only KeepAlive events (while waiting for an account or backing off), so everything before
        the returned relay can still be retried.
        """
        outcome.model = model.id
        budget = _Budget(self.settings)
        session = session_id(request)
        while True:
            account = yield from self._acquire(model, session, budget)
            outcome.account = account.label
            outcome.attempts += 1
            failure: _Failed | None = None
            try:
                started = self._start(account, request, model, outcome)
            except _Failed as exc:
                failure = exc
            if failure is not None:
                yield from self._after_failure(account, failure, budget)
                continue
            if started is None:
                if budget.empty_left > 0:
                    budget.empty_left -= 1
                    log.warning("empty upstream answer from %s, retrying", account.label)
                    time.sleep(self.settings.empty_retry_delay)
                    continue
                return iter([TextDelta(NO_RESPONSE_TEXT), Finish(reason="end_turn", usage=Usage())])
            return self._relay(*started, model, outcome)

    def _start(
        self, account: Account, request: Request, model: ModelInfo, outcome: Outcome
    ) -> tuple[UpstreamStream, Iterator[dict[str, Any]], ResponseParser, list[Event]] | None:
        """Open the stream and read up to its first content (held back, so the attempt can still be
        retried); None when the answer ended without any."""
        stream, parser = self._open(account, request, model)
        outcome.upstream = stream
        buffered: list[Event] = []
        chunks = iter(stream)
        try:
            for chunk in chunks:
                buffered.extend(self._observe(parser.feed(chunk), model))
                if parser.saw_content:
                    return stream, chunks, parser, buffered
        except UpstreamConnectionError as exc:
            stream.close()
            log.warning("upstream stream from %s broke before content: %s", account.label, exc)
            error = UpstreamError("the upstream connection broke before the answer started")
            raise _Failed(error, _Failure.TRANSIENT) from None
        stream.close()
        return None

    def _acquire(self, model: ModelInfo, session: str, budget: _Budget) -> Generator[Event, None, Account]:
        """The next account, waiting (with keep-alives) when all are rate-limited but one frees up soon."""
        while True:
            try:
                return self.pool.acquire(model.id, exclude=budget.failed, avoid=budget.avoid, session=session)
            except ServiceUnavailable as exc:  # AllTried, or the last usable account was just marked unusable
                raise budget.last_error or exc from None
            except RateLimited as exc:
                wait = exc.retry_after or 0.0
                if time.monotonic() + wait > budget.wait_until:
                    raise
                log.info("every account is rate-limited on %s; waiting %.1fs", model.id, wait)
                yield from self._pause(wait)

    def _after_failure(self, account: Account, failure: _Failed, budget: _Budget) -> Iterator[Event]:
        """Decide what the next attempt does; raise when retrying is pointless or the budget is spent."""
        budget.last_error = failure.error
        budget.avoid = None
        if failure.kind is _Failure.TRANSIENT:
            delay = budget.backoff()
            if delay is None:
                raise failure.error from None
            log.warning("%s via %s; retrying in %.2fs", failure.error.message, account.label, delay)
            budget.avoid = account
            yield from self._pause(delay)
        elif failure.kind is _Failure.UNAUTHORIZED and account not in budget.refreshed:
            budget.refreshed.add(account)
        elif failure.kind is not _Failure.RATE_LIMITED:
            budget.failed.add(account)

    def _pause(self, seconds: float) -> Iterator[Event]:
        """Sleep, with a KeepAlive every ping interval so a streaming client's connection stays open."""
        deadline = time.monotonic() + seconds
        interval = self.settings.ping_interval or seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, interval))
            if deadline - time.monotonic() > 0:
                yield KeepAlive()

    def count_tokens(self, request: Request) -> int:
        """The upstream's count for the translated request, else an estimate (chars / 4)."""
        model = self.resolve_model(request)
        body = count_tokens_body(request, model, self.signatures)
        try:
            account = self.pool.acquire(model.id)
            return self.client.count_tokens(account, body)
        except (GatewayError, UpstreamHTTPError, UpstreamConnectionError, InvalidGrant, TokenRefreshFailed) as exc:
            log.info("countTokens unavailable (%s), estimating", type(exc).__name__)
            return max(1, len(json.dumps(body, ensure_ascii=False)) // 4)

    # -- internals --------------------------------------------------------------------------------

    def _open(self, account: Account, request: Request, model: ModelInfo) -> tuple[UpstreamStream, ResponseParser]:
        try:
            project, discovered = self.client.discover_project(account)
            if discovered and self.pool.accounts_file is not None:
                try:
                    update_account_entry(self.pool.accounts_file, account.email, {"projectId": project})
                except OSError as exc:
                    log.warning("could not save the project of %s: %s", account.label, exc)
            translation = build_request(request, model, project=project, signatures=self.signatures)
            headers = {}
            if model.vendor == ANTHROPIC and translation.thinking:
                headers["anthropic-beta"] = "interleaved-thinking-2025-05-14"
            stream = credits.open_stream(self.client, account, model.id, translation.body, headers,
                                         enabled=self.settings.ai_credits, now=time.time())
        except InvalidGrant as exc:
            self.pool.mark_invalid(account, f"refresh token rejected: {exc}")
            error = AuthenticationFailed("a Google account's refresh token was rejected")
            raise _Failed(error, _Failure.BROKEN) from None
        except TokenRefreshFailed as exc:
            raise _Failed(UpstreamError(f"token refresh failed: {exc}"), _Failure.TRANSIENT) from None
        except UpstreamConnectionError as exc:
            error = ServiceUnavailable(f"the Cloud Code API is unreachable ({exc})")
            raise _Failed(error, _Failure.TRANSIENT) from None
        except UpstreamHTTPError as exc:
            error = _gateway_error(exc, model.id)
            if exc.retryable:  # capacity is the upstream's, whichever account asks: back off
                raise _Failed(error, _Failure.TRANSIENT) from None
            if exc.is_rate_limit:
                delay = exc.retry_delay()
                self.pool.mark_rate_limited(account, model.id, delay if delay is not None else DEFAULT_COOLDOWN)
                raise _Failed(error, _Failure.RATE_LIMITED) from None
            if exc.status == 401:
                raise _Failed(error, _Failure.UNAUTHORIZED) from None
            if exc.status in ACCOUNT_REFUSALS:
                log.warning("%s refused %s (%d): %s", account.label, model.id, exc.status, exc.message)
                note_refusal(self.pool, account, exc)  # verification wanted, or a ban: out of rotation
                raise _Failed(error, _Failure.BROKEN) from None
            raise error from None
        return stream, ResponseParser(translation.tool_names)

    def _relay(
        self,
        stream: UpstreamStream,
        chunks: Iterator[dict[str, Any]],
        parser: ResponseParser,
        buffered: list[Event],
        model: ModelInfo,
        outcome: Outcome,
    ) -> Iterator[Event]:
        try:
            yield from buffered
            for chunk in chunks:
                yield from self._observe(parser.feed(chunk), model)
            finish = parser.finish()
            outcome.usage = finish.usage
            yield finish
        except UpstreamConnectionError:
            raise UpstreamError("the upstream connection broke in the middle of the answer") from None
        finally:
            stream.close()

    def _observe(self, events: list[Event], model: ModelInfo) -> list[Event]:
        """Remember the family of every signature that passes, for later replays."""
        for event in events:
            if model.signer is None:
                continue
            if isinstance(event, SignatureDelta):
                self.signatures.remember(event.signature, model.signer)
            elif isinstance(event, ToolCallEvent) and event.signature:
                self.signatures.remember_tool_call(event.id, event.signature, model.signer)
        return events


def _gateway_error(exc: UpstreamHTTPError, model: str) -> GatewayError:
    """Map an upstream answer to the neutral error the client sees (messages are the upstream's own)."""
    message = exc.message
    if exc.status == 400:
        return InvalidRequest(message)
    if exc.status == 401:
        return AuthenticationFailed(f"the upstream rejected the account's credentials: {message}")
    if exc.status == 403:
        return PermissionDenied(message)
    if exc.status == 404:
        return NotFound(f"model {model} is not available to this account: {message}")
    if exc.status == 429:
        delay = exc.retry_delay()
        return RateLimited(f"rate limited on {model}: {message}", retry_after=delay)
    if exc.is_capacity or exc.status == 529:
        return Overloaded(message)
    return UpstreamError(f"the upstream failed ({exc.status}): {message}")


__all__ = ["CONTENT_EVENTS", "Dispatcher", "Outcome"]
