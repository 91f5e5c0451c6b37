"""The HTTP side of `serve-registry`: OCI distribution-spec v1.1 on aiohttp.

One catch-all route parses `/v2/<name>/...` itself, because repository names contain
slashes. Blobs are sent with sendfile (aiohttp's FileResponse); uploads stream to disk in
bounded buffers while a worker thread hashes and writes the previous buffer.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.auth import Htpasswd
from dockerdoctor.registry.storage import StorageDriver

log = logging.getLogger("dockerdoctor.registry")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST = 4 * 1024 * 1024
MANIFEST_CACHE = 32 * 1024 * 1024  # bytes of parsed manifests kept per process
BUFFER = 1 << 20  # bytes handed to the hash/write thread at a time
RAW_BUFFER = 1 << 20  # each of the two receive buffers of the raw upload path
RAW_MIN = 1 << 20  # bodies at least this big (with Content-Length) skip aiohttp's parser
RAW_UPLOADS = os.environ.get("DDREG_RAW_UPLOADS", "1") != "0"

# request storage key: "close the connection after this response" (typed key on aiohttp >= 3.12)
_CLOSE_KEY: Any = web.RequestKey("ddreg_close", bool) if hasattr(web, "RequestKey") else "ddreg_close"

STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "PAGINATION_NUMBER_INVALID": 400,
}


class RegistryError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or STATUS[code]
        self.headers = headers or {}


def error_response(err: RegistryError) -> web.Response:
    body = {"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **err.headers}
    return web.json_response(body, status=err.status, headers=headers)


@dataclass
class ManifestInfo:
    """What we learn once from a manifest's bytes (immutable, so cached by digest)."""

    data: bytes
    media_type: str
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    refs: list[str] = field(default_factory=list)  # blobs and child manifests it needs


@dataclass
class Settings:
    read_only: bool = False
    allow_delete: bool = True
    max_upload: int | None = None  # bytes per blob
    upload_max_age: float = 24 * 3600.0
    purge_interval: float = 3600.0
    purge: bool = True
    htpasswd: Htpasswd | None = None
    realm: str = "dockerdoctor"


_PATTERNS = [
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]*)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<digest>[^/]+)")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<digest>[^/]+)")),
]


def describe_manifest(data: bytes, content_type: str | None) -> ManifestInfo:
    """Parse and validate manifest bytes; raise MANIFEST_INVALID with the reason."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "not a JSON object")
    body_type = doc.get("mediaType")
    ct = (content_type or "").split(";")[0].strip()
    if ct in ("", "application/octet-stream", "application/json"):
        ct = ""
    if body_type is not None and not isinstance(body_type, str):
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "mediaType is not a string")
    if ct and body_type and ct != body_type:
        raise RegistryError(
            "MANIFEST_INVALID", "manifest invalid", f"Content-Type {ct} differs from mediaType {body_type}"
        )
    media_type = ct or body_type or ""
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "schema1 manifests are not supported")
    info = ManifestInfo(data=data, media_type=media_type)

    def descriptor(d: Any, where: str) -> str:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"{where}: not a descriptor")
        try:
            dg.parse_digest(d["digest"])
        except dg.InvalidDigest as e:
            raise RegistryError("DIGEST_INVALID", "invalid digest in manifest", {"digest": d["digest"]}) from e
        size = d.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"{where}: bad size")
        return str(d["digest"])

    if media_type in IMAGE_TYPES or media_type in INDEX_TYPES:
        if doc.get("schemaVersion") != 2:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "schemaVersion must be 2")
    if media_type in IMAGE_TYPES:
        if "config" not in doc:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "missing config")
        info.refs.append(descriptor(doc["config"], "config"))
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "layers is not a list")
        for i, layer in enumerate(layers):
            d = descriptor(layer, f"layers[{i}]")
            if not layer.get("urls"):  # foreign layers live elsewhere
                info.refs.append(d)
        cfg_type = doc["config"].get("mediaType")
        info.artifact_type = doc.get("artifactType") or cfg_type
    elif media_type in INDEX_TYPES:
        children = doc.get("manifests", [])
        if not isinstance(children, list):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "manifests is not a list")
        for i, child in enumerate(children):
            info.refs.append(descriptor(child, f"manifests[{i}]"))
        info.artifact_type = doc.get("artifactType")
    else:
        info.artifact_type = doc.get("artifactType")
    if "subject" in doc and doc["subject"] is not None:
        info.subject = descriptor(doc["subject"], "subject")
    ann = doc.get("annotations")
    if isinstance(ann, dict):
        info.annotations = ann
    return info


def _stored_media_type(data: bytes) -> str:
    """Media type of stored bytes we would not accept today (say, schema1 that registry:2 kept)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "application/octet-stream"
    if not isinstance(doc, dict):
        return "application/octet-stream"
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[1] if "signatures" in doc else DOCKER_SCHEMA1[0]
    media_type = doc.get("mediaType")
    return media_type if isinstance(media_type, str) and media_type else OCI_MANIFEST


