"""Relaying an event stream to a client as SSE, shared by the API families.

Three things make a relay well-behaved:

* The first event is pulled before the response starts, so failures before any content (no account, 429
  everywhere, a bad request upstream) still get a real HTTP status in the caller's format.
* The upstream is read by a separate worker (a greenlet under gevent) while the response waits for its events
  with a timeout: when the upstream is silent (long thinking, a wait for a rate-limited account) the client
  gets keep-alive pings, so proxies and clients do not time out.
* One watcher per process waits on the client sockets of all live streams at once; when a client goes away
  it aborts that stream's upstream request at once, even while the upstream is silent (a disconnect is
  otherwise noticed only at the next write).

Each held stream costs memory for as long as it lasts, and the gateway holds thousands (docs/performance.md):
what a stream keeps (greenlets, locks, queues, contexts) is kept small on purpose.
"""

from __future__ import annotations

import _socket
import _thread
import functools
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, current_app, request

from ..core.events import Event
from ..errors import GatewayError, UpstreamError

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_EVENT, _END, _ERROR = 0, 1, 2
# Events the upstream worker may get ahead of the client by.
MAX_PENDING = 256
# How often a per-stream disconnect watcher (platforms without epoll) re-checks whether the stream is over.
WATCH_INTERVAL = 1.0


def spawn(target: Callable[..., None], *args: Any) -> None:
    """Run ``target`` concurrently: a bare greenlet under gevent's patching, an OS thread without it.

    Neither ``threading.Thread`` nor, under gevent, the ``gevent.Greenlet`` that a patched ``_thread`` starts:
    with 2,000 streams held under gunicorn, a raw greenlet for the pump took the RSS per stream from 68 KB to
    57 KB (docs/performance.md). Nothing joins these workers; each ends on its own when its stream does.
    """
    if _gevent_threads():
        sys.modules["gevent"].spawn_raw(target, *args)
    else:
        _thread.start_new_thread(target, args)


def _gevent_threads() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("_thread")


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
    """Moves events from the upstream iterator (in a worker) to the response generator.

    The hand-over is a list and two locks used as doorbells rather than a ``queue.Queue`` and a
    ``threading.Event``, whose conditions and deque are about 3 KB of objects per held stream (tracemalloc). The
    response waits on ``_ready`` while nothing is pending; the worker waits on ``_room`` while ``MAX_PENDING``
    items are (a slow client must not make the gateway buffer a whole answer). Whoever ends what the other side
    waits for rings that side's bell; a ring nobody waited for is harmless, as each side re-checks before it
    waits again.

    One bell per side, never one shared: a released lock is not handed to the greenlet waiting on it, the next
    ``acquire`` takes it. With one bell the response, after ringing for a worker stuck on a full list, drained
    the list and took its own ring back as it waited for more: both sides then waited for good, and a burst of
    more than ``MAX_PENDING`` events hung the stream.
    """

    def __init__(self, events: Iterator[Event], abort: Callable[[], None] | None) -> None:
        self.events = events
        self.abort = abort
        self.stopped = False
        self._pending: list[tuple[int, Any]] = []
        self._ready = _thread.allocate_lock()
        self._ready.acquire()
        self._room = _thread.allocate_lock()
        self._room.acquire()

    def start(self) -> None:
        spawn(self._run)

    def stop(self) -> None:
        """The client is gone or the response ended: release the upstream without waiting for it."""
        if not self.stopped:
            self.stopped = True
            _ring(self._ready)
            _ring(self._room)
            if self.abort is not None:
                self.abort()

    def take(self, timeout: float) -> list[tuple[int, Any]]:
        """Every pending item, waiting up to ``timeout`` seconds for one; none after that, or once stopped.

        All of them rather than one: what arrived together is written to the client in one send.
        """
        deadline = time.monotonic() + timeout
        while not self._pending and not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._ready.acquire(timeout=left)
        count = len(self._pending)  # the worker may append meanwhile: slice, never swap the list
        items = self._pending[:count]
        del self._pending[:count]
        if len(self._pending) + count >= MAX_PENDING:  # it was full: the worker may be waiting
            _ring(self._room)
        return items

    def _put(self, item: tuple[int, Any]) -> None:
        while len(self._pending) >= MAX_PENDING and not self.stopped:
            self._room.acquire()
        if not self.stopped:
            self._pending.append(item)
            if len(self._pending) == 1:  # it was empty: the response may be waiting
                _ring(self._ready)

    def _run(self) -> None:
        try:
            for event in self.events:
                if self.stopped:
                    return
                self._put((_EVENT, event))
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the response generator
            self._put((_ERROR, exc))
        finally:
            close = getattr(self.events, "close", None)
            if close is not None:
                close()


