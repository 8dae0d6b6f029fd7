"""From a canonical request to a canonical event stream: account choice, retries, failover.

The rule that shapes this module: a request may be re-sent (another endpoint, another account, after an
empty answer) only until its first content event has been handed to the caller. After that an upstream
failure ends the stream with an error; the client never sees a second start of the same answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .accounts import credits
from .accounts.credentials import InvalidGrant, TokenRefreshFailed
from .accounts.pool import Account, AccountPool
from .accounts.refusals import note_refusal
from .catalog import Catalog, ModelInfo
from .config import Settings
from .core.events import CONTENT_EVENTS, Event, KeepAlive, Usage
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
from .translate.cloudcode import count_tokens_body
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient, UpstreamStream
from .engine.lane import CanonicalLane, Lane, Reader
from .engine.policy import Attempts, Failure, RetryPolicy
from .upstream.errors import ClientVersionRefused, UpstreamConnectionError, UpstreamHTTPError

log = logging.getLogger(__name__)

# A 429 with no usable delay keeps the account off that model this long.
DEFAULT_COOLDOWN = 60.0
# Names the model that answered when GATEWAY_MODEL_FALLBACK replaced the one asked for.
FALLBACK_HEADER = "X-Gateway-Fallback-Model"
# Names the upstream model that answered whenever it is not the name the client asked for.
MODEL_HEADER = "X-Gateway-Model"
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


class _Failed(Exception):
    def __init__(self, error: GatewayError, kind: Failure) -> None:
        super().__init__(error.message)
        self.error = error
        self.kind = kind


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        pool: AccountPool,
        client: CloudCodeClient,
        catalog: Catalog,
        signatures: SignatureRegistry,
        *,
        models_changed: Callable[[], bool] = lambda: False,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or RetryPolicy(
            max_retries=settings.max_retries, retry_budget=settings.retry_budget,
            base_delay=settings.server_error_delay, max_wait=settings.max_wait, empty_retries=settings.empty_retries,
        )
        self.pool = pool
        self.client = client
        self.catalog = catalog
        self.signatures = signatures
        # Called after the upstream said a model does not exist: True when the catalog was refreshed.
        self.models_changed = models_changed
        # Called before every model lookup, to keep the catalog on the upstream's listing.
        self.before_resolve: Callable[[], None] = lambda: None

    def resolve_model(self, request: Request) -> ModelInfo:
        self.before_resolve()
        return self.catalog.resolve(request.model)

    def events(self, request: Request, outcome: Outcome | None = None, model: ModelInfo | None = None) -> Iterator[Event]:
        """The answer as canonical events. Raises GatewayError before the first event if nothing serves it.

        The generator does its retries on the first ``next()``: callers can look at the first event
        before committing HTTP headers, so early failures still get a real status code. While it waits
        for a rate-limited account it yields KeepAlive events (never content).
        """
        outcome = outcome or Outcome()
        model = model or self.resolve_model(request)
        resolve_remote_images(request, self.settings)
        lane_for = partial(CanonicalLane, request, signatures=self.signatures)
        relay = yield from self.begin(lane_for, model, outcome, name=request.model, searching=request.grounded)
        # The answer has started and nothing re-sends the request now: let its conversation go (a Claude Code
        # request holds several hundred KB of text) while the rest of a long stream is relayed.
        del request, lane_for
        yield from relay

    def begin(
        self, lane_for: Callable[[ModelInfo], Lane], model: ModelInfo, outcome: Outcome, *, name: str,
        searching: bool = False, serves: Callable[[ModelInfo], bool] = lambda model: True,
    ) -> Generator[Any, None, Iterator[Any]]:
        """Attempts with the lane for ``model`` until one produces content; returns the relay of the rest.

        Any lane: canonical events or a passthrough's chunks. Before the answer starts it yields only KeepAlive
        events. A model every account says does not exist is looked up again in a fresh listing (Google renames
        models); one every account is out of quota for may be answered by its GATEWAY_MODEL_FALLBACK pair. Either
        replacement only if ``serves`` says the lane can serve it (a passthrough serves one maker's models).
        """
        outcome.requested = name
        try:
            try:
                return (yield from self._attempts(lane_for(model), outcome))
            except NotFound:
                renamed = self._renamed(name, model)
                if renamed is None or not serves(renamed):
                    raise
                log.warning("%s is gone upstream; %s now resolves to %s", model.id, name, renamed.id)
                model = renamed
                return (yield from self._attempts(lane_for(model), outcome))
        except RateLimited:
            # Only raised before any content: _relay turns every failure into UpstreamError.
            fallback = self._fallback(model, searching)
            if fallback is None or not serves(fallback):
                raise
            log.warning("every account is out of quota for %s, answering with %s", model.id, fallback.id)
            outcome.fallback_from = model.id
            return (yield from self._attempts(lane_for(fallback), outcome))

    def _renamed(self, name: str, model: ModelInfo) -> ModelInfo | None:
        if not self.models_changed():
            return None
        try:
            renamed = self.catalog.resolve(name)
        except NotFound:
            return None
        return renamed if renamed.id != model.id else None

    def _fallback(self, model: ModelInfo, searching: bool) -> ModelInfo | None:
        """The GATEWAY_MODEL_FALLBACK pair for ``model``: a pair's names resolve as client names do, and a
        line name (``claude-opus``, ``gemini-flash``) stands for every model of that line."""
        for source, target in self.settings.model_fallbacks.items():
            if not self.catalog.names(source, model):
                continue
            try:
                fallback = self.catalog.resolve(target)
            except NotFound:
                log.warning("GATEWAY_MODEL_FALLBACK names %s, which is not a model the upstream lists", target)
                return None
            if searching and fallback.id not in self.catalog.search_models:
                return None  # the upstream refuses a search on a model that cannot search
            return fallback if fallback.id != model.id else None
        return None

    def _attempts(self, lane: Lane, outcome: Outcome) -> Generator[Any, None, Iterator[Any]]:
        """Attempts on the lane's model until one produces content; returns the relay of the rest of that answer.

        Yields only KeepAlive events (while waiting for an account or backing off), so everything before
        the returned relay can still be retried.
        """
        model = lane.model
        outcome.model = model.id
        budget = self.policy.begin()
        while True:
            account = yield from self._acquire(model, lane.session, budget)
            outcome.account = account.label
            outcome.attempts += 1
            failure: _Failed | None = None
            try:
                started = self._start(account, lane, outcome)
            except _Failed as exc:
                failure = exc
            if failure is not None:
                yield from self._after_failure(account, failure, budget)
                continue
            if started is None:
                if budget.retry_empty():
                    log.warning("empty upstream answer from %s, retrying", account.label)
                    time.sleep(self.settings.empty_retry_delay)
                    continue
                return iter(lane.nothing())
            return self._relay(*started, outcome)

    def _start(
        self, account: Account, lane: Lane, outcome: Outcome
    ) -> tuple[UpstreamStream, Iterator[dict[str, Any]], Reader, list[Any]] | None:
        """Open the stream and read up to its first content (held back, so the attempt can still be
        retried); None when the answer ended without any."""
        stream = self._open(account, lane)
        reader = lane.reader()
        outcome.upstream = stream
        buffered: list[Any] = []
        chunks = iter(stream)
        try:
            for chunk in chunks:
                buffered.extend(reader.feed(chunk))
                if reader.saw_content:
                    return stream, chunks, reader, buffered
        except UpstreamConnectionError as exc:
            stream.close()
            log.warning("upstream stream from %s broke before content: %s", account.label, exc)
            error = UpstreamError("the upstream connection broke before the answer started")
            raise _Failed(error, Failure.TRANSIENT) from None
        stream.close()
        return None

    def _acquire(self, model: ModelInfo, session: str, budget: Attempts) -> Generator[Event, None, Account]:
        """The next account, waiting (with keep-alives) when all are rate-limited but one frees up soon."""
        while True:
            try:
                return self.pool.acquire(model.id, exclude=budget.failed, avoid=budget.avoid, session=session)
            except ServiceUnavailable as exc:  # AllTried, or the last usable account was just marked unusable
                raise budget.last_error or exc from None
            except RateLimited as exc:
                wait = exc.retry_after or 0.0
                if not budget.may_wait(wait):
                    raise
                log.info("every account is rate-limited on %s; waiting %.1fs", model.id, wait)
                yield from self._pause(wait)

    def _after_failure(self, account: Account, failure: _Failed, budget: Attempts) -> Iterator[Event]:
        """Pause as the policy says before the next attempt; raise when it says retrying is pointless."""
        delay = budget.after_failure(account, failure.kind, failure.error)
        if delay is None:
            raise failure.error from None
        if delay > 0:
            log.warning("%s via %s; retrying in %.2fs", failure.error.message, account.label, delay)
            yield from self._pause(delay)

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
        return self.count(model, count_tokens_body(request, model, self.signatures))

    def count(self, model: ModelInfo, body: dict[str, Any]) -> int:
        """The upstream's count of a countTokens ``request`` part on ``model``, else an estimate (chars / 4)."""
        try:
            account = self.pool.acquire(model.id)
            return self.client.count_tokens(account, body)
        except (GatewayError, UpstreamHTTPError, UpstreamConnectionError, InvalidGrant, TokenRefreshFailed) as exc:
            log.info("countTokens unavailable (%s), estimating", type(exc).__name__)
            return max(1, len(json.dumps(body, ensure_ascii=False)) // 4)

    # -- internals --------------------------------------------------------------------------------

    def _open(self, account: Account, lane: Lane) -> UpstreamStream:
        model = lane.model
        try:
            project, discovered = self.client.discover_project(account)
            if discovered:
                self.pool.save(account, {"projectId": project})
            body, headers = lane.prepare(project)
            stream = credits.open_stream(self.client, account, model.id, body, headers,
                                         enabled=self.settings.ai_credits, now=time.time())
        except InvalidGrant as exc:
            self.pool.mark_invalid(account, f"refresh token rejected: {exc}")
            error = AuthenticationFailed("a Google account's refresh token was rejected")
            raise _Failed(error, Failure.BROKEN) from None
        except TokenRefreshFailed as exc:
            raise _Failed(UpstreamError(f"token refresh failed: {exc}"), Failure.TRANSIENT) from None
        except UpstreamConnectionError as exc:
            error = ServiceUnavailable(f"the Cloud Code API is unreachable ({exc})")
            raise _Failed(error, Failure.TRANSIENT) from None
        except UpstreamHTTPError as exc:
            error = _gateway_error(exc, model.id)
            if isinstance(exc, ClientVersionRefused):  # no account is to blame, and none would do better
                raise error from None
            if exc.retryable:  # capacity is the upstream's, whichever account asks: back off
                raise _Failed(error, Failure.TRANSIENT) from None
            if exc.is_rate_limit:
                delay = exc.retry_delay()
                self.pool.mark_rate_limited(account, model.id, delay if delay is not None else DEFAULT_COOLDOWN)
                raise _Failed(error, Failure.RATE_LIMITED) from None
            if exc.status == 401:
                raise _Failed(error, Failure.UNAUTHORIZED) from None
            if exc.status in ACCOUNT_REFUSALS:
                log.warning("%s refused %s (%d): %s", account.label, model.id, exc.status, exc.message)
                note_refusal(self.pool, account, exc)  # verification wanted, or a ban: out of rotation
                raise _Failed(error, Failure.BROKEN) from None
            raise error from None
        return stream

    def _relay(
        self, stream: UpstreamStream, chunks: Iterator[dict[str, Any]], reader: Reader, buffered: list[Any],
        outcome: Outcome,
    ) -> Iterator[Any]:
        try:
            yield from buffered
            for chunk in chunks:
                yield from reader.feed(chunk)
            ending = reader.finish()
            outcome.usage = reader.usage
            yield from ending
        except UpstreamConnectionError:
            raise UpstreamError("the upstream connection broke in the middle of the answer") from None
        finally:
            stream.close()


def _gateway_error(exc: UpstreamHTTPError, model: str) -> GatewayError:
    """Map an upstream answer to the neutral error the client sees (messages are the upstream's own)."""
    message = exc.message
    if isinstance(exc, ClientVersionRefused):
        return UpstreamError(exc.explanation)
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
