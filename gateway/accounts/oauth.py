"""Adding a Google account: the OAuth authorization-code flow with PKCE, as Antigravity's clients run it.

The browser goes to Google's consent page, and Google sends it back to a listener on a loopback port that
catches the code (docs/upstream.md, "OAuth"). Without a browser on this machine (SSH, Docker) the user opens the
URL anywhere and pastes back the address the browser then failed to load, or just the code. PKCE binds
the code to this process: a code caught by anyone else is useless without the verifier.

The listener is reachable by any program on this machine, and by any web page the user has open (a page can
make the browser request ``localhost``): so it answers on both loopback addresses (``localhost`` may be either),
ignores any answer that does not carry this attempt's state rather than giving up on the sign-in, drops a
connection that stays silent, and escapes what it shows of a request, in its page and in the terminal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from ..config import Settings
from ..logs import printable
from .credentials import SCOPES

CALLBACK_PATH = "/oauth-callback"
HTTP_TIMEOUT = 30.0
#: Seconds a connection to the loopback listener may stay silent.
IDLE_TIMEOUT = 10.0


class OAuthError(Exception):
    """The flow failed; the message says why in words a person can act on (control characters escaped: parts
    of it come from a redirect any local program could send, or from Google's answer)."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, limit=None))


@dataclass(frozen=True)
class Authorization:
    """One attempt of the flow: the URL to open and the secrets needed to finish it."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


def redirect_uri(port: int) -> str:
    return f"http://localhost:{port}{CALLBACK_PATH}"


def start(settings: Settings, redirect: str, login_hint: str | None = None) -> Authorization:
    """A fresh state and PKCE verifier, and the consent URL carrying the S256 challenge."""
    verifier = _b64url(secrets.token_bytes(32))
    state = secrets.token_hex(16)
    params = {
        "client_id": settings.oauth_client_id,
        "redirect_uri": redirect,
        "response_type": "code",
        "scope": " ".join(SCOPES),
        "access_type": "offline",
        "prompt": "consent",  # forces a refresh token even for an account that consented before
        "code_challenge": _b64url(hashlib.sha256(verifier.encode("ascii")).digest()),
        "code_challenge_method": "S256",
        "state": state,
    }
    if login_hint:
        params["login_hint"] = login_hint
    return Authorization(f"{settings.oauth_auth_url}?{urlencode(params)}", state, verifier, redirect)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def code_from_redirect(query: dict[str, str], state: str) -> str:
    """The code from the redirect's query, after checking it answers this attempt."""
    if query.get("error"):
        raise OAuthError(f"Google refused the authorization: {query['error']}")
    if query.get("state") != state:
        raise OAuthError("the answer does not belong to this attempt (state mismatch); start `accounts add` again")
    if not query.get("code"):
        raise OAuthError("the redirect carries no authorization code")
    return query["code"]


def code_from_paste(text: str, state: str) -> str:
    """What a user pasted: the whole redirect URL (checked like a real redirect) or the bare code."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        query = {k: v[-1] for k, v in parse_qs(urlsplit(text).query).items()}
        return code_from_redirect(query, state)
    if len(text) < 10 or any(c.isspace() for c in text):
        raise OAuthError("that is neither the redirect URL nor an authorization code (it starts with 4/)")
    return text


class _CallbackHandler(BaseHTTPRequestHandler):
    """Answers the browser with a short page and hands a redirect carrying this attempt's state to the CLI."""

    server: _CallbackServer
    timeout = IDLE_TIMEOUT  # set on each connection's socket: a silent one is dropped

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH:
            self._page(404, "Not found.")
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        receiver = self.server.receiver
        if not receiver.belongs(query):
            self._page(400, "This answer does not belong to the sign-in in progress: it was ignored.")
            return
        if query.get("error") or not query.get("code"):
            self._page(400, f"Authorization failed ({query.get('error') or 'no code'}). You can close this tab; "
                            "the terminal says why.")
        else:
            self._page(200, "Account authorized. You can close this tab and return to the terminal.")
        receiver.answers.put(query)

    def _page(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>Cloud Code Gateway</title><p>{html.escape(text)}</p>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal is for the person, not for access lines


class _CallbackServer(ThreadingHTTPServer):
    """One listening address; each connection in its own thread, so a silent one holds up no other."""

    daemon_threads = True

    def __init__(self, address: str, port: int, receiver: LoopbackReceiver) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.receiver = receiver
        super().__init__((address, port), _CallbackHandler)


class LoopbackReceiver:
    """Listens on 127.0.0.1 and ::1 for the one redirect that carries the code; every other path is a 404.

    ``localhost`` in the redirect URI is 127.0.0.1 to some browsers and ::1 to others: the second address uses
    the port of the first, and is skipped where this machine has no IPv6 loopback.
    """

    def __init__(self, port: int) -> None:
        self.answers: queue.Queue[dict[str, str]] = queue.Queue()
        self.state: str | None = None
        try:
            servers = [_CallbackServer("127.0.0.1", port, self)]
        except OSError as exc:
            raise OAuthError(
                f"cannot listen on port {port} for the redirect ({exc.strerror}); is another `accounts add` "
                "running? Set GATEWAY_OAUTH_REDIRECT_PORT or use --no-browser"
            ) from None
        self.port = servers[0].server_address[1]
        try:
            servers.append(_CallbackServer("::1", self.port, self))
        except OSError:
            pass
        self._servers = servers
        for server in servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    @property
    def redirect_uri(self) -> str:
        return redirect_uri(self.port)

    def authorize(self, settings: Settings, login_hint: str | None = None) -> Authorization:
        """A new attempt coming back here; only redirects carrying its state are taken from now on."""
        auth = start(settings, self.redirect_uri, login_hint)
        self.state = auth.state
        return auth

    def belongs(self, query: dict[str, str]) -> bool:
        """Whether a redirect carries the state of the attempt in progress (compared in constant time)."""
        return self.state is not None and hmac.compare_digest(query.get("state", "").encode(), self.state.encode())

    def wait(self, state: str, timeout: float) -> str:
        """The code, once the browser comes back; OAuthError on a refusal or a timeout. Redirects of other
        attempts are ignored (a page or program can send any)."""
        self.state = state
        deadline = time.monotonic() + timeout
        while True:
            try:
                query = self.answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise OAuthError(f"no answer from the browser within {timeout:.0f}s") from None
            if self.belongs(query):
                return code_from_redirect(query, state)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> LoopbackReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def exchange_code(settings: Settings, auth: Authorization, code: str, session: requests.Session) -> dict[str, Any]:
    """Trade the code (and the PKCE verifier) for tokens; the answer must carry a refresh token."""
    form = {
        "client_id": settings.oauth_client_id,
        "client_secret": settings.oauth_client_secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": auth.redirect_uri,
        "code_verifier": auth.verifier,
    }
    answer = _json(session.post(settings.oauth_token_url, data=form, timeout=HTTP_TIMEOUT), "the token exchange")
    if not answer.get("refresh_token"):
        raise OAuthError(
            "Google gave no refresh token; remove the app's access at https://myaccount.google.com/permissions "
            "and add the account again"
        )
    return answer


def fetch_email(settings: Settings, access_token: str, session: requests.Session) -> str:
    headers = {"Authorization": f"Bearer {access_token}"}
    info = _json(session.get(settings.oauth_userinfo_url, headers=headers, timeout=HTTP_TIMEOUT), "userinfo")
    email = info.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise OAuthError("the userinfo answer carries no email")
    return email


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    """The JSON answer, or an OAuthError quoting Google's error (never the request, which holds secrets)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # google.rpc.Status, from userinfo
            error = error.get("message")
        detail = body.get("error_description") if isinstance(body, dict) else None
        reason = ": ".join(str(part) for part in (error, detail) if part) or response.text[:200]
        raise OAuthError(f"{what} failed ({response.status_code}): {reason}")
    return body
