"""What keeps one client from starving `serve-registry`: logins and connections.

Logins (`AuthGuard`): bcrypt runs in its own small thread pool, never in the storage pool, so
guessers cannot slow pushes; verified credentials are remembered (by their SHA-256, not in
clear), so a logged-in client never waits for bcrypt again; a client address that fails too
often in a window gets 429 TOOMANYREQUESTS with `Retry-After` without any bcrypt at all; and
when the pool is saturated, new unverified logins get 429 at once instead of queueing.

Connections (`ConnectionGuard`): every connection is watched by one sweeper task. A connection
that has not sent a whole request head within `header_timeout`, a request body that makes no
progress for `body_timeout`, a client that stops reading its response for as long (the kernel's
send queue of the socket, SIOCOUTQ, stays full and unchanged: works for sendfile and TLS alike),
and a keep-alive connection idle for `idle_timeout` are closed. At
`max_connections` (kept below the open-file limit) the idlest connection that is not in a
request makes room; if every one is busy, the newcomer gets 503 with `Retry-After` and is closed.
A connection that has not sent its first request head is on the header clock from its accept.

With TLS the handshake is the guard's too (`TLSAccept`): the TCP connection is counted from its
accept, not from the end of its handshake, so sockets that never send a ClientHello cannot run
the process out of descriptors; at the cap the oldest unfinished handshake makes room after the
idle connections, and a newcomer that finds every connection busy is closed without a handshake.
"""

from __future__ import annotations

import array
import asyncio
import base64
import collections
import fcntl
import hashlib
import math
import resource
import ssl
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from dockerdoctor.registry.auth import Htpasswd
from dockerdoctor.registry.common import RegistryError

REMEMBERED = 1000  # verified / refused credentials remembered


class AuthGuard:
    def __init__(
        self, htpasswd: Htpasswd, realm: str, threads: int = 2, failures: int = 10, window: float = 60.0
    ) -> None:
        self.htpasswd = htpasswd
        self.realm = realm
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="ddreg-auth")
        self.max_pending = max(1, threads) * 4
        self.pending = 0
        self.failures = failures
        self.window = window
        self.verified: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.refused: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self.failed: dict[str, collections.deque[float]] = {}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _challenge(self, message: str = "authentication required") -> RegistryError:
        return RegistryError("UNAUTHORIZED", message, headers={"WWW-Authenticate": f'Basic realm="{self.realm}"'})

    def _too_many(self, retry_after: float, why: str) -> RegistryError:
        seconds = str(max(1, math.ceil(retry_after)))
        return RegistryError("TOOMANYREQUESTS", why, {"retry_after": int(seconds)}, headers={"Retry-After": seconds})

    def _blocked_for(self, remote: str, now: float) -> float:
        times = self.failed.get(remote)
        if not times:
            return 0.0
        while times and now - times[0] > self.window:
            times.popleft()
        if not times:
            del self.failed[remote]
            return 0.0
        if len(times) < self.failures:
            return 0.0
        return times[0] + self.window - now

    def _fail(self, remote: str, now: float) -> None:
        if remote not in self.failed and len(self.failed) > 10_000:
            self.failed.clear()  # bounded memory under a spray from many addresses
        times = self.failed.setdefault(remote, collections.deque(maxlen=self.failures))
        times.append(now)

    @staticmethod
    def _remember(store: collections.OrderedDict[bytes, None], key: bytes) -> None:
        store[key] = None
        store.move_to_end(key)
        while len(store) > REMEMBERED:
            store.popitem(last=False)

    async def check(self, header: str, remote: str) -> None:
        """Return if `header` holds valid credentials; raise 401 or 429 otherwise."""
        if header[:6].lower() != "basic ":
            raise self._challenge()  # docker's first, anonymous request: not a failure
        token = header[6:].strip()
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        if key in self.verified:
            self.verified.move_to_end(key)
            return
        now = time.monotonic()
        wait = self._blocked_for(remote, now)
        if wait > 0:
            raise self._too_many(wait, f"too many failed logins from {remote}; retry later")
        if key in self.refused:
            self._fail(remote, now)
            raise self._challenge("authentication failed")
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            self._fail(remote, now)
            raise self._challenge("authentication failed")
        if self.pending >= self.max_pending:
            raise self._too_many(1, "too many logins are being checked; retry later")
        self.pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self.pool, self.htpasswd.check, user, password)
        finally:
            self.pending -= 1
        if ok:
            self._remember(self.verified, key)
            return
        self._remember(self.refused, key)
        self._fail(remote, time.monotonic())
        raise self._challenge("authentication failed")


