"""The Cloud Code client: endpoints, headers, base-URL fallback, SSE streaming, project discovery.

All socket work with the upstream happens here, on the account's own ``requests.Session``.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
import urllib3.exceptions
from requests.adapters import TimeoutSauce

from .. import fastjson
from ..accounts.pool import Account
from ..config import Settings
from .errors import ClientVersionRefused, UpstreamConnectionError, UpstreamHTTPError
from .sse import SSEParser
from .version import ClientVersion

log = logging.getLogger(__name__)

PLATFORM = f"{platform.system().lower()}/{platform.machine().lower()}"
CLIENT_METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}
ONBOARD_ATTEMPTS = 5


class UpstreamStream:
    """An open streamGenerateContent response: iterate for chunk dicts, ``close()`` to release it.

    ``abort()`` may be called from another greenlet to unblock a read on a silent upstream.
    """

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self.received_bytes = 0
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        parser = SSEParser()
        try:
            for chunk in self._reads():
                self.received_bytes += len(chunk)
                yield from _chunks(parser.feed(chunk))
            yield from _chunks(parser.close())
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise UpstreamConnectionError(f"upstream stream broke: {type(exc).__name__}") from None

    def _reads(self) -> Iterator[bytes]:
        """The body as it arrives: one HTTP chunk at a time when chunked, as Google sends its streams.

        ``read_chunked`` rather than a ``read1`` loop: both return one HTTP chunk (one SSE event) per call, but
        ``read1`` goes through several more layers of urllib3 and ``http.client`` each time, a large part of
        the CPU spent relaying a chunk (docs/performance.md). Both hand the connection back to the pool once
        the last chunk is read.
        """
        response = self._response
        if response.chunked and response.supports_chunked_reads():
            yield from response.read_chunked()
            return
        while chunk := response.read1(65536):
            yield chunk

    def close(self) -> None:
        with self._lock:
            self._closed = True
            _release(self._response)

    def abort(self) -> None:
        """Shut the socket down so a blocked read returns at once (close() alone does not wake it).

        Never after close(): by then the connection may be back in the pool, serving someone else.
        """
        with self._lock:
            if self._closed:
                return
            connection = self._response.connection
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
            except (AttributeError, OSError):
                pass


def _release(response: urllib3.BaseHTTPResponse) -> None:
    """Hand the connection back to the pool: closed first unless the body was read to the end.

    urllib3 returns a fully read connection to the pool by itself; one with unread bytes cannot serve
    another request, so it is closed, and its slot released, as ``requests.Response.close`` does.
    """
    response.close()
    response.release_conn()


def _json(response: urllib3.BaseHTTPResponse) -> Any:
    try:
        return json.loads(response.data)
    except ValueError:
        raise UpstreamHTTPError(502, b'{"error": {"message": "the upstream answered with something not JSON"}}') from None


def _chunks(payloads: Iterator[str]) -> Iterator[dict[str, Any]]:
    for payload in payloads:
        payload = payload.strip()
        if not payload or payload == "[DONE]":
            continue
        try:
            data = json.loads(payload)
        except ValueError:
            log.warning("skipping an upstream SSE event that is not JSON")
            continue
        if isinstance(data, dict):
            inner = data.get("response")
            yield inner if isinstance(inner, dict) else data


class _Target(requests.PreparedRequest):
    """A base URL and query as ``requests`` prepares them, with the session's environment for that URL."""

    path: str
    proxies: dict[str, str]
    verify: bool | str
    cert: str | tuple[str, str] | None


@functools.lru_cache(maxsize=8)
def client_headers(version: str) -> dict[str, str]:
    """The gateway introduces itself as the Antigravity version Google accepts (``version.py``).

    Cached, as every call sends them and the version rarely changes; callers copy, never change, the mapping.
    """
    return {"User-Agent": f"antigravity/{version} {PLATFORM}", "X-Client-Name": "antigravity",
            "X-Client-Version": version}


