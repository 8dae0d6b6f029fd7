"""Images given by URL are fetched by the gateway and sent inline.

Nothing shows the Cloud Code upstream fetching arbitrary URLs, so the gateway downloads them itself,
carefully: http(s) only, a size cap, a timeout, and no loopback or private targets (a gateway on a shared
host must not become a way to read internal services), unless explicitly allowed for tests.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from urllib.parse import urlsplit

import requests

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


def _images(request: Request) -> list[Image]:
    found: list[Image] = []
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, Image):
                found.append(part)
            elif isinstance(part, ToolResult):
                found.extend(p for p in part.content if isinstance(p, Image))
    return found


def resolve_remote_images(request: Request, settings: Settings) -> None:
    """Replace every URL image of the request by its downloaded bytes (in place)."""
    for image in _images(request):
        if image.data is None and image.url:
            image.data, sniffed = fetch_image(image.url, settings)
            image.media_type = sniffed or image.media_type or "image/png"


def _check_target(url: str, settings: Settings) -> None:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # a bad port or IPv6 literal raises here
    except ValueError:
        raise InvalidRequest("image URL is not a valid URL (host or port)", param="image.url") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise InvalidRequest(f"image URL must be http(s): {url[:100]}", param="image.url")
    if settings.allow_private_image_urls:
        return
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise InvalidRequest(f"image URL host cannot be resolved: {parts.hostname}", param="image.url") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            raise InvalidRequest("image URL points to a private or loopback address", param="image.url")


def fetch_image(url: str, settings: Settings) -> tuple[str, str | None]:
    """Base64 data and the sniffed media type of the image at ``url``; InvalidRequest on any failure."""
    _check_target(url, settings)
    try:
        with requests.get(url, stream=True, timeout=(5, 15), allow_redirects=False) as response:
            if response.status_code != 200:
                raise InvalidRequest(f"image URL answered HTTP {response.status_code}", param="image.url")
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) > settings.max_image_bytes:
                    raise InvalidRequest("image at URL is larger than the gateway accepts", param="image.url")
            declared = response.headers.get("Content-Type", "").split(";")[0].strip() or None
    except (requests.RequestException, ValueError) as exc:  # ValueError: what urllib3 finds wrong in the URL
        raise InvalidRequest(f"image URL could not be fetched ({type(exc).__name__})", param="image.url") from None
    sniffed = next((mime for magic, mime in _MAGIC if body.startswith(magic)), None)
    if sniffed is None and body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        sniffed = "image/webp"
    if sniffed is None and not (declared or "").startswith("image/"):
        raise InvalidRequest("the URL did not return an image", param="image.url")
    return base64.b64encode(bytes(body)).decode("ascii"), sniffed or declared
