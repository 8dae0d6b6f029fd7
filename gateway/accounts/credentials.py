"""OAuth access tokens for one account, refreshed before expiry, one refresh at a time.

google-auth does the refresh; it has no lock of its own, so fifty requests on an expired token would make
fifty refreshes. A per-account lock with a re-check inside makes it one.
"""

from __future__ import annotations

import threading

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2.credentials import Credentials

SCOPES = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
]


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

    def token(self) -> str:
        """A valid access token, refreshing first when it is missing or about to expire."""
        credentials = self._credentials
        if credentials.valid:
            return credentials.token
        with self._lock:
            if not credentials.valid:
                self._refresh()
            return credentials.token

    def force_refresh(self) -> None:
        with self._lock:
            self._refresh()

    def invalidate(self, token: str | None = None) -> None:
        """Forget the current token (after a 401), unless another request already replaced it."""
        with self._lock:
            if token is None or self._credentials.token == token:
                self._credentials.token = None
                self._credentials.expiry = None

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