# ---------------------------------------------------------------------------------- connections
@dataclass
class Limits:
    max_connections: int = 0  # 0: derived from the open-file limit
    header_timeout: float = 30.0
    body_timeout: float = 60.0
    idle_timeout: float = 90.0


FDS_PER_CONNECTION = 3  # the socket, a dup of it on the raw upload path, a blob or upload file
FD_RESERVE = 64  # listening socket, logs, lock file, thread pools, imports (an idle worker holds ~10)
# asyncio accepts up to its `backlog` sockets in one go before any protocol sees them (and so before
# the cap can refuse any), so the listener is made with this small batch and then given the kernel's
# backlog again with listen(); the batch is part of the budget.
ACCEPT_BATCH = 32
LISTEN_BACKLOG = 1024


def raise_nofile() -> int:
    """Raise the soft open-file limit to the hard one (up to 65,536); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 65536)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(requested: int, soft_limit: int, shared: int = 0) -> int:
    """The largest number of connections that cannot run this process out of file descriptors.

    `shared`: descriptors held apart from connections (the S3 client's pool).
    """
    safe = max(1, (soft_limit - FD_RESERVE - ACCEPT_BATCH - shared) // FDS_PER_CONNECTION)
    return min(requested, safe) if requested > 0 else safe


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, plus the times the sweeper needs."""

    dd_busy = 0  # requests being handled on this connection
    dd_since = 0.0  # start of the current wait (idle, or a request head arriving)
    dd_partial = False  # bytes of a request head have arrived, no handler runs yet
    dd_rx = 0.0  # last byte received
    dd_request: web.BaseRequest | None = None
    dd_outq = 0  # bytes in the socket's send queue at the last sweep
    dd_outq_since = 0.0  # since when that number has not moved
    dd_served = 0  # requests begun on this connection: before the first, the header clock runs
    dd_task: asyncio.Task[Any] | None = None  # the task of the last request: its handler, then its response

    def dd_abort(self) -> None:
        """Close a connection whose request is stuck, and stop its handler.

        Closing alone does not end a handler that waits on the socket outside the transport: a
        sendfile (asyncio never wakes it once the socket is closed) or a recv on the raw upload
        path's dup of the socket (which also keeps the connection open). Such a handler would hold
        its file, its upload's lock and its slot for ever; cancelled, its finally blocks free them.
        """
        task = self.dd_task
        self.force_close()
        if task is not None and not task.done():
            task.cancel()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        now = time.monotonic()
        self.dd_since = self.dd_rx = now
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.dd_rx = now
        if not self.dd_busy and not self.dd_partial:
            self.dd_partial = True
            if self.dd_served:  # a first request's header clock runs from the accept
                self.dd_since = now
        super().data_received(data)


def _waiting(h: GuardedHandler) -> bool:
    """aiohttp's own notion of an idle connection: its handler waits for the next request."""
    waiter = getattr(h, "_waiter", None)
    return waiter is not None and not waiter.done()


def _send_queue(h: GuardedHandler) -> int:
    """Bytes the kernel still holds for this connection's peer (0 if unknown)."""
    transport = h.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)  # == SIOCOUTQ on Linux
    except (OSError, ValueError):
        return 0
    return buf[0]


def note_progress(request: web.BaseRequest) -> None:
    """A body read outside aiohttp's parser made progress (the raw upload path)."""
    proto = request.protocol
    if isinstance(proto, GuardedHandler):
        proto.dd_rx = time.monotonic()


def request_started(request: web.BaseRequest) -> None:
    proto = request.protocol
    if isinstance(proto, GuardedHandler):
        proto.dd_busy += 1
        proto.dd_served += 1
        proto.dd_partial = False
        proto.dd_request = request
        proto.dd_task = asyncio.current_task()


def request_done(request: web.BaseRequest) -> None:
    proto = request.protocol
    if isinstance(proto, GuardedHandler):
        proto.dd_busy = max(0, proto.dd_busy - 1)
        if not proto.dd_busy:
            proto.dd_request = None  # dd_task stays: aiohttp sends the response (a sendfile) in that task
            proto.dd_since = time.monotonic()


_BUSY = (
    b'{"errors":[{"code":"TOOMANYREQUESTS","message":"too many connections; retry later","detail":null}]}'
)
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY
)


class _Busy(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY_RESPONSE)
        transport.close()


class _Refused(asyncio.Protocol):
    """At the cap with TLS: a 503 would need a handshake first, so the socket is closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class _Early(asyncio.Protocol):
    """Holds what TLS delivers between the end of the handshake and the handler taking over."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eof = False
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data.append(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        return True  # keep the transport open: the handler decides

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class TLSAccept(asyncio.Protocol):
    """A TCP connection in its TLS handshake: counted against the cap, then handed to a GuardedHandler."""

    def __init__(self, guard: ConnectionGuard, context: ssl.SSLContext, timeout: float) -> None:
        self.guard = guard
        self.context = context
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()  # the ClientHello is for the TLS layer, which start_tls adds
        self.guard.handshaking[self] = None
        self.task = asyncio.get_running_loop().create_task(self._upgrade(transport))

    def abort(self) -> None:
        self.guard.handshaking.pop(self, None)
        if self.task is not None:
            self.task.cancel()  # start_tls closes the transport when cancelled
        if self.transport is not None:
            self.transport.abort()

    async def _upgrade(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        early = _Early()
        try:
            tls = await loop.start_tls(raw, early, self.context, server_side=True, ssl_handshake_timeout=self.timeout)
        except OSError:  # a failed or timed-out handshake (ssl.SSLError, ConnectionAbortedError), a reset
            raw.abort()
            return
        finally:
            self.guard.handshaking.pop(self, None)
        if tls is None or early.lost:
            raw.abort()
            return
        server = self.guard.server
        handler = GuardedHandler(server, loop=server._loop, **server._kwargs)
        handler.connection_made(tls)
        tls.set_protocol(handler)
        for chunk in early.data:
            handler.data_received(chunk)
        if early.eof:
            handler.eof_received()


class ConnectionGuard:
    """The protocol factory for the listening socket, and the sweeper of stalled connections."""

    def __init__(self, server: web.Server, limits: Limits, cap: int, tls: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.limits = limits
        self.cap = cap
        self.tls = tls
        # oldest first. Like aiohttp's own list, counted from connection_made: one accept batch may
        # overshoot the cap before either sees it, which the descriptor budget (ACCEPT_BATCH) holds
        self.handshaking: dict[TLSAccept, None] = {}
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._task: asyncio.Task[None] | None = None

    def connections(self) -> list[GuardedHandler]:
        return [h for h in self.server._connections if isinstance(h, GuardedHandler)]

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server._connections) + len(self.handshaking) >= self.cap and not self._evict_one():
            self.refused += 1
            return _Busy() if self.tls is None else _Refused()
        if self.tls is not None:
            return TLSAccept(self, self.tls, self.limits.header_timeout)
        return GuardedHandler(self.server, loop=self.server._loop, **self.server._kwargs)

    def _evict_one(self) -> bool:
        idle = [h for h in self.connections() if not h.dd_busy and _waiting(h) and h.transport is not None]
        if idle:
            victim = min(idle, key=lambda h: h.dd_rx)
            victim.force_close()
            self.server._connections.pop(victim, None)
        elif self.handshaking:
            next(iter(self.handshaking)).abort()
        else:
            return False
        self.evicted += 1
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep_loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for pending in list(self.handshaking):
            pending.abort()

    async def _sweep_loop(self) -> None:
        lim = self.limits
        step = max(0.05, min(lim.header_timeout, lim.body_timeout, lim.idle_timeout) / 4, 0.0)
        step = min(step, 1.0)
        while True:
            await asyncio.sleep(step)
            self.sweep(time.monotonic())

    def sweep(self, now: float) -> int:
        lim = self.limits
        closed = 0
        for h in self.connections():
            if h.transport is None:
                continue
            if h.dd_busy or not _waiting(h):  # handling a request, or still sending its response
                h.dd_since = now  # the idle and header clocks start when the response is out
                req = h.dd_request
                stalled = now - h.dd_rx > lim.body_timeout
                if h.dd_busy and stalled and req is not None and not req.content.is_eof():
                    h.dd_abort()
                    closed += 1
                    continue
                # a response the client does not read: the send queue is full and does not move
                outq = _send_queue(h)
                if outq == 0 or outq != h.dd_outq:
                    h.dd_outq, h.dd_outq_since = outq, now
                elif now - h.dd_outq_since > lim.body_timeout:
                    h.dd_abort()
                    closed += 1
            elif h.dd_partial or not h.dd_served:
                if now - h.dd_since > lim.header_timeout:
                    h.force_close()
                    closed += 1
            elif now - h.dd_since > lim.idle_timeout:
                h.force_close()
                closed += 1
        self.timed_out += closed
        return closed


def describe(limits: Limits, cap: int) -> dict[str, Any]:
    return {
        "max_connections": cap,
        "header_timeout": limits.header_timeout,
        "body_timeout": limits.body_timeout,
        "idle_timeout": limits.idle_timeout,
    }