def _ring(bell: Any) -> None:
    try:
        bell.release()
    except RuntimeError:
        pass  # rung already, and not heard yet: one ring wakes the one waiter as well as two


def client_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client connection, where the WSGI server exposes it (gunicorn and werkzeug do)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if hasattr(sock, "fileno") else None


# -- disconnect watching ----------------------------------------------------------------------------------


# Each registration reports one event, then nothing until re-armed: whatever happens to a descriptor (closed,
# reused, never forgotten), the watcher cannot spin on an event it does not act on.
_ONE_EVENT = select.EPOLLIN | select.EPOLLONESHOT if hasattr(select, "EPOLLONESHOT") else 0


class _Watcher:
    """The client sockets of every live stream in one epoll object, waited on by one worker per process.

    A watcher greenlet per stream cost about 11 KB of RSS per held stream (its stack, its poll object): a
    fifth of the gateway's memory per stream with thousands open (docs/performance.md). Here the kernel
    watches all sockets and the one worker waits on a single descriptor, the epoll object's.

    The worker never waits on a client socket itself, it only peeks at one without blocking when epoll
    reports it readable: the server reads the next keep-alive request from the same socket, and gevent
    refuses two waiters on one socket (a blocking peek once lost those requests under load). A stream stops
    being watched (``forget``) before its response ends, so the socket is the server's again by then.
    """

    def __init__(self, epoll: Any) -> None:
        self.pid = os.getpid()
        self._epoll = epoll
        self._pumps: dict[int, _Pump] = {}
        self._lock = threading.Lock()
        spawn(self._run)

    def watch(self, fd: int, pump: _Pump) -> None:
        with self._lock:
            self._pumps[fd] = pump  # first: an event found without its pump would be lost (one event each)
            try:
                self._epoll.register(fd, _ONE_EVENT)
            except FileExistsError:  # left by a stream that never said forget: this stream takes it over
                self._epoll.modify(fd, _ONE_EVENT)

    def forget(self, fd: int, pump: _Pump) -> bool:
        """Stop watching ``fd`` for ``pump``; False when it was not watched for it (any more)."""
        with self._lock:
            if self._pumps.get(fd) is not pump:
                return False
            del self._pumps[fd]
            try:
                self._epoll.unregister(fd)
            except OSError:  # the socket is closed already, which removed it from the epoll object
                pass
            return True

    def _rearm(self, fd: int, pump: _Pump) -> None:
        with self._lock:
            if self._pumps.get(fd) is pump:
                self._epoll.modify(fd, _ONE_EVENT)

    def _run(self) -> None:
        # The process's own poll(): gevent's under monkey-patching, so only this greenlet waits (on one
        # descriptor); the kernel's in a thread. Never select(): it refuses descriptors from 1024 up.
        ready = select.poll()
        ready.register(self._epoll.fileno(), select.POLLIN)
        while True:
            try:
                ready.poll()
                for fd, _ in self._epoll.poll(0):
                    self._check(fd)
            except Exception:  # noqa: BLE001 - the watcher must outlive any one stream's trouble
                log.exception("the disconnect watcher failed; it goes on")
                time.sleep(WATCH_INTERVAL)

    def _check(self, fd: int) -> None:
        """A watched socket is readable: the client closed it, or sent more (a pipelined request)."""
        pump = self._pumps.get(fd)
        if pump is None:
            return  # the stream ended after epoll reported it
        closed = _peek(fd)
        if closed is None:  # nothing there: reported for an earlier socket on the same descriptor number
            self._rearm(fd, pump)
        elif self.forget(fd, pump) and closed and not pump.stopped:
            log.info("client disconnected, releasing the upstream")
            pump.stop()


_watcher: _Watcher | None = None
_watcher_lock = threading.Lock()


def _shared_watcher() -> _Watcher | None:
    """This process's watcher, started on first use (so in the worker, after a fork); None without epoll."""
    global _watcher
    with _watcher_lock:
        if _watcher is None or _watcher.pid != os.getpid():
            epoll = _native_epoll()
            _watcher = _Watcher(epoll()) if epoll is not None else None
        return _watcher


def _native_epoll() -> Callable[[], Any] | None:
    """``select.epoll``, which gevent's monkey-patching removes from ``select`` (it would block the hub).

    Blocking is not a problem here: the epoll object is only ever asked with a zero timeout.
    """
    epoll = getattr(select, "epoll", None)
    monkey = sys.modules.get("gevent.monkey")
    if epoll is None and monkey is not None:
        epoll = monkey.get_original("select", "epoll")
    return epoll


def watch_client(sock: socket.socket | None, pump: _Pump) -> Callable[[], object]:
    """Stop ``pump`` when the client closes ``sock``; returns what ends the watch (call it before the end)."""
    if sock is None or (fd := sock.fileno()) < 0:
        return lambda: None
    watcher = _shared_watcher()
    if watcher is None:
        spawn(_watch, sock, pump)
        return lambda: None
    watcher.watch(fd, pump)
    return functools.partial(watcher.forget, fd, pump)


def _watch(sock: socket.socket, pump: _Pump) -> None:
    """One stream's watcher, where there is no epoll: wait until the client's socket is readable, then stop
    the pump if the client closed it.

    Once the response is over the socket belongs to the server again, which reads the next keep-alive request
    from it: the watcher then leaves it alone.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    while not pump.stopped:
        if not poller.poll(WATCH_INTERVAL * 1000):
            continue
        if not pump.stopped and _peek(sock.fileno()):
            log.info("client disconnected, releasing the upstream")
            pump.stop()
        return  # EOF handled, or the client sent data (a pipelined request): stop watching


def _peek(fd: int) -> bool | None:
    """Whether the client closed the socket (True: EOF or an error; False: it sent data; None: nothing yet).

    Never blocks: a blocking peek on a gevent socket waits alongside the server's own read of the next
    keep-alive request, and gevent refuses two waiters on one socket. The peek therefore goes through an
    unpatched socket object on the same descriptor.
    """
    try:
        peek = _socket.socket(fileno=fd)
    except OSError:
        return True
    try:
        return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return None
    except OSError:
        return True
    finally:
        peek.detach()


# -- the response -----------------------------------------------------------------------------------------


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
    """Stream ``events`` through ``render``; a failure mid-stream becomes one error event, then EOF.

    The body runs outside Flask's request context (no ``stream_with_context``): nothing in it needs one, and
    keeping the context alive for the whole stream cost about 3 KB per held stream. What the body uses is taken
    from the request before it starts.
    """
    pump = _Pump(events, abort)
    sock = client_socket(request.environ)
    metrics = current_app.extensions.get("metrics")

    def body() -> Iterator[bytes]:
        if metrics is not None:
            metrics.active_streams.inc()
        pump.start()
        unwatch = watch_client(sock, pump)
        unsent: list[bytes] = []  # rendered, not written yet: goes out before an error event
        try:
            while True:
                items = pump.take(ping_interval)
                if not items:
                    if pump.stopped:
                        return
                    if ping is not None:
                        yield ping
                    continue
                for kind, item in items:
                    if kind == _EVENT:
                        unsent += render(item)
                    elif kind == _END:
                        if trailer is not None:
                            unsent += trailer()
                        if unsent:
                            yield b"".join(unsent)
                        return
                    else:
                        raise item
                if unsent:
                    yield b"".join(unsent)
                    unsent.clear()
        except GatewayError as exc:
            log.warning("stream ended with an error: %s", exc.message)
            if unsent:
                yield b"".join(unsent)
            yield render_error(exc)  # a write of its own: the js Gemini SDK sees an error only in a read of its own
        except Exception:  # noqa: BLE001 - the client gets an error event, the log gets the trace
            log.exception("stream failed")
            if unsent:
                yield b"".join(unsent)
            yield render_error(UpstreamError("the gateway failed while relaying the answer"))
        finally:
            unwatch()
            pump.stop()
            if metrics is not None:
                metrics.active_streams.dec()
            if on_close is not None:
                on_close()

    return Response(body(), mimetype="text/event-stream", headers=SSE_HEADERS)
