"""Images given by URL are fetched by the gateway and sent inline.

Nothing shows the Cloud Code upstream fetching arbitrary URLs, so the gateway downloads them itself, carefully:
a gateway on a shared host must not become a way to read internal services, nor a way to tie it up. So: http(s)
only, caps on the images and bytes per request, one deadline per fetch, and only globally routable addresses
(unless GATEWAY_ALLOW_PRIVATE_IMAGE_URLS, for tests). The name is
resolved once, every address it resolves to is checked, and the connection goes to the checked address itself,
with the URL's host name in the Host header, in TLS's SNI and in the certificate check: a name that resolves to
a public address for the check and to 127.0.0.1 for the connection (DNS rebinding) reaches nothing. Redirects are
followed a few times, each target checked the same way.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import certifi

from .config import Settings
from .core.request import Image, Request, ToolResult
from .errors import InvalidRequest

_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
]

#: Redirects followed per image, each to a target checked like the first.
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Trusted certificate authorities for https image URLs (what ``requests`` uses).
CA_CERTS = certifi.where()
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0

#: Ranges refused even where ``is_global`` says otherwise (it varies across Python versions): shared address
#: space (carrier-grade NAT), benchmarking, documentation, multicast, and IPv6 forms that carry an IPv4 address
#: (mapped, compatible, NAT64, 6to4) and so could lead to a private one.
_SPECIAL_RANGES = tuple(ipaddress.ip_network(network) for network in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))

#: host, port -> the addresses to connect to (tests inject their own: no real DNS).
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


def public_address(address: str) -> bool:
    """Whether ``address`` is globally routable, and in none of the special ranges."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a scoped IPv6 address (fe80::1%eth0) among others: never public
        return False
    return ip.is_global and not any(ip in network for network in _SPECIAL_RANGES if network.version == ip.version)


def _images(request: Request) -> list[Image]:
    found: list[Image] = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, Image):
                found.append(part)
            elif isinstance(part, ToolResult):
                found.extend(p for p in part.content if isinstance(p, Image))
    return found


def resolve_remote_images(request: Request, settings: Settings, resolve: Resolver = system_resolver) -> None:
    """Replace every URL image of the request by its downloaded bytes (in place).

    At most GATEWAY_MAX_IMAGE_URLS of them, fetched at once (threads: greenlets under gevent), reading
    GATEWAY_MAX_IMAGE_URL_MB together; the first failure stops the others.
    """
    pending = [image for image in _images(request) if image.data is None and image.url]
    if not pending:
        return
    if len(pending) > settings.max_image_urls:
        raise _invalid(f"a request may give at most {settings.max_image_urls} images by URL "
                       "(GATEWAY_MAX_IMAGE_URLS); send the others inline")
    quota = _Quota(settings.max_image_url_bytes)
    results: list[tuple[str, str | None] | BaseException | None] = [None] * len(pending)

    def fetch(index: int) -> None:
        try:
            results[index] = fetch_image(pending[index].url, settings, resolve, quota)
        except BaseException as exc:  # noqa: BLE001 - handed to the request's own thread below
            results[index] = exc
            quota.failed = True

    if len(pending) == 1:
        fetch(0)
    else:
        threads = [threading.Thread(target=fetch, args=(index,), daemon=True) for index in range(len(pending))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each fetch ends by its deadline
    for result in results:
        if isinstance(result, BaseException):
            raise result
    for image, result in zip(pending, results):
        image.data, sniffed = result  # type: ignore[misc]
        image.media_type = sniffed or image.media_type or "image/png"


class _Quota:
    """What a request's image fetches may still read, together; and whether one of them failed already."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.left = total
        self.failed = False
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        if self.failed:
            raise _invalid("another image URL of the request failed")
        with self._lock:
            self.left -= size
            if self.left < 0:
                raise _invalid(f"the images at the request's URLs are larger than "
                               f"{self.total / (1024 * 1024):g} MB together (GATEWAY_MAX_IMAGE_URL_MB)")


@dataclass(frozen=True)
class _Target:
    """Where one fetch goes: the checked address to connect to, and the name the server knows itself by."""

    https: bool
    host: str  # ASCII (IDNA) name or IP literal, for Host, SNI and the certificate check
    port: int
    path: str
    address: str


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="image.url")


def _target(url: str, settings: Settings, resolve: Resolver) -> _Target:
    """Parse ``url``, resolve its host once and check every address; InvalidRequest on any problem."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # a bad port or IPv6 literal raises here
        if host and not host.isascii():
            host = host.encode("idna").decode("ascii")
    except ValueError:  # UnicodeError included: a label IDNA cannot encode
        raise _invalid("image URL is not a valid URL (host or port)") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise _invalid(f"image URL must be http(s): {url[:100]}")
    https = parts.scheme == "https"
    port = port or (443 if https else 80)
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError):
            raise _invalid(f"image URL host cannot be resolved: {host[:100]}") from None
    if not addresses:
        raise _invalid(f"image URL host cannot be resolved: {host[:100]}")
    if not settings.allow_private_image_urls and not all(public_address(address) for address in addresses):
        raise _invalid("image URL points to a private, loopback or otherwise non-public address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(https, host, port, path, addresses[0])


class _Connection:
    """One HTTP(S) connection to a target's checked address, cut off at the fetch's deadline.

    http.client sends the target's name in Host and ssl uses it for SNI and the certificate check, while the
    socket goes to the address checked. A read timeout bounds each read only (a server sending a byte every
    14 s kept a fetch alive for ever): a timer shuts the socket at the deadline, which wakes any read waiting
    on it, under gevent too.
    """

    def __init__(self, target: _Target, deadline: float) -> None:
        self.target = target
        self._timer: threading.Timer | None = None
        sock = socket.create_connection((target.address, target.port), timeout=_left(deadline, CONNECT_TIMEOUT))
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._cut, (sock,))
        self._timer.daemon = True
        self._timer.start()
        try:
            sock.settimeout(_left(deadline, READ_TIMEOUT))
            if target.https:
                sock = _tls_context(CA_CERTS).wrap_socket(sock, server_hostname=target.host)
            self.http = http.client.HTTPConnection(target.address, target.port)
            self.http.sock = sock  # already connected: to the address checked, not to whatever the name says now
        except BaseException:
            self.close()
            sock.close()
            raise

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def get(self) -> http.client.HTTPResponse:
        target = self.target
        name = f"[{target.host}]" if ":" in target.host else target.host
        self.http.request("GET", target.path, headers={
            "Host": name if target.port == (443 if target.https else 80) else f"{name}:{target.port}",
            "Accept": "image/*, application/pdf;q=0.9, */*;q=0.5", "Accept-Encoding": "identity",
            "User-Agent": "cloudcode-gateway"})
        return self.http.getresponse()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if hasattr(self, "http"):
            self.http.close()


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str) -> ssl.SSLContext:
    """Certificates checked against the URL's host name (``check_hostname``); loaded once, not per fetch."""
    return ssl.create_default_context(cafile=cafile)


