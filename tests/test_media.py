"""Image URLs: the gateway connects only to the public address it checked (no DNS rebinding, no SSRF).

No test here uses real DNS: names resolve through a resolver the test passes in, to loopback servers.
"""

from __future__ import annotations

import base64
import datetime
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import media
from gateway.config import Settings
from gateway.errors import InvalidRequest
from tests.conftest import RAW_PNG, ImageServer

PUBLIC = Settings(allow_private_image_urls=False)
PRIVATE_OK = Settings(allow_private_image_urls=True)


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.stop()


class Resolver:
    """Names to addresses, as a test says; counts the lookups."""

    def __init__(self, **names: list[str]) -> None:
        self.names = {name.replace("_", "."): addresses for name, addresses in names.items()}
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.names:
            raise OSError("no such name")
        return self.names[host]


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.255.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "100.127.255.254", "0.0.0.0", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "::", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1", "fc00::1", "fd12::1",
    "fe80::1", "fec0::1", "ff02::1", "ff0e::1", "2001:db8::1", "2001::1", "100::1", "fe80::1%eth0", "not-an-ip",
])
def test_special_addresses_are_not_public(address) -> None:
    assert not media.public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                                     "2a00:1450:4001:82a::200e"])
def test_global_addresses_are_public(address) -> None:
    assert media.public_address(address)


@pytest.mark.parametrize("addresses", [["10.0.0.5"], ["8.8.8.8", "127.0.0.1"], ["100.64.1.1"], ["::ffff:127.0.0.1"]])
def test_a_name_resolving_to_any_non_public_address_is_refused_before_connecting(images, addresses) -> None:
    resolve = Resolver(images_example=addresses)
    with pytest.raises(InvalidRequest, match="non-public address"):
        media.fetch_image(f"http://images.example:{images.port}/cat.png", PUBLIC, resolve)
    assert images.hosts == []


@pytest.mark.parametrize("url", ["http://127.0.0.1/x.png", "http://[::1]/x.png", "http://0x7f000001/x.png",
                                 "http://2130706433/x.png", "http://[::ffff:127.0.0.1]/x.png"])
def test_address_literals_are_checked_too(url) -> None:
    with pytest.raises(InvalidRequest):
        media.fetch_image(url, PUBLIC, Resolver())


def test_the_connection_goes_to_the_checked_address_with_the_urls_host_name(images) -> None:
    """Resolved once, connected to that address: a second lookup (which rebinding would answer) never happens."""
    resolve = Resolver(images_example=["127.0.0.1"])
    data, media_type = media.fetch_image(f"http://images.example:{images.port}/cat.png", PRIVATE_OK, resolve)
    assert base64.b64decode(data) == RAW_PNG and media_type == "image/png"
    assert resolve.calls == ["images.example"]
    assert images.hosts == [f"images.example:{images.port}"]


def test_redirects_are_checked_like_the_first_url(images, monkeypatch) -> None:
    monkeypatch.setattr(media, "public_address", lambda address: address == "127.0.0.1")
    resolve = Resolver(images_example=["127.0.0.1"], internal_example=["10.0.0.5"])
    base = f"http://images.example:{images.port}"
    with pytest.raises(InvalidRequest, match="non-public address"):
        media.fetch_image(f"{base}/redirect?to=http://internal.example:{images.port}/secret", PUBLIC, resolve)
    assert images.hosts == [f"images.example:{images.port}"]  # the internal target was never contacted
    data, _ = media.fetch_image(f"{base}/redirect?to=/cat.png", PUBLIC, resolve)
    assert base64.b64decode(data) == RAW_PNG
    chain = f"{base}/redirect?to=" * (media.MAX_REDIRECTS + 1) + "/cat.png"
    with pytest.raises(InvalidRequest, match="redirected more than"):
        media.fetch_image(chain, PUBLIC, resolve)


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for images.example: (CA file, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:  # noqa: ANN001
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        else:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("test CA", ca_key, "test CA", ca_key, ca=True)
    leaf = certificate("images.example", key, "test CA", ca_key, ca=False)
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


def test_https_checks_the_certificate_for_the_urls_host_name(tmp_path, monkeypatch) -> None:
    """Connected to the address, yet SNI and the certificate check use the name: a wrong name fails."""
    ca, cert, key = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ImageServer(tls=context)
    monkeypatch.setattr(media, "CA_CERTS", str(ca))
    try:
        resolve = Resolver(images_example=["127.0.0.1"], other_example=["127.0.0.1"])
        data, _ = media.fetch_image(f"https://images.example:{server.port}/cat.png", PRIVATE_OK, resolve)
        assert base64.b64decode(data) == RAW_PNG
        assert server.hosts == [f"images.example:{server.port}"]
        with pytest.raises(InvalidRequest, match="could not be fetched"):
            media.fetch_image(f"https://other.example:{server.port}/cat.png", PRIVATE_OK, resolve)
        with pytest.raises(InvalidRequest, match="could not be fetched"):
            media.fetch_image(f"https://127.0.0.1:{server.port}/cat.png", PRIVATE_OK, resolve)
        assert len(server.hosts) == 1
    finally:
        server.stop()


# -- caps, deadline, concurrency ---------------------------------------------------------------------------------

class RawServer:
    """A loopback TCP server whose every connection runs ``serve(connection)`` in its own thread."""

    def __init__(self, serve) -> None:  # noqa: ANN001
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection) -> None:  # noqa: ANN001
        with connection:
            connection.recv(65536)
            try:
                self.serve(connection)
            except OSError:
                pass

    def stop(self) -> None:
        self.listener.close()


