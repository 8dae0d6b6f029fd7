"""Relaying an event stream to a client as SSE, shared by the API families.

Three things make a relay well-behaved:

* The first event is pulled before the response starts, so failures before any content (no account, 429
  everywhere, a bad request upstream) still get a real HTTP status in the caller's format.
* The upstream is read by a separate worker (a greenlet under gevent) while the response waits on a queue
  with a timeout: when the upstream is silent (long thinking, a wait for a rate-limited account) the client
  gets keep-alive pings, so proxies and clients do not time out.
* A watcher waits on the client's socket; when the client goes away it aborts the upstream request at once,
  even while the upstream is silent (a disconnect is otherwise noticed only at the next write).
"""

from __future__ import annotations

import _socket
import _thread
import logging
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, request, stream_with_context

from ..core.events import Event
from ..errors import GatewayError, UpstreamError

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_EVENT, _END, _ERROR = 0, 1, 2
# How often the disconnect watcher re-checks whether the stream is over.
WATCH_INTERVAL = 1.0


def spawn(target: Callable[..., None], *args: Any) -> None:
    """Run ``target`` concurrently: a bare greenlet under gevent's patching, an OS thread without it.

    ``_thread`` rather than ``threading.Thread``: the Thread object and its locks cost several KB per stream,
    and with thousands of streams open that showed in the RSS per stream (docs/performance.md). Nothing
    joins these workers; each ends on its own when its stream does.
    """
    _thread.start_new_thread(target, args)


def prime(events: Iterator[Event]) -> Iterator[Event]:
    """Run the generator up to its first event (raising GatewayError if it fails before that)."""
    first = next(events, None)

    def chained() -> Iterator[Event]:
        try:
            if first is not None:
                yield first
            yield from events
        finally:
            events.close()

    return chained()


class _Pump:
    """Moves events from the upstream iterator (in a worker) to the response generator (via a queue)."""

    def __init__(self, events: Iterator[Event], abort: Callable[[], None] | None) -> None:
        self.events = events
        self.abort = abort
        self.queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=256)
        self.stopped = threading.Event()

    def start(self) -> None:
        spawn(self._run)

    def stop(self) -> None:
        """The client is gone or the response ended: release the upstream without waiting for it."""
        if not self.stopped.is_set():
            self.stopped.set()
            if self.abort is not None:
                self.abort()

    def _put(self, item: tuple[int, Any]) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=WATCH_INTERVAL)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            for event in self.events:
                if self.stopped.is_set():
                    return
                self._put((_EVENT, event))
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the response generator
            self._put((_ERROR, exc))
        finally:
            close = getattr(self.events, "close", None)
            if close is not None:
                close()


def client_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client connection, where the WSGI server exposes it (gunicorn and werkzeug do)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if hasattr(sock, "fileno") else None


def _watch(sock: socket.socket, pump: _Pump) -> None:
    """Wait until the client's socket reports EOF, then stop the pump (which aborts the upstream).

    Once the response is over the socket belongs to the server again, which reads the next keep-alive request
    from it: the watcher then leaves it alone.
    """
    try:
        readable = _readability(sock)
        while not pump.stopped.is_set():
            if not readable(WATCH_INTERVAL):
                continue
            if not pump.stopped.is_set() and _peer_closed(sock):
                log.info("client disconnected, releasing the upstream")
                pump.stop()
            return  # EOF handled, or the client sent data (a pipelined request): stop watching
    except OSError as exc:
        log.info("client socket failed (%s), releasing the upstream", exc)
        pump.stop()


def _readability(sock: socket.socket) -> Callable[[float], bool]:
    """A wait for the socket to become readable, usable on any descriptor.

    ``select.select`` refuses descriptors from 1024 up (FD_SETSIZE), and a gateway holding a few hundred
    streams has such descriptors (each stream also holds an upstream socket). That refusal once stopped the
    stream at its next ping: it ended cleanly but without ``message_stop``. ``poll`` has no such limit.
    """
    if not hasattr(select, "poll"):
        return lambda timeout: bool(select.select([sock], [], [], timeout)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return lambda timeout: bool(poller.poll(timeout * 1000))


def _peer_closed(sock: socket.socket) -> bool:
    """Peek at the socket without ever blocking.

    A blocking peek on a gevent socket waits alongside the server's own read of the next keep-alive request,
    and gevent refuses two waiters on one socket: under load the server's read failed and the client's next
    request was lost. The peek therefore goes through an unpatched socket object on the same descriptor.
    """
    peek = _socket.socket(fileno=sock.fileno())
    try:
        return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    finally:
        peek.detach()


def sse_response(
    events: Iterator[Event],
    render: Callable[[Event], list[bytes]],
    render_error: Callable[[GatewayError], bytes],
    *,
    ping: bytes | None = None,
    ping_interval: float = 10.0,
    abort: Callable[[], None] | None = None,
    trailer: Callable[[], list[bytes]] | None = None,
    on_close: Callable[[], None] | None = None,
) -> Response:
    """Stream ``events`` through ``render``; a failure mid-stream becomes one error event, then EOF."""
    pump = _Pump(events, abort)
    sock = client_socket(request.environ)
    metrics = current_app.extensions.get("metrics")

    def body() -> Iterator[bytes]:
        if metrics is not None:
            metrics.active_streams.inc()
        pump.start()
        if sock is not None:
            spawn(_watch, sock, pump)
        try:
            while True:
                try:
                    kind, item = pump.queue.get(timeout=ping_interval)
                except queue.Empty:
                    if pump.stopped.is_set():
                        return
                    if ping is not None:
                        yield ping
                    continue
                if kind == _END:
                    if trailer is not None:
                        yield from trailer()
                    return
                if kind == _ERROR:
                    raise item
                yield from render(item)
        except GatewayError as exc:
            log.warning("stream ended with an error: %s", exc.message)
            yield render_error(exc)
        except Exception:  # noqa: BLE001 - the client gets an error event, the log gets the trace
            log.exception("stream failed")
            yield render_error(UpstreamError("the gateway failed while relaying the answer"))
        finally:
            pump.stop()
            if metrics is not None:
                metrics.active_streams.dec()
            if on_close is not None:
                on_close()

    return Response(stream_with_context(body()), mimetype="text/event-stream", headers=SSE_HEADERS)
