"""API keys, and who may reach a gateway that has none.

Keys are compared in constant time against every configured key (hashed first so lengths match), so
neither which key matched nor how much of it did leaks through timing.

The files and directories the gateway makes hold credentials and conversations: ``private_dir`` and
``private_file`` make them the user's alone (0700, 0600) whatever the umask (a service manager may run it with 0).

Without keys the gateway is for local use only: it refuses to listen beyond loopback (unless the operator
says something in front of it checks callers), and it answers only requests addressed to a loopback name, so
a web page cannot reach it through DNS rebinding. ``gunicorn.conf.py`` imports this module into gunicorn's
master, which must not import ssl before the workers patch it: keep its imports to the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import AuthenticationFailed, PermissionDenied

PUBLIC_PATHS = frozenset({"/health"})
# With GATEWAY_ADMIN_KEY set, only that key opens these: they show every account and what the gateway served.
ADMIN_PATHS = frozenset({"/refresh-token", "/account-limits", "/metrics"})


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def presented_key(headers: Mapping[str, str], query_key: str | None = None) -> str | None:
    """The key a client sent: ``x-api-key`` (Anthropic style), ``x-goog-api-key`` (Google's SDKs), ``Authorization:
    Bearer`` (both other SDKs), or ``query_key``: a ``?key=`` on the Gemini API, as older Google clients send it."""
    key = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if key and key.strip():
        return key.strip()
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return query_key.strip() if query_key and query_key.strip() else None


def key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """Constant-time membership: every key is compared, whatever the outcome."""
    if presented is None:
        return False
    candidate = _digest(presented)
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, _digest(key))
    return matched


class KeyChecker:
    """Who may reach which path: the API keys, the admin key, and (without keys) loopback names only.

    ``local_only`` is for a gateway without API keys: a web page the user visits can point a name of its own at
    127.0.0.1 (DNS rebinding) and call the gateway as a same-origin page; the Host header still carries that
    name, so only requests addressed to a loopback name are answered.
    """

    def __init__(self, api_keys: frozenset[str], admin_key: str | None, *, local_only: bool = False) -> None:
        self.api_keys = api_keys
        self.admin_key = admin_key
        self.local_only = local_only

    @property
    def enforcing(self) -> bool:
        return bool(self.api_keys or self.admin_key)

    def check(self, path: str, headers: Mapping[str, str], *, query_key: str | None = None) -> None:
        """Raise AuthenticationFailed (or PermissionDenied) unless the request may reach ``path``."""
        if self.local_only:
            host = headers.get("Host")
            if host is not None and not loopback_name(_host_name(host)):
                raise PermissionDenied(
                    "this gateway has no API keys, so it answers only requests addressed to localhost, 127.0.0.1 "
                    "or [::1]; set GATEWAY_API_KEYS to serve other host names")
        if path in PUBLIC_PATHS:
            return
        presented = presented_key(headers, query_key)
        if path in ADMIN_PATHS and self.admin_key:
            if key_matches(presented, [self.admin_key]):
                return
            if key_matches(presented, self.api_keys):
                raise PermissionDenied("this endpoint needs the admin key (GATEWAY_ADMIN_KEY), not an API key")
            raise AuthenticationFailed("this endpoint needs the admin key (GATEWAY_ADMIN_KEY)")
        if not self.api_keys:
            return
        if presented is None:
            raise AuthenticationFailed("missing API key: send it as x-api-key, x-goog-api-key or Authorization: Bearer")
        if not key_matches(presented, self.api_keys):
            raise AuthenticationFailed("invalid API key")


def loopback_name(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) only ever means this machine."""
    host = host.strip().rstrip(".").lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8080`` -> ``[::1]``, ``localhost:80`` -> ``localhost``."""
    host = host.strip()
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]" if rest == "" or rest[:1] == ":" and rest[1:].isdigit() else host
    name, colon, port = host.rpartition(":")
    return name if colon and ":" not in name and port.isdigit() else host


def exposure_error(hosts: Iterable[str | None], api_keys: frozenset[str], allow_no_auth: bool) -> str | None:
    """Why the gateway must not listen on ``hosts`` (None stands for a unix socket), or None when it may.

    Without API keys anyone who can reach the port spends the accounts' quota and can read their limits.
    """
    if api_keys or allow_no_auth:
        return None
    exposed = [host for host in hosts if host is not None and not loopback_name(host)]
    if not exposed:
        return None
    return (f"refusing to listen on {', '.join(exposed)} without API keys: anyone who can reach it could use "
            "your Google accounts. Set GATEWAY_API_KEYS (or GATEWAY_API_KEYS_FILE), or GATEWAY_ALLOW_NO_AUTH=1 "
            "if something in front of the gateway checks who connects")


def private_dir(path: Path) -> None:
    """Make ``path`` and its missing parents, each 0700 whatever the umask; a directory that exists is left as it
    is (an operator's)."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # another worker made it just now
            continue
        os.chmod(directory, 0o700)  # mkdir's mode passes through the umask


def private_file(path: Path, flags: int = os.O_RDWR) -> int:
    """A descriptor on ``path``, which is made 0600 whatever the umask (also when it existed)."""
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd
