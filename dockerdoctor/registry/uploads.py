"""Upload resources: POST/GET/PATCH/PUT/DELETE `/v2/<name>/blobs/uploads/<id>`.

Bodies stream to the session's staging file in bounded buffers while a worker thread hashes
and writes the previous buffer; big Content-Length bodies on plain TCP are read straight off
the socket (`_receive_raw`). The sha256 state of each session is kept between requests, so
a chunked upload is hashed once. Per-session locks exist only while a request holds or waits
for them: a flood of requests to unknown upload ids leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.base import RegistryBase
from dockerdoctor.registry.common import CLOSE_KEY, RegistryError
from dockerdoctor.registry.guard import note_progress

BUFFER = 1 << 20  # bytes handed to the hash/write thread at a time
RAW_BUFFER = 1 << 20  # each of the two receive buffers of the raw upload path
RAW_MIN = 1 << 20  # bodies at least this big (with Content-Length) skip aiohttp's parser
RAW_UPLOADS = os.environ.get("DDREG_RAW_UPLOADS", "1") != "0"


class _BodyRefused(Exception):
    """The request body broke a limit (size, Content-Range) while streaming to an object store."""


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


SAME_SECRET = "replicas behind one load balancer need the same --http-secret (REGISTRY_HTTP_SECRET, http.secret)"


def sign_state(secret: bytes, name: str, upload_id: str) -> str:
    """The upload-state token: an HMAC-SHA256 of repository and upload id under the HTTP secret."""
    mac = hmac.new(secret, f"{name}\n{upload_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


class UploadsMixin(RegistryBase):
    # ------------------------------------------------------------------ uploads
    def _upload_headers(self, name: str, upload_id: str, size: int) -> dict[str, str]:
        location = f"/v2/{name}/blobs/uploads/{upload_id}"
        if self.s.http_secret:
            location += f"?_state={sign_state(self.s.http_secret, name, upload_id)}"
        return {
            "Location": location,
            "Range": f"0-{max(size - 1, 0)}",
            "Docker-Upload-UUID": upload_id,
        }

    def _check_state(self, request: web.Request, name: str, upload_id: str) -> None:
        """With --http-secret, the Location's `_state` must carry our signature for this upload."""
        secret = self.s.http_secret
        if not secret:
            return
        token = request.query.get("_state")
        if not token:
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                "blob upload invalid: the upload URL lost its _state (or a replica without --http-secret started it); "
                + SAME_SECRET,
                {"uuid": upload_id[:64]},
            )
        if not hmac.compare_digest(token, sign_state(secret, name, upload_id)):
            raise RegistryError(
                "BLOB_UPLOAD_INVALID",
                "blob upload invalid: its state was signed with another HTTP secret; " + SAME_SECRET,
                {"uuid": upload_id[:64]},
            )

    async def _session(self, name: str, upload_id: str) -> int:
        if not dg.valid_upload_id(upload_id):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id[:64]})
        size = await self.st("upload_size", name, upload_id)
        if size is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id})
        return size

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str) -> AsyncIterator[None]:
        """One request at a time per session; the lock goes away with its last user."""
        if not dg.valid_upload_id(upload_id):
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id[:64]})
        lock, users = self.upload_locks.get(upload_id) or (asyncio.Lock(), 0)
        self.upload_locks[upload_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self.upload_locks[upload_id]
            if users <= 1:
                del self.upload_locks[upload_id]
            else:
                self.upload_locks[upload_id] = (lock, users - 1)

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
            can = await self.st("blob_size", mount) is not None and (
                source is None or await self.st("has_layer", source, mount)
            )
            if can:
                await self.st("link_layer", name, mount)
                return web.Response(
                    status=201,
                    headers={"Location": f"/v2/{name}/blobs/{mount}", "Docker-Content-Digest": mount},
                )
        upload_id = await self.sto("new_upload", name)
        digest = q.get("digest")
        if digest and not mount:
            try:
                return await self._complete(request, name, upload_id, digest, size=0)
            except BaseException:
                await self.sto("delete_upload", name, upload_id)
                self.hashers.pop(upload_id, None)
                raise
        return web.Response(status=202, headers=self._upload_headers(name, upload_id, 0))

    async def upload_status(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        self._check_state(request, name, uuid)
        size = await self._session(name, uuid)
        return web.Response(status=204, headers=self._upload_headers(name, uuid, size))

    @staticmethod
    def _content_range(value: str | None) -> tuple[int, int] | None:
        if not value:
            return None
        m = re.fullmatch(r"\s*(?:bytes[ =])?\s*([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?\s*", value)
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

    async def _receive(
        self, request: web.Request, name: str, upload_id: str, size: int, expect: int | None = None
    ) -> int:
        """Append the request body to the upload; returns the new size. Keeps the hash state.

        With `expect` (from Content-Range), a body of any other length is refused and its bytes rolled back.
        """
        if not self.driver.local:
            return (await self._receive_remote(request, name, upload_id, size, expect))[0]
        new_size = await self._receive_body(request, name, upload_id, size, expect)
        if expect is not None and (new_size < 0 or new_size - size != expect):
            await self.io(os.truncate, self.driver.upload_data_path(name, upload_id), size)
            self.hashers.pop(upload_id, None)
            raise self._length_differs(name, upload_id, size, expect)
        return new_size

    async def _receive_body(
        self, request: web.Request, name: str, upload_id: str, size: int, expect: int | None
    ) -> int:
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
        too_big = too_long = False
        try:
            try:
                async for chunk in request.content.iter_any():
                    received += len(chunk)
                    if limit is not None and size + received > limit:
                        too_big = True
                        break
                    if expect is not None and received > expect:
                        too_long = True  # longer than its Content-Range
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
                if batch and not too_big and not too_long:
                    _hash_and_write(fd, hasher, batch)
        finally:
            new_size = os.fstat(fd).st_size
            os.close(fd)
        if too_big:
            # Roll back this request's bytes; the session stays usable at its old offset.
            os.truncate(self.driver.upload_data_path(name, upload_id), size)
            self.hashers.pop(upload_id, None)
            raise RegistryError("SIZE_INVALID", "blob exceeds the upload size limit", {"limit": limit}, status=413)
        if too_long:
            request[CLOSE_KEY] = True  # the rest of the body stays unread
            return -1  # _receive rolls back and answers 416
        self.hashers[upload_id] = (new_size, hasher)
        return new_size

    def _length_differs(self, name: str, upload_id: str, size: int, expect: int | None) -> RegistryError:
        return RegistryError(
            "BLOB_UPLOAD_INVALID",
            "the body length differs from Content-Range",
            {"Content-Range length": expect},
            status=416,
            headers=self._upload_headers(name, upload_id, size),
        )

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
        request[CLOSE_KEY] = True
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
                    note_progress(request)
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
        self._check_state(request, name, uuid)
        async with self._locked(uuid):
            size = await self._session(name, uuid)
            rng = self._content_range(request.headers.get("Content-Range"))
            expect = None
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
                expect = end - start + 1
            new_size = await self._receive(request, name, uuid, size, expect)
            return web.Response(status=202, headers=self._upload_headers(name, uuid, new_size))

    async def _complete(
        self, request: web.Request, name: str, upload_id: str, digest: str, size: int
    ) -> web.StreamResponse:
        self._digest(digest)
        alg, _ = dg.parse_digest(digest)
        if not self.driver.local:
            return await self._complete_remote(request, name, upload_id, digest, size)
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
            await self.io(self.driver.delete_upload, name, upload_id)
            raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content", {"digest": digest})
        await loop.run_in_executor(self.executor, self.driver.commit_upload, name, upload_id, digest)
        return web.Response(
            status=201,
            headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
        )

    async def _receive_remote(
        self, request: web.Request, name: str, upload_id: str, size: int, expect: int | None
    ) -> tuple[int, dict[str, Any]]:
        """Stream the body into an object-store session (S3).

        A refused body (over the size limit, or longer or shorter than its Content-Range) changes nothing.
        A client that goes away mid-body without a Content-Range keeps the bytes that arrived, as on disk
        (a later PATCH continues from there), and this request answers BLOB_UPLOAD_INVALID.
        """
        limit = self.s.max_upload
        if limit is not None and request.content_length is not None and size + request.content_length > limit:
            raise RegistryError("SIZE_INVALID", "blob exceeds the upload size limit", {"limit": limit}, status=413)
        state = await self.st("upload_state", name, upload_id)
        if state is None:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", {"uuid": upload_id})
        if int(state["size"]) != size:
            self.hashers.pop(upload_id, None)
            raise RegistryError("BLOB_UPLOAD_INVALID", "the upload moved on meanwhile", {"uuid": upload_id}, status=416)
        cached = self.hashers.pop(upload_id, None)
        # A session continued from another replica (or after a restart) has no hash state here:
        # its bytes are read back and hashed when it completes.
        hasher = cached[1] if cached is not None and cached[0] == size else (hashlib.sha256() if size == 0 else None)
        why: list[str] = []
        gone: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            received = 0
            stream = request.content.iter_any().__aiter__()
            while True:
                try:
                    chunk = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except (OSError, aiohttp.ClientError, asyncio.IncompleteReadError) as e:
                    # the client went away: keep what arrived (as on disk), unless a Content-Range promised more
                    if expect is not None:
                        why.append("too short")
                        raise _BodyRefused from e
                    gone.append(e)
                    return
                received += len(chunk)
                if limit is not None and size + received > limit:
                    why.append("too big")
                    raise _BodyRefused
                if expect is not None and received > expect:
                    why.append("too long")
                    raise _BodyRefused
                note_progress(request)
                yield chunk
            if expect is not None and received != expect:
                why.append("too short")
                raise _BodyRefused

        try:
            new = await self.driver.a_append(name, upload_id, state, body(), hasher)  # type: ignore[attr-defined]
        except _BodyRefused:
            if why == ["too big"]:
                raise RegistryError(
                    "SIZE_INVALID", "blob exceeds the upload size limit", {"limit": limit}, status=413
                ) from None
            if why == ["too long"]:
                request[CLOSE_KEY] = True  # the rest of the body stays unread
            raise self._length_differs(name, upload_id, size, expect) from None
        if hasher is not None:
            self.hashers[upload_id] = (int(new["size"]), hasher)
        if gone:
            raise RegistryError("BLOB_UPLOAD_INVALID", "the client closed the connection before the whole body arrived")
        return int(new["size"]), new

    async def _complete_remote(
        self, request: web.Request, name: str, upload_id: str, digest: str, size: int
    ) -> web.StreamResponse:
        size, state = await self._receive_remote(request, name, upload_id, size, None)
        cached = self.hashers.pop(upload_id, None)
        actual = None
        if digest.startswith("sha256:") and cached is not None and cached[0] == size:
            actual = "sha256:" + cached[1].hexdigest()
        got = await self.driver.a_complete(name, upload_id, state, digest, actual)  # type: ignore[attr-defined]
        if got != digest:
            raise RegistryError("DIGEST_INVALID", "provided digest did not match uploaded content", {"digest": digest})
        return web.Response(
            status=201,
            headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest},
        )

    async def finish_upload(self, request: web.Request, name: str, uuid: str) -> web.StreamResponse:
        self._check_state(request, name, uuid)
        digest = request.query.get("digest")
        async with self._locked(uuid):
            size = await self._session(name, uuid)
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
        self._check_state(request, name, uuid)
        async with self._locked(uuid):
            await self._session(name, uuid)
            await self.sto("delete_upload", name, uuid)
            self.hashers.pop(uuid, None)
        return web.Response(status=204)