def _parse_int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid {what}", {what: value})
    return int(value)


def _hash_and_write(fd: int, hasher: Any, chunks: list[Any]) -> None:
    """Hash and append a batch of received chunks (runs in a worker thread; both release the GIL)."""
    for chunk in chunks:
        hasher.update(chunk)
    while chunks:
        batch = chunks[:512]
        written = os.writev(fd, batch)
        total = sum(len(c) for c in batch)
        if written == total:
            del chunks[:512]
            continue
        # short write: drop what went out, keep the rest of the first partial chunk
        rest: list[Any] = []
        for c in batch:
            if written >= len(c):
                written -= len(c)
            else:
                rest.append(c[written:])
                written = 0
        chunks[:512] = rest


def _hash_file(path: str, alg: str, limit: int | None = None) -> Any:
    h = hashlib.new(alg)
    with open(path, "rb", buffering=0) as f:
        remaining = limit
        while True:
            want = BUFFER if remaining is None else min(BUFFER, remaining)
            if want == 0:
                break
            chunk = f.read(want)
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h


class Registry:
    """Request handling on top of a StorageDriver."""

    def __init__(self, driver: StorageDriver, settings: Settings | None = None) -> None:
        self.driver = driver
        self.s = settings or Settings()
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ddreg-io")
        self.manifests: collections.OrderedDict[str, ManifestInfo] = collections.OrderedDict()
        self.manifest_bytes = 0
        self.hashers: dict[str, tuple[int, Any]] = {}  # upload id -> (offset, sha256 state)
        self.upload_locks: dict[str, asyncio.Lock] = {}
        self.auth_cache: dict[str, bool] = {}
        self.in_flight = 0
        self._purge_task: asyncio.Task[None] | None = None
        self.idle = asyncio.Event()
        self.idle.set()
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ plumbing
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MANIFEST)
        app.router.add_route("*", "/v2", self.handle)
        app.router.add_route("*", "/v2/{tail:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        if self.s.purge and not self.s.read_only:
            self._purge_task = asyncio.get_running_loop().create_task(self._purge_loop())

    async def _on_cleanup(self, app: web.Application) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
        self.executor.shutdown(wait=True)

    async def _purge_loop(self) -> None:
        while True:
            try:
                removed = await asyncio.get_running_loop().run_in_executor(self.executor, self.purge_uploads)
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
                self.upload_locks.pop(up.upload_id, None)
        return removed

    async def _check_auth(self, request: web.Request) -> None:
        ht = self.s.htpasswd
        if ht is None:
            return
        header = request.headers.get("Authorization", "")
        ok = False
        if header[:6].lower() == "basic ":
            token = header[6:].strip()
            cached = self.auth_cache.get(token)
            if cached is None:
                try:
                    user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
                    # bcrypt is slow on purpose: keep it off the event loop
                    loop = asyncio.get_running_loop()
                    cached = await loop.run_in_executor(self.executor, ht.check, user, password)
                except (ValueError, UnicodeDecodeError):
                    cached = False
                if len(self.auth_cache) > 1000:
                    self.auth_cache.clear()
                self.auth_cache[token] = cached
            ok = cached
        if not ok:
            raise RegistryError(
                "UNAUTHORIZED",
                "authentication required",
                headers={"WWW-Authenticate": f'Basic realm="{self.s.realm}"'},
            )

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
                reason = e.strerror or str(e)
                resp = error_response(RegistryError("UNKNOWN", f"storage error: {reason}", status=500))
            resp.headers["Docker-Distribution-API-Version"] = "registry/2.0"
            if request.get(_CLOSE_KEY):
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

    def _digest(self, value: str) -> str:
        try:
            dg.parse_digest(value)
        except dg.InvalidDigest as e:
            raise RegistryError("DIGEST_INVALID", "invalid digest", {"digest": value, "reason": str(e)}) from e
        return value

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _paginate(items: list[str], request: web.Request, base: str) -> tuple[list[str], dict[str, str]]:
        n = _parse_int(request.query.get("n"), "n")
        last = request.query.get("last")
        if last:
            items = [i for i in items if i > last]
        headers: dict[str, str] = {}
        if n is not None:
            page = items[:n]
            if len(items) > n and page:
                headers["Link"] = f'<{base}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
            items = page
        return items, headers

    async def tags_list(self, request: web.Request, name: str) -> web.StreamResponse:
        if not self.driver.repo_exists(name):
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry", {"name": name})
        tags, headers = self._paginate(self.driver.list_tags(name), request, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        repos = await loop.run_in_executor(self.executor, self.driver.list_repos)
        repos, headers = self._paginate(repos, request, "/v2/_catalog")
        return web.json_response({"repositories": repos}, headers=headers)

    async def referrers(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        self._digest(digest)
        wanted = request.query.get("artifactType")
        result = []
        if self.driver.repo_exists(name):
            for rev in list(self.driver.iter_revisions(name)):
                info = self._manifest_info(rev)
                if info is None or info.subject != digest:
                    continue
                if wanted and info.artifact_type != wanted:
                    continue
                desc: dict[str, Any] = {"mediaType": info.media_type, "digest": rev, "size": len(info.data)}
                if info.artifact_type:
                    desc["artifactType"] = info.artifact_type
                if info.annotations:
                    desc["annotations"] = info.annotations
                result.append(desc)
        headers = {"Content-Type": OCI_INDEX}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": result}).encode()
        return web.Response(body=body, headers=headers)

    # ------------------------------------------------------------------ manifests
    def _manifest_info(self, digest: str) -> ManifestInfo | None:
        info = self.manifests.get(digest)
        if info is not None:
            self.manifests.move_to_end(digest)
            return info
        data = self.driver.read_blob(digest)
        if data is None:
            return None
        try:
            info = describe_manifest(data, None)
        except RegistryError:
            info = ManifestInfo(data=data, media_type=_stored_media_type(data))
        self._cache_manifest(digest, info)
        return info

    def _cache_manifest(self, digest: str, info: ManifestInfo) -> None:
        """Keep parsed manifests (immutable by digest) up to MANIFEST_CACHE bytes, least recently used out."""
        if digest in self.manifests:
            return
        self.manifests[digest] = info
        self.manifest_bytes += len(info.data)
        while self.manifest_bytes > MANIFEST_CACHE and len(self.manifests) > 1:
            _, old = self.manifests.popitem(last=False)
            self.manifest_bytes -= len(old.data)

    def _resolve(self, name: str, ref: str) -> str:
        if dg.looks_like_digest(ref):
            digest = self._digest(ref)
            if self.driver.has_revision(name, digest):
                return digest
        else:
            if not dg.valid_tag(ref):
                raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": ref}, status=400)
            digest = self.driver.get_tag(name, ref) or ""
            if digest:
                return digest
        raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref})

    async def get_manifest(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        digest = self._resolve(name, ref)
        info = self._manifest_info(digest)
        if info is None:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref})
        headers = {
            "Docker-Content-Digest": digest,
            "Content-Type": info.media_type,
            "ETag": f'"{digest}"',
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(info.data))
            return web.Response(headers=headers)
        return web.Response(body=info.data, headers=headers)

    async def put_manifest(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_MANIFEST:
            raise RegistryError("MANIFEST_INVALID", "manifest too large", {"limit": MAX_MANIFEST}, status=413)
        parts: list[bytes] = []
        total = 0
        async for chunk in request.content.iter_any():
            parts.append(chunk)
            total += len(chunk)
            if total > MAX_MANIFEST:
                break
        data = b"".join(parts)
        if len(data) > MAX_MANIFEST:
            raise RegistryError("MANIFEST_INVALID", "manifest too large", {"limit": MAX_MANIFEST}, status=413)
        info = describe_manifest(data, request.headers.get("Content-Type"))
        tags: list[str] = []
        if dg.looks_like_digest(ref):
            alg, _ = dg.parse_digest(self._digest(ref))
            digest = dg.digest_of(data, alg)
            if digest != ref:
                raise RegistryError("DIGEST_INVALID", "manifest digest does not match", {"digest": ref})
            # `?tag=a&tag=b` on a push by digest (newer distribution-spec drafts): tag it in one go
            tags = request.query.getall("tag", [])
            for t in tags:
                if not dg.valid_tag(t):
                    raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": t})
        else:
            if not dg.valid_tag(ref):
                raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": ref})
            tags = [ref]
            digest = dg.digest_of(data)
        for needed in info.refs:
            if info.media_type in INDEX_TYPES:
                present = self.driver.has_revision(name, needed)
            else:
                present = self.driver.has_layer(name, needed)
            if not present:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", {"digest": needed})
        loop = asyncio.get_running_loop()

        def store() -> None:
            self.driver.write_blob(digest, data)
            self.driver.link_revision(name, digest)
            for t in tags:
                self.driver.set_tag(name, t, digest)

        await loop.run_in_executor(self.executor, store)
        self._cache_manifest(digest, info)
        headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if info.subject:
            headers["OCI-Subject"] = info.subject
        if tags and dg.looks_like_digest(ref):
            headers["OCI-Tag"] = ", ".join(tags)
        return web.Response(status=201, headers=headers)

    async def delete_manifest(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        if not self.s.allow_delete:
            raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry (--no-delete)")
        if dg.looks_like_digest(ref):
            digest = self._digest(ref)
            if not self.driver.has_revision(name, digest):
                raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref})
            for tag in self.driver.list_tags(name):
                if self.driver.get_tag(name, tag) == digest:
                    self.driver.delete_tag(name, tag)
            self.driver.unlink_revision(name, digest)
        else:
            if not dg.valid_tag(ref) or not self.driver.delete_tag(name, ref):
                raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref})
        return web.Response(status=202)

    # ------------------------------------------------------------------ blobs
    async def get_blob(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        self._digest(digest)
        linked = self.driver.has_layer(name, digest) or self.driver.has_revision(name, digest)
        size = self.driver.blob_size(digest) if linked else None
        if size is None:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        headers = {
            "Docker-Content-Digest": digest,
            "Content-Type": "application/octet-stream",
            "ETag": f'"{digest}"',
            "Cache-Control": "max-age=31536000",
        }
        if request.method == "HEAD":
            headers["Content-Length"] = str(size)
            headers["Accept-Ranges"] = "bytes"
            return web.Response(headers=headers)
        path = self.driver.blob_path(digest)
        if path is not None:  # local file: sendfile, with Range support
            return web.FileResponse(path, chunk_size=1 << 20, headers=headers)
        return await self._stream_blob(request, digest, size, headers)

    async def _stream_blob(
        self, request: web.Request, digest: str, size: int, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Send a blob that is not a local file (a driver without blob_path), whole, in chunks."""
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(self.executor, self.driver.open_blob, digest)
        if f is None:
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        try:
            resp = web.StreamResponse(headers=headers)
            resp.content_length = size
            await resp.prepare(request)
            while True:
                chunk = await loop.run_in_executor(self.executor, f.read, BUFFER)
                if not chunk:
                    break
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            f.close()

    async def delete_blob(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        if not self.s.allow_delete:
            raise RegistryError("UNSUPPORTED", "deletes are disabled on this registry (--no-delete)")
        self._digest(digest)
        if not self.driver.unlink_layer(name, digest):
            raise RegistryError("BLOB_UNKNOWN", "blob unknown to registry", {"digest": digest})
        return web.Response(status=202, headers={"Docker-Content-Digest": digest})

    # ------------------------------------------------------------------ uploads
    def _upload_headers(self, name: str, upload_id: str, size: int) -> dict[str, str]:
        return {
            "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    def _session(self, name: str, upload_id: str) -> int:
        if not dg.valid_upload_id(upload_id):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id})
        size = self.driver.upload_size(name, upload_id)
        if size is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id})
        return size

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self.upload_locks.get(upload_id)
        if lock is None:
            lock = self.upload_locks[upload_id] = asyncio.Lock()
        return lock

    async def start_upload(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        if uuid:
            raise RegistryError("UNSUPPORTED", "POST goes to /blobs/uploads/")
        q = request.query
        mount = q.get("mount")
        if mount:
            mount = self._digest(mount)
            source = q.get("from")
            if source is not None and not dg.valid_name(source):
                raise RegistryError("NAME_INVALID", "invalid repository name", {"name": source})
            can = self.driver.blob_size(mount) is not None and (source is None or self.driver.has_layer(source, mount))
            if can:
                self.driver.link_layer(name, mount)
                return web.Response(
                    status=201,
                    headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
                )
        loop = asyncio.get_running_loop()
        upload_id = await loop.run_in_executor(self.executor, self.driver.new_upload, name)
        digest = q.get("digest")
        if digest and not mount:
            try:
                return await self._complete(request, name, upload_id, digest, size=0)
            except BaseException:
                self.driver.delete_upload(name, upload_id)
                self.hashers.pop(upload_id, None)
                raise
        return web.Response(status=202, headers=self._upload_headers(name, upload_id, 0))

    async def upload_status(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        size = self._session(name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid, size))

    @staticmethod
    def _content_range(value: str | None) -> tuple[int, int] | None:
        if not value:
            return None
        m = re.fullmatch(r"\s*(?:bytes[ =])?\s*(\d+)-(\d+)(?:/(?:\d+|\*))?\s*", value)
        if m is None:
            raise RegistryError("BLOB_UPLOAD_INVALID", "invalid Content-Range", {"Content-Range": value}, status=416)
        return int(m.group(1)), int(m.group(2))

    async def _hasher_for(self, name: str, upload_id: str, size: int) -> Any:
        cached = self.hashers.get(upload_id)
        if cached is not None and cached[0] == size:
            return cached[1]
        # Another worker appended, or we restarted: rebuild the state from the bytes on disk.
        path = self.driver.upload_data_path(name, upload_id)
        return await asyncio.get_running_loop().run_in_executor(self.executor, _hash_file, path, "sha256", size)

    async def _receive(self, request: web.Request, name: str, upload_id: str, size: int) -> int:
        """Append the request body to the upload; returns the new size. Keeps the hash state."""
        limit = self.s.max_upload
        if limit is not None and request.content_length is not None and size + request.content_length > limit:
            raise RegistryError("SIZE_INVALID", "blob exceeds the upload size limit", {"limit": limit}, status=413)
        hasher = await self._hasher_for(name, upload_id, size)
        loop = asyncio.get_running_loop()
        try:
            fd = os.open(self.driver.upload_data_path(name, upload_id), os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id}) from None
        try:
            # Another worker process may be appending to this session: one writer at a time.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RegistryError(
                "BLOB_UPLOAD_INVALID", "another request is writing to this upload", {"uuid": upload_id}, status=416
            ) from None
        if os.fstat(fd).st_size != size:
            os.close(fd)
            self.hashers.pop(upload_id, None)
            raise RegistryError("BLOB_UPLOAD_INVALID", "the upload moved on meanwhile", {"uuid": upload_id}, status=416)
        if self._raw_ok(request):
            try:
                short = await self._receive_raw(request, fd, hasher, request.content_length or 0)
            finally:
                new_size = os.fstat(fd).st_size
                os.close(fd)
            self.hashers[upload_id] = (new_size, hasher)
            if short:
                raise RegistryError(
                    "BLOB_UPLOAD_INVALID", "the client closed the connection before the whole body arrived"
                )
            return new_size
        pending: asyncio.Future[None] | None = None
        batch: list[bytes] = []
        batched = 0
        received = 0
        too_big = False
        try:
            try:
                async for chunk in request.content.iter_any():
                    received += len(chunk)
                    if limit is not None and size + received > limit:
                        too_big = True
                        break
                    batch.append(chunk)
                    batched += len(chunk)
                    if batched >= BUFFER:
                        # hand the batch to a thread, keep reading the socket meanwhile
                        if pending is not None:
                            await pending
                        pending = loop.run_in_executor(self.executor, _hash_and_write, fd, hasher, batch)
                        batch, batched = [], 0
            finally:
                if pending is not None:
                    await pending
                if batch and not too_big:
                    _hash_and_write(fd, hasher, batch)
        finally:
            new_size = os.fstat(fd).st_size
            os.close(fd)
        if too_big:
            # Roll back this request's bytes; the session stays usable at its old offset.
            os.truncate(self.driver.upload_data_path(name, upload_id), size)
            self.hashers.pop(upload_id, None)
            raise RegistryError("SIZE_INVALID", "blob exceeds the upload size limit", {"limit": limit}, status=413)
        self.hashers[upload_id] = (new_size, hasher)
        return new_size

    @staticmethod
    def _raw_ok(request: web.Request) -> bool:
        """Can this body be read straight off the socket (big, Content-Length framed, plain TCP)?"""
        if RAW_UPLOADS is False or request.transport is None:
            return False
        length = request.content_length
        if length is None or length < RAW_MIN or "Transfer-Encoding" in request.headers:
            return False
        if request.transport.get_extra_info("sslcontext") is not None:
            return False
        sock = request.transport.get_extra_info("socket")
        return sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)

    async def _receive_raw(self, request: web.Request, fd: int, hasher: Any, length: int) -> bool:
        """Read `length` body bytes with recv_into on a dup of the connection's socket.

        This skips aiohttp's parser and a copy per byte: bytes go from the kernel into one of
        two reusable buffers, and a thread hashes and writes one while the other fills. The
        HTTP parser still thinks the body is pending, so the connection is closed after the
        response (marked on the request). Returns True if the client went away early.
        """
        assert request.transport is not None
        loop = asyncio.get_running_loop()
        transport = request.transport
        request[_CLOSE_KEY] = True
        # bytes aiohttp has already taken off the socket come first
        first = request.content.read_nowait(-1)
        transport.pause_reading()
        more = request.content.read_nowait(-1)
        head = first + more
        remaining = length - len(head)
        pending: asyncio.Future[None] | None = None
        if head:
            pending = loop.run_in_executor(self.executor, _hash_and_write, fd, hasher, [head[:length]])
        raw = transport.get_extra_info("socket")
        dup = socket.socket(raw.family, raw.type, raw.proto, fileno=os.dup(raw.fileno()))
        dup.setblocking(False)
        buffers = [bytearray(RAW_BUFFER), bytearray(RAW_BUFFER)]
        which = 0
        short = False
        try:
            while remaining > 0:
                view = memoryview(buffers[which])
                filled = 0
                while filled < len(view) and remaining > 0:
                    n = await loop.sock_recv_into(dup, view[filled : filled + min(len(view) - filled, remaining)])
                    if n == 0:
                        short = True
                        break
                    filled += n
                    remaining -= n
                if pending is not None:
                    await pending
                    pending = None
                if filled:
                    pending = loop.run_in_executor(self.executor, _hash_and_write, fd, hasher, [view[:filled]])
                which ^= 1
                if short:
                    break
        finally:
            if pending is not None:
                await pending
            dup.close()
        request.content.feed_eof()
        return short

    async def patch_upload(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        async with self._lock(uuid):
            size = self._session(name, uuid)
            rng = self._content_range(request.headers.get("Content-Range"))
            if rng is not None:
                start, end = rng
                if start != size or end < start:
                    raise RegistryError(
                        "BLOB_UPLOAD_INVALID",
                        "chunk out of order",
                        {"expected_start": size, "got": f"{start}-{end}"},
                        status=416,
                        headers=self._upload_headers(name, uuid, size),
                    )
                cl = request.content_length
                if cl is not None and cl != end - start + 1:
                    raise RegistryError(
                        "BLOB_UPLOAD_INVALID",
                        "Content-Range and Content-Length disagree",
                        status=416,
                        headers=self._upload_headers(name, uuid, size),
                    )
            new_size = await self._receive(request, name, uuid, size)
            return web.Response(status=202, headers=self._upload_headers(name, uuid, new_size))

    async def _complete(
        self, request: web.Request, name: str, upload_id: str, digest: str, size: int
    ) -> web.StreamResponse:
        self._digest(digest)
        alg, _ = dg.parse_digest(digest)
        size = await self._receive(request, name, upload_id, size)
        cached = self.hashers.pop(upload_id, None)
        loop = asyncio.get_running_loop()
        if alg == "sha256" and cached is not None and cached[0] == size:
            actual = "sha256:" + cached[1].hexdigest()
        else:
            path = self.driver.upload_data_path(name, upload_id)
            h = await loop.run_in_executor(self.executor, _hash_file, path, alg, None)
            actual = f"{alg}:{h.hexdigest()}"
        if actual != digest:
            self.driver.delete_upload(name, upload_id)
            raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content", {"digest": digest})
        await loop.run_in_executor(self.executor, self.driver.commit_upload, name, upload_id, digest)
        self.upload_locks.pop(upload_id, None)
        return web.Response(
            status=201,
            headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
        )

    async def finish_upload(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        digest = request.query.get("digest")
        async with self._lock(uuid):
            size = self._session(name, uuid)
            if not digest:
                raise RegistryError("DIGEST_INVALID", "the digest query parameter is required", {"digest": None})
            self._digest(digest)
            rng = self._content_range(request.headers.get("Content-Range"))
            if rng is not None and rng[0] != size:
                raise RegistryError(
                    "BLOB_UPLOAD_INVALID",
                    "chunk out of order",
                    {"expected_start": size},
                    status=416,
                    headers=self._upload_headers(name, uuid, size),
                )
            return await self._complete(request, name, uuid, digest, size)

    async def cancel_upload(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        self._session(name, uuid)
        self.driver.delete_upload(name, uuid)
        self.hashers.pop(uuid, None)
        self.upload_locks.pop(uuid, None)
        return web.Response(status=204)
