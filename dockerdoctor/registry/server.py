"""Running `serve-registry`: sockets, worker processes, signals, access log, storage lock.

With `--workers N` (N > 1) the parent binds the listening socket once and forks N workers
that accept on it; SIGTERM or SIGINT to the parent is passed on to every worker, each of
which stops accepting, finishes the requests in flight (up to `shutdown_timeout`) and exits.
A worker that dies unexpectedly is started again.

A writable server holds a shared flock on `<root>/.dockerdoctor-serve.lock`, so that an
offline `registry gc` can tell it would race with a live server. A server that finds no other
holder removes the `.tmp-*` files a killed one left behind (others' are left alone unless an
hour old). Workers get SIGTERM from the kernel when the supervisor dies, even by SIGKILL.

Connections go through guard.ConnectionGuard (cap below the open-file limit, TLS handshakes
counted; header, body and idle timeouts).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import logging
import os
import signal
import socket
import ssl
import sys
import time
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from dockerdoctor.errors import DoctorError
from dockerdoctor.registry.app import Registry, Settings
from dockerdoctor.registry.guard import (
    ACCEPT_BATCH,
    LISTEN_BACKLOG,
    ConnectionGuard,
    Limits,
    connection_cap,
    raise_nofile,
)
from dockerdoctor.registry.s3_session import S3_POOL
from dockerdoctor.registry.storage import FilesystemDriver, StorageDriver
from dockerdoctor.registry.tls import certs_d_path

LOCK_NAME = ".dockerdoctor-serve.lock"
PR_SET_PDEATHSIG = 1
TMP_GRACE = 3600.0  # seconds: another live server's `.tmp-*` files are younger than this


@dataclass
class ServeConfig:
    root: str
    host: str = "0.0.0.0"
    port: int = 5000
    workers: int = 1
    ssl_context: ssl.SSLContext | None = None
    settings: Settings = field(default_factory=Settings)
    access_log: str | None = "-"  # "-" = stderr, None = off, else a file path
    shutdown_timeout: float = 10.0
    fsync: bool = False
    self_signed: tuple[str, list[str]] | None = None  # (CA file, names) to tell clients about
    limits: Limits = field(default_factory=Limits)
    warnings: list[str] = field(default_factory=list)  # printed at start
    # asyncio | uvloop | auto (uvloop if installed). Measured on the 2-core VM under load 6-7 (bench/registry/
    # tls_bench.py): uvloop gave no clear TLS gain and a slower push, so the default stays asyncio.
    event_loop: str = os.environ.get("DDREG_EVENT_LOOP", "asyncio")
    s3: Any = None  # s3.S3Options: store in a bucket instead of `root`


def make_driver(cfg: ServeConfig) -> StorageDriver:
    if cfg.s3 is not None:
        from dockerdoctor.registry.s3 import S3Driver, S3Unavailable

        try:
            return S3Driver(cfg.s3)
        except (S3Unavailable, ValueError) as e:
            raise ServeError(str(e)) from None
    return FilesystemDriver(cfg.root, fsync=cfg.fsync)


class ServeError(DoctorError):
    """The server cannot start (port taken, root not writable, ...)."""


def take_lock(root: str) -> IO[str]:
    path = os.path.join(root, LOCK_NAME)
    f = open(path, "a+")  # noqa: SIM115 - held for the life of the server
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (Linux); exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() != parent:
        os._exit(0)


def storage_in_use(root: str) -> bool:
    """True if a writable serve-registry holds this root."""
    path = os.path.join(root, LOCK_NAME)
    if not os.path.exists(path):
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class AccessLog(AbstractAccessLogger):
    """One line per request, written with a single os.write (whole lines even with several workers).

    Format: `2026-11-27T23:28:05Z 127.0.0.1 "GET /v2/ HTTP/1.1" 200 2 0.000576 "curl/7.88.1"`
    (UTC time, client, request line, status, bytes sent, seconds, User-Agent). Cheaper than the
    logging module, which halves the request rate of small manifest GETs.
    """

    fd: int = 2
    _second = -1
    _stamp = ""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        now = int(_time.time())
        if now != AccessLog._second:
            AccessLog._second = now
            AccessLog._stamp = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(now))
        agent = request.headers.get("User-Agent", "-").replace('"', "'")
        version = f"{request.version.major}.{request.version.minor}"
        line = (
            f'{AccessLog._stamp} {request.remote} "{request.method} {request.path_qs} HTTP/{version}" '
            f'{response.status} {response.body_length} {time:.6f} "{agent}"\n'
        )
        try:
            os.write(AccessLog.fd, line.encode("utf-8", "replace"))
        except OSError:  # a full disk must not take requests down
            pass


def _access_logger(target: str | None) -> logging.Logger | None:
    """Point AccessLog at stderr or a file; None turns the access log off."""
    if target is None:
        return None
    if target == "-":
        AccessLog.fd = 2
    else:
        AccessLog.fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return logging.getLogger("dockerdoctor.registry.access")


async def _serve_async(cfg: ServeConfig, sock: socket.socket, purge: bool) -> None:
    driver = make_driver(cfg)
    settings = cfg.settings
    if not purge:  # one worker (index 0) purges uploads and sweeps temporaries
        settings.purge = False
        settings.sweep_before = None
    registry = Registry(driver, settings)
    app = registry.app()
    access = _access_logger(cfg.access_log)
    lim = cfg.limits
    runner = web.AppRunner(
        app,
        access_log=access,
        access_log_class=AccessLog,
        handle_signals=False,
        shutdown_timeout=cfg.shutdown_timeout,
        keepalive_timeout=lim.idle_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    # TLS is started by the guard (start_tls), so a connection counts from its accept, handshake included
    guard = ConnectionGuard(runner.server, lim, lim.max_connections, tls=cfg.ssl_context)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(guard, sock=sock, backlog=ACCEPT_BATCH)
    sock.listen(LISTEN_BACKLOG)  # the kernel's queue stays long; asyncio's accept batch stays short
    guard.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Graceful stop: no new connections, let requests in flight (an upload, say) finish, then close.
    listener.close()
    guard.stop()
    await registry.drain(cfg.shutdown_timeout)
    await runner.cleanup()


def _event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop for a worker: None = asyncio's own; uvloop when asked for (or installed, with `auto`)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        if choice == "uvloop":
            raise ServeError("DDREG_EVENT_LOOP=uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def _run_worker(cfg: ServeConfig, sock: socket.socket, purge: bool) -> None:
    factory = _event_loop_factory(cfg.event_loop)
    if factory is None:
        asyncio.run(_serve_async(cfg, sock, purge))
        return
    loop = factory()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(_serve_async(cfg, sock, purge))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _log_to_stderr() -> None:
    """The registry's own messages (purges, sweeps, storage errors) go to stderr at the logger's level
    (WARNING unless config.yml's log.level says otherwise); without a handler, logging's last resort
    would print WARNING and above only, so `log.level: info` showed nothing more."""
    logger = logging.getLogger("dockerdoctor.registry")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("serve-registry: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def serve(cfg: ServeConfig, announce: IO[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT. Returns the exit status."""
    lock = None
    _log_to_stderr()
    if cfg.s3 is not None:
        from dockerdoctor.registry.s3 import S3Driver

        probe = make_driver(cfg)
        assert isinstance(probe, S3Driver)
        try:
            probe.ready()
        except OSError as e:
            raise ServeError(f"cannot use storage {cfg.s3.describe()}: {e}") from None
        finally:
            probe.close()
        # replicas share the bucket: only multipart uploads an hour old with no session are swept
        cfg.settings.sweep_before = None if cfg.settings.read_only else time.time() - TMP_GRACE
        where = cfg.s3.describe()
    else:
        fs = FilesystemDriver(cfg.root, fsync=cfg.fsync)
        try:
            fs.ensure()
        except OSError as e:
            raise ServeError(f"cannot use storage root {cfg.root}: {e.strerror}") from None
        sweep_before = None
        if not cfg.settings.read_only:
            alone = not storage_in_use(fs.root)
            sweep_before = time.time() - (0 if alone else TMP_GRACE)
        cfg.settings.sweep_before = sweep_before
        lock = None if cfg.settings.read_only else take_lock(fs.root)
        where = fs.root
    soft = raise_nofile()
    cfg.limits.max_connections = connection_cap(cfg.limits.max_connections, soft, S3_POOL if cfg.s3 else 0)
    sock = bind(cfg.host, cfg.port)
    port = sock.getsockname()[1]
    scheme = "https" if cfg.ssl_context else "http"
    out = announce or sys.stderr
    mode = []
    if cfg.settings.read_only:
        mode.append("read-only")
    if not cfg.settings.allow_delete:
        mode.append("no-delete")
    if cfg.settings.htpasswd:
        mode.append("htpasswd auth")
    extra = f" ({', '.join(mode)})" if mode else ""
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(
        f"serve-registry: listening on {scheme}://{shown}:{port}, storage {where}, "
        f"{cfg.workers} worker(s){extra}",
        file=out,
        flush=True,
    )
    lim = cfg.limits
    print(
        f"serve-registry: at most {lim.max_connections} connections per worker (open-file limit {soft}); "
        f"timeouts: request head {lim.header_timeout:g}s, stalled body {lim.body_timeout:g}s, "
        f"idle {lim.idle_timeout:g}s",
        file=out,
        flush=True,
    )
    warnings = list(cfg.warnings)
    if cfg.settings.htpasswd and not cfg.ssl_context:
        warnings.append(
            "Basic auth over plain HTTP sends every password in clear text on each request; "
            "serve TLS (--tls-cert/--tls-key or --tls-self-signed) or put a TLS proxy in front"
        )
    for w in warnings:
        print(f"serve-registry: warning: {w}", file=out, flush=True)
    if cfg.self_signed:
        ca, names = cfg.self_signed
        paths = [certs_d_path(n, port) for n in names]
        print(f"serve-registry: TLS with a self-signed CA: {ca}", file=out)
        print("  Each docker client needs that CA at exactly this path (one per name it uses):", file=out)
        for path in paths:
            print(f"    {path}", file=out)
        print(f"  e.g. mkdir -p {os.path.dirname(paths[0])} && cp {ca} {paths[0]}", file=out)
        print("  (podman and skopeo also read /etc/containers/certs.d/HOST:PORT/ca.crt)", file=out, flush=True)
    try:
        if cfg.workers <= 1:
            _run_worker(cfg, sock, purge=True)
            return 0
        return _supervise(cfg, sock)
    finally:
        sock.close()
        if lock is not None:
            lock.close()


def _supervise(cfg: ServeConfig, sock: socket.socket) -> int:
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    parent = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                _die_with_parent(parent)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _run_worker(cfg, sock, purge=index == 0)
            except BaseException:  # pragma: no cover - reported by the parent
                logging.getLogger("dockerdoctor.registry").exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(cfg.workers):
        spawn(i)
    status = 0
    recent: list[float] = []
    while children:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        if not stopping:
            code = os.waitstatus_to_exitcode(raw)
            print(f"serve-registry: worker {index} (pid {pid}) exited with {code}; restarting", file=sys.stderr)
            now = time.monotonic()
            recent = [t for t in recent if now - t < 10] + [now]
            if len(recent) > 5 * cfg.workers:
                print("serve-registry: workers keep dying; stopping", file=sys.stderr)
                on_signal(signal.SIGTERM, None)
                status = 1
                continue
            spawn(index)
    return status
