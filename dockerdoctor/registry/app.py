"""The HTTP side of `serve-registry`: OCI distribution-spec v1.1 on aiohttp.

One catch-all route parses `/v2/<name>/...` itself, because repository names contain
slashes. The resources live in their own modules, combined here into `Registry`:
blobs (GET/HEAD/DELETE), uploads (POST/PATCH/PUT/DELETE), manifests, and discovery
(catalog, tags, referrers). This module keeps the plumbing: start-up, the upload purge,
authentication (guard.AuthGuard), errors, and routing. `/livez` and `/readyz` answer
load balancers without authentication.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.blobs import BlobsMixin
from dockerdoctor.registry.common import (  # noqa: F401 - re-exported for callers of the old single module
    CLOSE_KEY,
    MAX_MANIFEST,
    RegistryError,
    Settings,
    error_response,
)
from dockerdoctor.registry.guard import AuthGuard, request_done, request_started
from dockerdoctor.registry.manifest_doc import ManifestInfo, describe_manifest  # noqa: F401
from dockerdoctor.registry.manifest_doc import stored_media_type as _stored_media_type  # noqa: F401
from dockerdoctor.registry.manifests import ManifestsMixin
from dockerdoctor.registry.storage import StorageDriver
from dockerdoctor.registry.uploads import UploadsMixin

log = logging.getLogger("dockerdoctor.registry")

MANIFEST_CACHE = 32 * 1024 * 1024  # bytes of parsed manifests kept per process
READY_TIMEOUT = 5.0  # seconds /readyz waits for storage


def _storage_message(e: OSError) -> str:
    """What a client is told of a storage OSError: the errno's text only, never a path, bucket or URL."""
    return f"storage error: {e.strerror}" if e.strerror else "storage error"


_PATTERNS = [
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
]


