"""gunicorn reads this file from the working directory: a start-up check that needs the bind address.

It must not import the gateway: the master would import ssl before the gevent workers patch it.
"""

from __future__ import annotations

import ipaddress
import os


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def when_ready(server) -> None:  # noqa: ANN001 - gunicorn's Arbiter
    """Warn when the gateway is reachable from other machines without API keys."""
    if os.environ.get("GATEWAY_API_KEYS") or os.environ.get("GATEWAY_API_KEYS_FILE"):
        return
    for address in server.cfg.bind:
        host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith("unix:") else "localhost"
        if not _loopback(host):
            server.log.warning("listening on %s without API keys: anyone who can reach it can use your "
                               "accounts; set GATEWAY_API_KEYS", address)