def _trickle_body(connection) -> None:  # noqa: ANN001
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + RAW_PNG[:8])
    for _ in range(200):
        time.sleep(0.1)
        connection.sendall(b"x")


def _trickle_headers(connection) -> None:  # noqa: ANN001
    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(200):
        time.sleep(0.1)
        connection.sendall(b"x")


def _silent(connection) -> None:  # noqa: ANN001
    time.sleep(20)


@pytest.mark.parametrize("serve", [_trickle_body, _trickle_headers, _silent])
def test_one_deadline_bounds_the_whole_fetch(serve) -> None:
    """A byte every 0.1 s never trips a read timeout: only the fetch's own deadline ends it."""
    server = RawServer(serve)
    settings = Settings(allow_private_image_urls=True, image_fetch_timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(InvalidRequest, match="took longer than 1s"):
            media.fetch_image(f"http://127.0.0.1:{server.port}/slow.png", settings, Resolver())
        assert time.monotonic() - started < 2.5
    finally:
        server.stop()


def _request(*urls: str):  # noqa: ANN202
    from gateway.core.request import Image, Message, Request, Text

    return Request(model="m", messages=[Message("user", [Text("look"), *(Image(url=url) for url in urls)])])


def _slow_png(connection) -> None:  # noqa: ANN001
    time.sleep(0.6)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s"
                       % (len(RAW_PNG), RAW_PNG))


def test_the_images_of_a_request_are_fetched_at_once() -> None:
    server = RawServer(_slow_png)
    try:
        request = _request(*(f"http://127.0.0.1:{server.port}/{n}.png" for n in range(5)))
        started = time.monotonic()
        media.resolve_remote_images(request, PRIVATE_OK, Resolver())
        assert time.monotonic() - started < 2.0  # one after the other: 3 s
        assert all(base64.b64decode(part.data) == RAW_PNG for part in request.messages[0].parts[1:])
    finally:
        server.stop()


def test_images_by_url_are_capped_per_request(images) -> None:
    settings = Settings(allow_private_image_urls=True, max_image_urls=3)
    request = _request(*(f"http://127.0.0.1:{images.port}/{n}.png" for n in range(4)))
    with pytest.raises(InvalidRequest, match="at most 3 images by URL"):
        media.resolve_remote_images(request, settings, Resolver())
    assert images.hosts == []  # refused before fetching any


def _big(connection) -> None:  # noqa: ANN001
    body = RAW_PNG + b"\0" * 40_000
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_the_bytes_of_a_requests_images_are_capped_together() -> None:
    server = RawServer(_big)
    try:
        urls = [f"http://127.0.0.1:{server.port}/{n}.png" for n in range(3)]
        settings = Settings(allow_private_image_urls=True, max_image_url_bytes=100_000)
        media.resolve_remote_images(_request(*urls[:2]), settings, Resolver())
        with pytest.raises(InvalidRequest, match="MB together"):
            media.resolve_remote_images(_request(*urls), settings, Resolver())
    finally:
        server.stop()