@web.middleware
async def _track(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request (404s and health checks too) tells the connection guard it is in a request."""
    request_started(request)
    try:
        return await handler(request)
    finally:
        request_done(request)


class Registry(UploadsMixin, BlobsMixin, ManifestsMixin):
    """Request handling on top of a StorageDriver."""

    def __init__(self, driver: StorageDriver, settings: Settings | None = None) -> None:
        self.driver = driver
        self.s = settings or Settings()
        # On S3 the threads only wait for the event loop (tag walks, purges): more of them cost little.
        self.executor = ThreadPoolExecutor(max_workers=4 if driver.local else 16, thread_name_prefix="ddreg-io")
        self.walk_executor = ThreadPoolExecutor(max_workers=2 if driver.local else 8, thread_name_prefix="ddreg-walk")
        self.manifests = collections.OrderedDict()
        self.manifest_bytes = 0
        self.manifest_cache_limit = MANIFEST_CACHE
        self.hashers = {}
        self.upload_locks = {}
        self.auth = (
            AuthGuard(self.s.htpasswd, self.s.realm, self.s.auth_threads, self.s.auth_failures, self.s.auth_window)
            if self.s.htpasswd is not None
            else None
        )
        self.in_flight = 0
        self._purge_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ plumbing
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MANIFEST, middlewares=[_track])
        app.router.add_route("*", "/v2", self.handle)
        app.router.add_route("*", "/v2/{tail:.*}", self.handle)
        app.router.add_get("/livez", self.livez)
        app.router.add_get("/readyz", self.readyz)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def livez(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """Ready = storage answers within READY_TIMEOUT (a hung NFS mount or bucket is not ready)."""
        try:
            await asyncio.wait_for(self.sto("ready"), READY_TIMEOUT)
        except asyncio.TimeoutError:
            return web.json_response({"status": "storage does not answer"}, status=503)
        except OSError as e:  # the details (bucket, endpoint, path) go to the log, not to anonymous probes
            log.error("readyz: storage error: %s", e)
            return web.json_response({"status": _storage_message(e)}, status=503)
        return web.json_response({"status": "ok"})

    async def _on_startup(self, app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        bind = getattr(self.driver, "bind_loop", None)
        if bind is not None:  # S3: its calls run on this loop
            bind(loop)
        if self.s.sweep_before is not None and not self.s.read_only:
            self._sweep_task = loop.create_task(self._sweep_temporaries(self.s.sweep_before))
        if self.s.purge and not self.s.read_only:
            self._purge_task = loop.create_task(self._purge_loop())

    async def _sweep_temporaries(self, before: float) -> None:
        try:
            removed = await self.walk(self.driver.sweep_temporaries, before)
            if removed:
                log.warning("removed %d temporary file(s) left by an interrupted write", removed)
        except OSError as e:  # pragma: no cover
            log.error("cannot sweep temporary files: %s", e)

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
        if self.auth is not None:
            self.auth.close()
        # S3 threads wait for this loop: waiting for them here would hang
        self.executor.shutdown(wait=self.driver.local)
        self.walk_executor.shutdown(wait=self.driver.local)
        aclose = getattr(self.driver, "aclose", None)
        if aclose is not None:
            await aclose()

    async def _purge_loop(self) -> None:
        while True:
            try:
                removed = await self.walk(self.purge_uploads)
                if removed:
                    log.info("purged %d stale upload session(s)", removed)
            except Exception:  # pragma: no cover - keep the server up whatever the disk says
                log.exception("upload purge failed")
            await asyncio.sleep(self.s.purge_interval)

    def purge_uploads(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        for up in list(self.driver.iter_uploads()):
            # stale = started long ago and not written to for as long (a slow upload is not stale)
            if now - max(up.started, up.modified) > self.s.upload_max_age:
                if self.driver.delete_upload(up.name, up.upload_id):
                    removed += 1
                self.hashers.pop(up.upload_id, None)
        return removed

    async def _check_auth(self, request: web.Request) -> None:
        if self.auth is not None:
            await self.auth.check(request.headers.get("Authorization", ""), request.remote or "-")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.idle.clear()
        try:
            try:
                await self._check_auth(request)
                resp = await self._dispatch(request)
            except RegistryError as e:
                resp = error_response(e)
            except OSError as e:
                # Storage trouble (permission denied, disk full, ...): say so, in the spec's error shape.
                log.error("storage error on %s %s: %s", request.method, request.path, e)
                resp = error_response(RegistryError("UNKNOWN", _storage_message(e), status=500))
            except self.driver.storage_errors as e:  # an object store's own errors (S3: botocore's)
                # their text names the endpoint, bucket and key: the log gets it, the client does not
                log.error("storage error on %s %s: %s", request.method, request.path, e)
                resp = error_response(RegistryError("UNKNOWN", "storage error", status=500))
            resp.headers["Docker-Distribution-API-Version"] = "registry/2.0"
            for name, value in self.s.headers.items():
                resp.headers.setdefault(name, value)
            if request.get(CLOSE_KEY):
                resp.force_close()  # the body was read past aiohttp's parser: no keep-alive
            return resp
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until no request is being handled (for a graceful stop); False on timeout."""
        await asyncio.sleep(0.05)  # let handlers for requests that already arrived start first
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        tail = request.match_info.get("tail", "")
        if tail == "":
            if method in ("GET", "HEAD"):
                return web.json_response({})
            raise RegistryError("UNSUPPORTED", "method not allowed")
        if tail == "_catalog":
            if method not in ("GET", "HEAD"):
                raise RegistryError("UNSUPPORTED", "method not allowed")
            return await self.catalog(request)
        for kind, pattern in _PATTERNS:
            m = pattern.fullmatch(tail)
            if m is None:
                continue
            name = m.group("name")
            if not dg.valid_name(name):
                raise RegistryError("NAME_INVALID", "invalid repository name", {"name": name})
            if method in ("POST", "PUT", "PATCH", "DELETE") and self.s.read_only:
                raise RegistryError("UNSUPPORTED", "the registry is in read-only mode")
            handler = self._route(kind, method)
            if handler is None:
                raise RegistryError("UNSUPPORTED", f"{method} is not supported here")
            return await handler(request, **m.groupdict())
        raise RegistryError("UNSUPPORTED", "unknown endpoint", {"path": request.path}, status=404)

    def _route(self, kind: str, method: str) -> Callable[..., Awaitable[web.StreamResponse]] | None:
        return self._routes.get((kind, method))

    def _build_routes(self) -> dict[tuple[str, str], Callable[..., Awaitable[web.StreamResponse]]]:
        return {
            ("tags", "GET"): self.tags_list,
            ("tags", "HEAD"): self.tags_list,
            ("manifest", "GET"): self.get_manifest,
            ("manifest", "HEAD"): self.get_manifest,
            ("manifest", "PUT"): self.put_manifest,
            ("manifest", "DELETE"): self.delete_manifest,
            ("blob", "GET"): self.get_blob,
            ("blob", "HEAD"): self.get_blob,
            ("blob", "DELETE"): self.delete_blob,
            ("upload", "POST"): self.start_upload,
            ("upload", "GET"): self.upload_status,
            ("upload", "PATCH"): self.patch_upload,
            ("upload", "PUT"): self.finish_upload,
            ("upload", "DELETE"): self.cancel_upload,
            ("referrers", "GET"): self.referrers,
            ("referrers", "HEAD"): self.referrers,
        }