def _left(deadline: float, cap: float) -> float:
    """Seconds an operation may take: ``cap``, or less when the deadline is closer; 0 is past it."""
    return max(0.001, min(cap, deadline - time.monotonic()))


def fetch_image(url: str, settings: Settings, resolve: Resolver = system_resolver,
                quota: _Quota | None = None) -> tuple[str, str | None]:
    """Base64 data and the sniffed media type of the image at ``url``; InvalidRequest on any failure.

    Everything (lookups, redirects, the body) happens within GATEWAY_IMAGE_FETCH_TIMEOUT_SECONDS.
    """
    quota = quota or _Quota(settings.max_image_url_bytes)
    deadline = time.monotonic() + settings.image_fetch_timeout
    for _ in range(MAX_REDIRECTS + 1):
        target = _target(url, settings, resolve)
        connection = None
        try:
            connection = _Connection(target, deadline)
            response = connection.get()
            if time.monotonic() >= deadline:
                raise _too_slow(settings)
            location = response.getheader("Location")
            if response.status in _REDIRECTS and location:
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise _invalid(f"image URL answered HTTP {response.status}")
            body = _read(response, settings.max_image_bytes, quota)
            if time.monotonic() >= deadline:  # the socket was cut: what was read may look complete
                raise _too_slow(settings)
            declared = (response.getheader("Content-Type") or "").split(";")[0].strip() or None
            break
        except (http.client.HTTPException, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise _too_slow(settings) from None
            raise _invalid(f"image URL could not be fetched ({type(exc).__name__})") from None
        finally:
            if connection is not None:
                connection.close()
    else:
        raise _invalid(f"image URL redirected more than {MAX_REDIRECTS} times")
    sniffed = next((mime for magic, mime in _MAGIC if body.startswith(magic)), None)
    if sniffed is None and body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        sniffed = "image/webp"
    if sniffed is None and not (declared or "").startswith("image/"):
        raise _invalid("the URL did not return an image")
    return base64.b64encode(bytes(body)).decode("ascii"), sniffed or declared


def _too_slow(settings: Settings) -> InvalidRequest:
    return _invalid(f"image URL took longer than {settings.image_fetch_timeout:g}s (GATEWAY_IMAGE_FETCH_TIMEOUT_SECONDS)")


def _read(response: http.client.HTTPResponse, limit: int, quota: _Quota) -> bytearray:
    declared = response.getheader("Content-Length") or ""
    if declared.isdigit() and int(declared) > limit:
        raise _invalid("image at URL is larger than the gateway accepts")
    body = bytearray()
    while chunk := response.read1(65536):
        body += chunk
        quota.take(len(chunk))
        if len(body) > limit:
            raise _invalid("image at URL is larger than the gateway accepts")
    return body