class CloudCodeClient:
    def __init__(self, settings: Settings, version: ClientVersion | None = None) -> None:
        self.settings = settings
        self.version = version if version is not None else ClientVersion.from_settings(settings)
        self.base_urls = settings.cloudcode_urls
        self._targets: dict[tuple[int, str, tuple[tuple[str, str], ...]], _Target] = {}

    def _send(
        self,
        session: requests.Session,
        url: str,
        params: dict[str, str] | None,
        data: bytes,
        headers: dict[str, str],
        timeout: tuple[float, float],
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        """POST on the connection pool of the session's adapter, as ``HTTPAdapter.send`` does, minus its wrapping.

        The session still owns everything that matters (its mounted adapter, pool, proxies and TLS settings,
        read from the environment once per base URL); what is skipped is the per-call ``requests`` machinery
        around the urllib3 call: ``Session.request`` re-read the environment on every call (walking
        ``os.environ`` twice, looking for ``.netrc``), and ``HTTPAdapter.send`` re-checked CA bundle paths on
        disk and built a ``requests.Response`` with cookie extraction the upstream never needs. Together about
        0.45 ms of CPU per call out of 2-3 ms per request (docs/performance.md). The upstream sets no cookies
        and sends no redirects.
        """
        target = self._target(session, url, params)
        adapter = session.get_adapter(target.url)
        pool = adapter.get_connection_with_tls_context(target, target.verify, target.proxies, target.cert)
        try:
            return pool.urlopen(
                method="POST", url=target.path, body=data, headers={**session.headers, **headers},
                redirect=False, assert_same_host=False, preload_content=not stream, decode_content=True,
                retries=adapter.max_retries, timeout=TimeoutSauce(connect=timeout[0], read=timeout[1]),
            )
        except urllib3.exceptions.MaxRetryError as exc:  # how urllib3 reports a failed connect
            raise requests.ConnectionError(type(exc.reason or exc).__name__) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise requests.ConnectionError(type(exc).__name__) from None

    def _target(self, session: requests.Session, url: str, params: dict[str, str] | None) -> _Target:
        """Where a call goes, prepared as ``requests`` would prepare it; cached, as only a few ever occur.

        Preparing the URL (parsing, IDNA, re-encoding) took about 5% of a worker's CPU in the benchmark,
        reading the environment for proxies and CA bundles far more.
        """
        key = (id(session), url, tuple(sorted(params.items())) if params else ())
        target = self._targets.get(key)
        if target is None:
            target = _Target()
            target.prepare_url(url, params)
            environment = session.merge_environment_settings(target.url, {}, False, None, None)
            target.proxies = environment["proxies"]
            target.verify = environment["verify"]
            target.cert = environment["cert"]
            target.path = session.get_adapter(target.url).request_url(target, target.proxies)
            self._targets[key] = target
        return target

    # -- generation -------------------------------------------------------------------------------

    def stream_generate(self, account: Account, body: dict[str, Any], *, extra_headers: dict[str, str]) -> UpstreamStream:
        """Open a stream, trying each base URL in order on connection errors, 429 and 5xx."""
        headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity", **extra_headers}
        response = self._post(account, "streamGenerateContent", body, params={"alt": "sse"}, headers=headers, stream=True)
        return UpstreamStream(response)

    def count_tokens(self, account: Account, request_body: dict[str, Any]) -> int:
        data = _json(self._post(account, "countTokens", {"request": request_body}))
        return int(data.get("totalTokens", 0))

    def fetch_available_models(self, account: Account) -> dict[str, Any]:
        body = {"project": account.project_id} if account.project_id else {}
        try:
            return _json(self._post(account, "fetchAvailableModels", body))
        except UpstreamHTTPError as exc:
            if exc.status == 403 and body:
                return _json(self._post(account, "fetchAvailableModels", {}))
            raise

    def fetch_quota_summary(self, account: Account) -> dict[str, Any] | None:
        """The 5-hour and weekly quota windows per model group (docs/upstream.md, "Quota windows"); None where
        the upstream does not have the method (404)."""
        body = {"project": account.project_id} if account.project_id else {}
        try:
            return _json(self._post(account, "retrieveUserQuotaSummary", body))
        except UpstreamHTTPError as exc:
            if exc.status == 404:
                return None
            raise

    # -- project discovery ------------------------------------------------------------------------

    def discover_project(self, account: Account) -> tuple[str, bool]:
        """The account's project id and whether it was newly found (so the caller can persist it)."""
        if account.project_id:
            return account.project_id, False
        with account.project_lock:
            if account.project_id:
                return account.project_id, False
            info = _json(self._post(account, "loadCodeAssist", {"metadata": CLIENT_METADATA}))
            project = _project_id(info.get("cloudaicompanionProject"))
            if not project:
                project = self._onboard(account, _default_tier(info))
            account.project_id = project
            log.info("account %s uses project %s", account.label, project)
            return project, True

    def _onboard(self, account: Account, tier: str) -> str:
        body = {"tierId": tier, "metadata": CLIENT_METADATA}
        for attempt in range(ONBOARD_ATTEMPTS):
            operation = _json(self._post(account, "onboardUser", body))
            if operation.get("done"):
                project = _project_id((operation.get("response") or {}).get("cloudaicompanionProject"))
                if project:
                    return project
                break
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
        raise UpstreamHTTPError(
            503, json.dumps({"error": {"message": f"onboarding of {account.label} did not finish"}})
        )

    # -- transport --------------------------------------------------------------------------------

    def headers(self, account: Account, version: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {account.tokens.token()}",
            "Content-Type": "application/json",
            **client_headers(version),
            "X-Goog-Api-Client": "google-cloud-sdk vscode_cloudshelleditor/0.1",
            "Client-Metadata": json.dumps(CLIENT_METADATA, separators=(",", ":")),
        }

    def _post(
        self,
        account: Account,
        method: str,
        body: dict[str, Any],
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """POST to each base URL in turn until one answers with something other than 429/5xx.

        When Google refuses the client version, the call is made once more if a fresh look at the manifest
        gives another version; a refusal of that one too is final.
        """
        data = fastjson.dumps(body)
        retried = False
        while True:
            try:
                return self._post_each(account, method, data, params, headers or {}, stream)
            except ClientVersionRefused as refused:
                if retried or self.version.after_refusal(refused.version) is None:
                    raise
                log.debug("Google refused client version %s; %s once more with %s",
                          refused.version, method, self.version.current())
                retried = True

    def _post_each(
        self,
        account: Account,
        method: str,
        data: bytes,
        params: dict[str, str] | None,
        headers: dict[str, str],
        stream: bool,
    ) -> urllib3.BaseHTTPResponse:
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        version = self.version.current()
        last: Exception | None = None
        for index, base in enumerate(self.base_urls):
            request_headers = {**self.headers(account, version), **headers}
            try:
                response = self._send(account.session, f"{base}/v1internal:{method}", params, data,
                                      request_headers, timeout, stream)
            except requests.RequestException as exc:
                last = UpstreamConnectionError(f"{base} unreachable: {type(exc).__name__}")
                log.warning("upstream %s %s: %s", method, base, type(exc).__name__)
                continue
            if response.status < 300:
                return response
            # .data, not .read(): a response read whole already (preloaded) has nothing left to read.
            error = UpstreamHTTPError(response.status, response.data, response.headers)
            _release(response)
            if error.refuses_client_version:  # every endpoint and account would say the same
                raise ClientVersionRefused(error, version, self.version.refusal_message(version))
            if error.status == 401:
                account.tokens.invalidate(request_headers["Authorization"][7:])
            if not (error.retryable or error.is_rate_limit) or index == len(self.base_urls) - 1:
                raise error
            log.warning("upstream %s %s answered %d, trying the next endpoint", method, base, error.status)
            last = error
            if error.status >= 500:
                time.sleep(min(self.settings.server_error_delay, 1.0) / 4)
        assert last is not None
        raise last


def _project_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        for key in ("id", "projectId", "project"):
            if isinstance(value.get(key), str) and value[key]:
                return value[key]
    return None


def _default_tier(info: dict[str, Any]) -> str:
    for tier in info.get("allowedTiers") or []:
        if isinstance(tier, dict) and tier.get("isDefault") and tier.get("id"):
            return str(tier["id"])
    current = info.get("currentTier")
    if isinstance(current, dict) and current.get("id"):
        return str(current["id"])
    return "free-tier"


def new_request_id() -> str:
    return f"agent-{uuid.uuid4()}"
