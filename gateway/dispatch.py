"""From a canonical request to a canonical event stream: account choice, retries, failover.

The rule that shapes this module: a request may be re-sent (another endpoint, another account, after an
empty answer) only until its first content event has been handed to the caller. After that an upstream
failure ends the stream with an error; the client never sees a second start of the same answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .accounts.credentials import InvalidGrant, TokenRefreshFailed
from .accounts.pool import Account, AccountPool
from .accounts.store import update_account_entry
from .catalog import Catalog, ModelInfo
from .config import Settings
from .core.events import CONTENT_EVENTS, Event, Finish, SignatureDelta, TextDelta, ToolCallEvent, Usage
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
from .translate.cloudcode import ResponseParser, build_request, count_tokens_body
from .translate.signatures import SignatureRegistry
from .upstream.client import CloudCodeClient, UpstreamStream
from .upstream.errors import UpstreamConnectionError, UpstreamHTTPError

log = logging.getLogger(__name__)

NO_RESPONSE_TEXT = "[No response after retries - please try again]"
# A 429 with no usable delay keeps the account off that model this long.
DEFAULT_COOLDOWN = 60.0


@dataclass
class Outcome:
    """What one request did, for the access log."""

    account: str | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)


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
        before committing HTTP headers, so early failures still get a real status code.
        """
        outcome = outcome or Outcome()
        model = self.resolve_model(request)
        resolve_remote_images(request, self.settings)
        tried: set[int] = set()
        empty_left = self.settings.empty_retries
        refreshed: set[int] = set()
        last_error: GatewayError | None = None
        max_attempts = max(3, len(self.pool.accounts) + 1) + empty_left
        for _ in range(max_attempts):
            try:
                account = self.pool.acquire(model.id, exclude=tried)
            except (RateLimited, ServiceUnavailable) as exc:
                raise (last_error if last_error and isinstance(exc, ServiceUnavailable) and tried else exc) from None
            outcome.account = account.label
            outcome.attempts += 1
            try:
                stream, parser = self._open(account, request, model)
            except _Retry as retry:
                last_error = retry.error
                if retry.switch_account:
                    tried.add(id(account))
                continue
            except UpstreamHTTPError as exc:
                if exc.status == 401 and id(account) not in refreshed:
                    refreshed.add(id(account))
                    continue
                raise _gateway_error(exc, model.id) from None

            buffered: list[Event] = []
            chunks = iter(stream)
            try:
                for chunk in chunks:
                    buffered.extend(self._observe(parser.feed(chunk), model))
                    if parser.saw_content:
                        break
                if not parser.saw_content:
                    stream.close()
                    if empty_left > 0:
                        empty_left -= 1
                        log.warning("empty upstream answer from %s, retrying", account.label)
                        time.sleep(self.settings.empty_retry_delay)
                        continue
                    yield TextDelta(NO_RESPONSE_TEXT)
                    yield Finish(reason="end_turn", usage=Usage())
                    return
            except UpstreamConnectionError as exc:
                stream.close()
                log.warning("upstream stream from %s broke before content: %s", account.label, exc)
                last_error = UpstreamError("the upstream connection broke before the answer started")
                tried.add(id(account))
                continue
            yield from self._relay(stream, chunks, parser, buffered, model, outcome)
            return
        raise last_error or UpstreamError("the upstream did not produce an answer after several attempts")

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
            if model.family == "claude" and translation.thinking:
                headers["anthropic-beta"] = "interleaved-thinking-2025-05-14"
            stream = self.client.stream_generate(account, translation.body, extra_headers=headers)
        except InvalidGrant as exc:
            self.pool.mark_invalid(account, f"refresh token rejected: {exc}")
            raise _Retry(AuthenticationFailed("a Google account's refresh token was rejected"), True) from None
        except TokenRefreshFailed as exc:
            raise _Retry(UpstreamError(f"token refresh failed: {exc}"), True) from None
        except UpstreamConnectionError as exc:
            raise _Retry(ServiceUnavailable(f"the Cloud Code API is unreachable ({exc})"), True) from None
        except UpstreamHTTPError as exc:
            if exc.is_rate_limit:
                delay = exc.retry_delay()
                self.pool.mark_rate_limited(account, model.id, delay if delay is not None else DEFAULT_COOLDOWN)
                raise _Retry(_gateway_error(exc, model.id), True) from None
            if exc.retryable:
                time.sleep(self.settings.server_error_delay)
                raise _Retry(_gateway_error(exc, model.id), True) from None
            raise
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
            if isinstance(event, SignatureDelta):
                self.signatures.remember(event.signature, model.family)
            elif isinstance(event, ToolCallEvent) and event.signature:
                self.signatures.remember_tool_call(event.id, event.signature, model.family)
        return events


class _Retry(Exception):
    def __init__(self, error: GatewayError, switch_account: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.switch_account = switch_account


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
