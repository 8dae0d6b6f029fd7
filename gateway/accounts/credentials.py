"""OAuth access tokens for one account, refreshed before expiry, one refresh at a time.

google-auth does the refresh; it has no lock of its own, so fifty requests on an expired token would make
fifty refreshes. A per-account lock with a re-check inside makes it one per process; with a shared state store,
a lock with expiry there makes it one for every worker and instance: the others wait for the fresh token the
winner publishes, and use it.
"""

from __future__ import annotations

import datetime
import threading
import time
import uuid

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2.credentials import Credentials

from ..state import StateStore

SCOPES = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
]


# google-auth counts a token as expired this long before its expiry; a shared token is adopted only before then.
EXPIRY_MARGIN = 225.0
# How long another process's refresh may hold the shared lock, and how long to wait for its token.
REFRESH_LOCK_TTL = 30.0
REFRESH_WAIT = 15.0


class InvalidGrant(Exception):
    """The refresh token was revoked or expired: the account cannot be used until re-added."""


class TokenRefreshFailed(Exception):
    """A refresh failed for a reason that may pass (network, 5xx at the token endpoint)."""


class TokenSource:
    def __init__(
        self,
        refresh_token: str,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        session: requests.Session,
        shared: StateStore | None = None,
        key: str = "",
    ) -> None:
        # Built directly: from_authorized_user_info() would replace token_uri with Google's.
        self._credentials = Credentials(
            token=None,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=token_url,
            scopes=SCOPES,
        )
        self._transport = google.auth.transport.requests.Request(session)
        self._lock = threading.Lock()
        # Where the workers and instances share this account's access token ("token:<key>"), if anywhere.
        self._shared = shared
        self._key = f"token:{key}"
        self._owner = uuid.uuid4().hex

    def token(self) -> str:
        """A valid access token, refreshing first when it is missing or about to expire."""
        credentials = self._credentials
        if credentials.valid:
            return credentials.token
        with self._lock:
            if not credentials.valid and not self._adopt():
                self._refresh_shared()
            return credentials.token

    def force_refresh(self) -> None:
        with self._lock:
            self._refresh()
            self._publish()

    def invalidate(self, token: str | None = None) -> None:
        """Forget the current token (after a 401), unless another request already replaced it."""
        with self._lock:
            if token is None or self._credentials.token == token:
                self._credentials.token = None
                self._credentials.expiry = None
                if self._shared is not None and token is not None:
                    shared = self._shared.get(self._key)
                    if shared and shared.get("token") == token:
                        self._shared.delete(self._key)

    def _refresh_shared(self) -> None:
        """Refresh once for everyone: under the shared lock, re-check whether another process just did."""
        if self._shared is None:
            self._refresh()
            return
        with self._shared.lock(f"lock:{self._key}", self._owner, REFRESH_LOCK_TTL, wait=REFRESH_WAIT):
            # Not holding it after the wait means its holder died: refresh anyway.
            if self._adopt():
                return
            self._refresh()
            self._publish()

    def _adopt(self) -> bool:
        """Take the token another process published, if it is still good for a while."""
        if self._shared is None:
            return False
        shared = self._shared.get(self._key)
        if not shared or shared.get("expires", 0) - time.time() <= EXPIRY_MARGIN:
            return False
        self._credentials.token = shared["token"]
        self._credentials.expiry = datetime.datetime.fromtimestamp(shared["expires"], datetime.timezone.utc).replace(
            tzinfo=None)
        return True

    def _publish(self) -> None:
        expiry = self._credentials.expiry
        if self._shared is None or expiry is None:
            return
        expires = expiry.replace(tzinfo=datetime.timezone.utc).timestamp()
        if expires - time.time() > EXPIRY_MARGIN:
            self._shared.put(self._key, {"token": self._credentials.token, "expires": expires}, expires - time.time())

    @property
    def expiry_iso(self) -> str | None:
        expiry = self._credentials.expiry
        return expiry.isoformat() + "Z" if expiry else None

    def _refresh(self) -> None:
        try:
            self._credentials.refresh(self._transport)
        except google.auth.exceptions.RefreshError as exc:
            text = str(exc)
            if "invalid_grant" in text or "invalid_client" in text or "unauthorized_client" in text:
                raise InvalidGrant(_describe(exc)) from None
            raise TokenRefreshFailed(_describe(exc)) from None
        except google.auth.exceptions.TransportError as exc:
            raise TokenRefreshFailed(f"token endpoint unreachable: {type(exc).__name__}") from None


def _describe(exc: Exception) -> str:
    """google-auth's message is ``(reason, body)``; keep the readable part and never a token."""
    args = exc.args
    if args and isinstance(args[0], str):
        return args[0][:300]
    return type(exc).__name__
