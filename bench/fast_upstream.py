"""A fast stand-in for Cloud Code, so that a benchmark measures the gateway and not its upstream.

The strict test fake (``tests/fake_cloudcode.py``) checks every request and runs on stdlib threads; it
manages a few hundred requests a second. This server checks nothing: raw HTTP/1.1 on a gevent
``StreamServer`` with keep-alive, answering

* ``POST /token``: an OAuth access token;
* ``POST /v1internal:streamGenerateContent``: canned SSE of ``chunks`` events (chunked transfer encoding, as
  Google sends it), with ``delay`` seconds before each event for slow streams;
* ``POST /bench/config?chunks=N&delay=S``: change the canned answer between benchmark phases;
* anything else: ``{}``.

Run: ``python bench/fast_upstream.py --port 9200``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

TOKEN = json.dumps({"access_token": "ya29.bench-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
MAX_HEAD = 65536


@dataclass
class Canned:
    """The current answer: pre-rendered SSE frames, rebuilt only when the configuration changes."""

    chunks: int = 8
    delay: float = 0.0
    frames: list[bytes] = field(default_factory=list)
    whole: bytes = b""

    def configure(self, chunks: int, delay: float) -> None:
        self.chunks, self.delay = max(1, chunks), max(0.0, delay)
        self.frames = [_chunked(frame) for frame in sse_frames(self.chunks)]
        self.whole = b"".join(self.frames) + b"0\r\n\r\n"


def sse_frames(count: int) -> list[bytes]:
    """``count`` GenerateContentResponse events wrapped as Cloud Code sends them; usage on the last."""
    frames = []
    for index in range(count):
        candidate: dict = {"content": {"role": "model", "parts": [{"text": f"word{index} "}]}}
        response: dict = {"candidates": [candidate], "modelVersion": "bench", "responseId": "bench-response"}
        if index == count - 1:
            candidate["finishReason"] = "STOP"
            response["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": count,
                                         "totalTokenCount": 12 + count}
        payload = json.dumps({"response": response, "traceId": "bench"}, separators=(",", ":"))
        frames.append(f"data: {payload}\n\n".encode())
    return frames


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class Connection:
    """One keep-alive client connection: read a request, answer it, repeat until EOF."""

    def __init__(self, sock: socket.socket, canned: Canned) -> None:
        self.sock = sock
        self.canned = canned
        self.buffer = b""

    def serve(self) -> None:
        try:
            while self._one():
                pass
        except OSError:
            pass
        finally:
            self.sock.close()

    def _read_head(self) -> bytes | None:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data or len(self.buffer) > MAX_HEAD:
                return None
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head

    def _read_body(self, length: int) -> bytes:
        parts, have = [self.buffer], len(self.buffer)  # joined once: a 32 MB body in 64 KB reads stays linear
        while have < length:
            data = self.sock.recv(max(65536, length - have))
            if not data:
                raise OSError("EOF in body")
            parts.append(data)
            have += len(data)
        buffer = b"".join(parts)
        body, self.buffer = buffer[:length], buffer[length:]
        return body

    def _one(self) -> bool:
        head = self._read_head()
        if head is None:
            return False
        lines = head.decode("latin-1").split("\r\n")
        _, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        self._read_body(int(headers.get("content-length", "0")))
        url = urlsplit(target)
        if url.path.endswith(":streamGenerateContent"):
            self._stream()
        elif url.path == "/token":
            self.sock.sendall(_response("200 OK", TOKEN))
        elif url.path == "/bench/config":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            self.canned.configure(int(query.get("chunks", self.canned.chunks)),
                                  float(query.get("delay", self.canned.delay)))
            self.sock.sendall(_response("200 OK", json.dumps(vars(self.canned) | {"frames": None, "whole": None}).encode()))
        else:
            self.sock.sendall(_response("200 OK", b"{}"))
        return headers.get("connection", "").lower() != "close"

    def _stream(self) -> None:
        canned = self.canned
        if not canned.delay:
            self.sock.sendall(SSE_HEAD + canned.whole)
            return
        self.sock.sendall(SSE_HEAD)
        for frame in canned.frames:
            gevent.sleep(canned.delay)
            self.sock.sendall(frame)
        self.sock.sendall(b"0\r\n\r\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    canned = Canned()
    canned.configure(args.chunks, args.delay)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(8192)
    server = StreamServer(listener, lambda sock, _address: Connection(sock, canned).serve(), spawn=20000)
    print(f"fast upstream on http://{args.host}:{args.port} ({time.strftime('%H:%M:%S')})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
