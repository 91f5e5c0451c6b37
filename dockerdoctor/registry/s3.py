"""The S3 storage driver (optional extra `s3`: aiobotocore), in distribution's s3-aws layout.

Keys are the filesystem driver's paths under `rootdirectory` (no leading slash), exactly as
distribution's s3-aws driver writes them, so serve-registry and the CNCF registry can serve
one bucket:

    <rootdirectory>/docker/registry/v2/blobs/sha256/ab/<hex>/data
    <rootdirectory>/docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link
    <rootdirectory>/docker/registry/v2/repositories/<name>/_manifests/{revisions,tags}/...
    <rootdirectory>/docker/registry/v2/repositories/<name>/_uploads/<uuid>/startedat

All S3 calls are coroutines on one event loop: the server's own (`bind_loop`) or, for
`registry gc` and other offline callers, a private loop in a background thread. The blocking
`StorageDriver` methods submit to that loop and wait, so they work from worker threads
(catalog and tag walks, purges) but never on the loop itself.

Uploads stream in constant memory. An upload session is the object `_uploads/<uuid>/ddstate`
(JSON: size, multipart upload id, parts, tail) plus the multipart upload itself: each full
`chunksize` of the byte stream becomes one part (S3 wants at least 5 MiB for all but the
last), and what is left at the end of a request (less than `chunksize`) is kept as a
`_uploads/<uuid>/ddtail-*` object until the next request or the final PUT. The state object is
written only after a request's parts and tail are stored, so any replica sharing the bucket
continues the session where the last complete request left it, and a process killed mid-request
leaves the session as it was before that request. A blob becomes visible only by a server-side
copy of verified content to its `blobs/` key. Cancelling, purging or failing an upload aborts
its multipart upload; `sweep_temporaries` aborts the ones a killed process left unreferenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from dockerdoctor.registry.digests import parse_digest
from dockerdoctor.registry.storage import StorageDriver, UploadInfo, parse_startedat

T = TypeVar("T")

MIB = 1 << 20
MIN_CHUNK = 5 * MIB  # S3's smallest part but the last
DEFAULT_CHUNK = 10 * MIB  # distribution's default chunksize
MAX_COPY = 5 * 1024 * MIB  # the largest CopyObject and copy part S3 allows
PARTS_IN_FLIGHT = 2  # part uploads at a time per request (memory: this many parts plus the one filling)
READ_CHUNK = 1 * MIB
STATE = "ddstate"
TAIL = "ddtail-"


class S3Unavailable(RuntimeError):
    """The s3 extra (aiobotocore) is not installed."""


@dataclass
class S3Options:
    bucket: str
    region: str = "us-east-1"
    regionendpoint: str | None = None
    rootdirectory: str = ""
    forcepathstyle: bool = False
    chunksize: int = DEFAULT_CHUNK
    accesskey: str | None = None
    secretkey: str | None = None
    secure: bool = True
    # server-side copies of finished uploads, as distribution's multipartcopy* options
    multipartcopythresholdsize: int = 32 * MIB  # bigger blobs are copied part by part
    multipartcopychunksize: int = 32 * MIB
    multipartcopymaxconcurrency: int = 8
    redirect: bool = False  # answer blob GETs with 307 to a pre-signed URL
    redirect_ttl: int = 1200  # seconds a pre-signed URL is valid (distribution: 20 minutes)

    def check(self) -> None:
        if not self.bucket:
            raise ValueError("storage.s3.bucket is required")
        if self.chunksize < MIN_CHUNK:
            raise ValueError(f"storage.s3.chunksize must be at least {MIN_CHUNK} (5 MiB), got {self.chunksize}")
        if not MIN_CHUNK <= self.multipartcopychunksize <= MAX_COPY:
            raise ValueError("storage.s3.multipartcopychunksize must be between 5 MiB and 5 GiB")
        if not 0 <= self.multipartcopythresholdsize <= MAX_COPY:
            raise ValueError("storage.s3.multipartcopythresholdsize must be at most 5 GiB")
        if self.multipartcopymaxconcurrency < 1:
            raise ValueError("storage.s3.multipartcopymaxconcurrency must be at least 1")
        if bool(self.accesskey) != bool(self.secretkey):
            raise ValueError("storage.s3.accesskey and secretkey go together")

    def describe(self) -> str:
        where = self.regionendpoint or f"region {self.region}"
        root = "/" + self.rootdirectory.strip("/") if self.rootdirectory.strip("/") else "/"
        return f"s3://{self.bucket}{root} ({where})"


def _missing(e: BaseException) -> bool:
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


def _now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class S3Driver(StorageDriver):
    local = False

    def __init__(self, options: S3Options) -> None:
        try:
            import aiobotocore.session  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the install
            raise S3Unavailable(
                "the S3 storage driver needs the s3 extra: pip install 'dockerdoctor[s3]' (aiobotocore)"
            ) from None
        options.check()
        import botocore.exceptions  # type: ignore[import-untyped,unused-ignore]

        self.storage_errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        self.o = options
        self.bucket = options.bucket
        root = options.rootdirectory.strip("/")
        self.base = f"{root}/docker/registry/v2" if root else "docker/registry/v2"
        self.repos = f"{self.base}/repositories/"
        self.blobs = f"{self.base}/blobs/"
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._client_cm: Any = None
        self._client_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ loop and client
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run S3 calls on the server's event loop (call before the first request)."""
        self.loop = loop

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="ddreg-s3", daemon=True)
            self._thread.start()
            self.loop = loop
        return self.loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._own_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("a blocking S3 call on the driver's own event loop (use the a_ method)")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def close(self) -> None:
        """Close the client (and the private loop, if one was started)."""
        if self._client_cm is not None and self.loop is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            if self._thread is not None:
                asyncio.run_coroutine_threadsafe(cm.__aexit__(None, None, None), self.loop).result()
        if self._thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
            self._thread, self.loop = None, None

    async def aclose(self) -> None:
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    async def _c(self) -> Any:
        if self._client is not None:
            return self._client
        if self._client_lock is None:
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if self._client is None:
                from aiobotocore.config import AioConfig  # type: ignore[import-untyped,unused-ignore]
                from aiobotocore.session import get_session  # type: ignore[import-untyped,unused-ignore]

                o = self.o
                endpoint = o.regionendpoint
                if endpoint and "://" not in endpoint:
                    endpoint = ("https://" if o.secure else "http://") + endpoint
                cfg = AioConfig(
                    s3={"addressing_style": "path" if o.forcepathstyle else "auto"},
                    max_pool_connections=64,
                    retries={"max_attempts": 3, "mode": "standard"},
                    # payload checksums only where S3 requires them: S3-compatible servers differ
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                kwargs: dict[str, Any] = {"region_name": o.region, "config": cfg}
                if endpoint:
                    kwargs["endpoint_url"] = endpoint
                if o.accesskey:
                    kwargs["aws_access_key_id"] = o.accesskey
                    kwargs["aws_secret_access_key"] = o.secretkey
                cm = get_session().create_client("s3", **kwargs)
                self._client = await cm.__aenter__()
                self._client_cm = cm
        return self._client

    # ------------------------------------------------------------------ object helpers
    async def _head(self, key: str) -> dict[str, Any] | None:
        c = await self._c()
        try:
            return await c.head_object(Bucket=self.bucket, Key=key)  # type: ignore[no-any-return]
        except Exception as e:
            if _missing(e):
                return None
            raise

    async def _get(self, key: str) -> bytes | None:
        c = await self._c()
        try:
            resp = await c.get_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            if _missing(e):
                return None
            raise
        async with resp["Body"] as body:
            return await body.read()  # type: ignore[no-any-return]

    async def _put(self, key: str, data: bytes) -> None:
        c = await self._c()
        await c.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def _delete(self, key: str) -> None:
        c = await self._c()
        await c.delete_object(Bucket=self.bucket, Key=key)

    async def _keys(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        c = await self._c()
        async for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], int(obj.get("Size", 0))

    async def _dirs(self, prefix: str) -> list[str]:
        """The next path segments below `prefix` (which ends with /), like listing a directory."""
        c = await self._c()
        out: list[str] = []
        async for page in c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                out.append(cp["Prefix"][len(prefix) :].rstrip("/"))
        return out

    async def _delete_prefix(self, prefix: str) -> int:
        c = await self._c()
        keys = [k async for k, _ in self._keys(prefix)]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            await c.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    async def _any(self, prefix: str) -> bool:
        c = await self._c()
        resp = await c.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(resp.get("Contents"))

    # ------------------------------------------------------------------ keys
    def blob_key(self, digest: str) -> str:
        alg, enc = parse_digest(digest)
        return f"{self.blobs}{alg}/{enc[:2]}/{enc}/data"

    def _repo(self, name: str) -> str:
        return f"{self.repos}{name}/"

    def _link(self, name: str, kind: str, digest: str) -> str:
        alg, enc = parse_digest(digest)
        return f"{self._repo(name)}{kind}/{alg}/{enc}/link"

    def _tag(self, name: str, tag: str) -> str:
        return f"{self._repo(name)}_manifests/tags/{tag}/"

    def _upload(self, name: str, upload_id: str) -> str:
        return f"{self._repo(name)}_uploads/{upload_id}/"

    # ------------------------------------------------------------------ blobs
    async def a_ready(self) -> None:
        c = await self._c()
        try:
            await c.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise OSError(f"bucket {self.bucket}: {e}") from None

    async def a_blob_size(self, digest: str) -> int | None:
        head = await self._head(self.blob_key(digest))
        return None if head is None else int(head["ContentLength"])

    def blob_path(self, digest: str) -> str | None:
        return None

    async def a_read_blob(self, digest: str) -> bytes | None:
        return await self._get(self.blob_key(digest))

    async def a_write_blob(self, digest: str, data: bytes) -> None:
        key = self.blob_key(digest)
        if await self._head(key) is None:
            await self._put(key, data)

    async def a_delete_blob(self, digest: str) -> None:
        await self._delete_prefix(self.blob_key(digest)[: -len("data")])

    async def a_list_blobs(self) -> list[str]:
        found = []
        async for key, _size in self._keys(self.blobs):
            parts = key[len(self.blobs) :].split("/")
            if len(parts) == 4 and parts[3] == "data":
                digest = f"{parts[0]}:{parts[2]}"
                try:
                    parse_digest(digest)
                except ValueError:
                    continue
                found.append(digest)
        return sorted(found)

    async def a_open_range(self, digest: str, first: int | None = None, last: int | None = None) -> Any:
        """The streaming body of a blob (or of bytes first..last); None if it is gone."""
        c = await self._c()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.blob_key(digest)}
        if first is not None:
            kwargs["Range"] = f"bytes={first}-{'' if last is None else last}"
        try:
            resp = await c.get_object(**kwargs)
        except Exception as e:
            if _missing(e):
                return None
            raise
        return resp["Body"]

    async def a_presign(self, digest: str) -> str:
        c = await self._c()
        url = await c.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.blob_key(digest)}, ExpiresIn=self.o.redirect_ttl
        )
        return str(url)

    # ------------------------------------------------------------------ repositories and links
    async def a_repo_exists(self, name: str) -> bool:
        return await self._any(f"{self._repo(name)}_layers/") or await self._any(f"{self._repo(name)}_manifests/")

    async def a_list_repos(self, marks: tuple[str, ...] = ("_layers", "_manifests")) -> list[str]:
        """Walk like distribution's catalog: a "directory" holding `_layers` or `_manifests` is a repository."""
        found: list[str] = []

        async def walk(prefix: str, rel: str) -> None:
            names = await self._dirs(prefix)
            if rel and any(m in names for m in marks):
                found.append(rel)
            for n in names:
                if not n.startswith("_"):
                    await walk(f"{prefix}{n}/", f"{rel}/{n}" if rel else n)

        await walk(self.repos, "")
        return sorted(found)

    async def _put_link(self, key: str, digest: str) -> None:
        if await self._get(key) != digest.encode():
            await self._put(key, digest.encode())

    async def _unlink(self, key: str) -> bool:
        if await self._head(key) is None:
            return False
        await self._delete(key)
        return True

    async def _links(self, prefix: str) -> list[str]:
        found = []
        async for key, _size in self._keys(prefix):
            parts = key[len(prefix) :].split("/")
            if len(parts) == 3 and parts[2] == "link":
                found.append(f"{parts[0]}:{parts[1]}")
        return sorted(found)

    async def a_has_layer(self, name: str, digest: str) -> bool:
        return await self._head(self._link(name, "_layers", digest)) is not None

    async def a_link_layer(self, name: str, digest: str) -> None:
        await self._put_link(self._link(name, "_layers", digest), digest)

    async def a_unlink_layer(self, name: str, digest: str) -> bool:
        return await self._unlink(self._link(name, "_layers", digest))

    async def a_list_layers(self, name: str) -> list[str]:
        return await self._links(f"{self._repo(name)}_layers/")

    async def a_has_revision(self, name: str, digest: str) -> bool:
        return await self._head(self._link(name, "_manifests/revisions", digest)) is not None

    async def a_link_revision(self, name: str, digest: str) -> None:
        await self._put_link(self._link(name, "_manifests/revisions", digest), digest)

    async def a_unlink_revision(self, name: str, digest: str) -> bool:
        return await self._unlink(self._link(name, "_manifests/revisions", digest))

    async def a_list_revisions(self, name: str) -> list[str]:
        return await self._links(f"{self._repo(name)}_manifests/revisions/")

    async def a_get_tag(self, name: str, tag: str) -> str | None:
        data = await self._get(f"{self._tag(name, tag)}current/link")
        return data.decode().strip() if data else None

    async def a_set_tag(self, name: str, tag: str, digest: str) -> None:
        alg, enc = parse_digest(digest)
        await self._put_link(f"{self._tag(name, tag)}index/{alg}/{enc}/link", digest)
        await self._put_link(f"{self._tag(name, tag)}current/link", digest)

    async def a_delete_tag(self, name: str, tag: str) -> bool:
        return await self._delete_prefix(self._tag(name, tag)) > 0

    async def a_list_tags(self, name: str) -> list[str]:
        prefix = f"{self._repo(name)}_manifests/tags/"
        tags = set()
        async for key, _size in self._keys(prefix):
            rest = key[len(prefix) :]
            if rest.endswith("/current/link") and rest.count("/") == 2:
                tags.add(rest.split("/", 1)[0])
        return sorted(tags)

    # ------------------------------------------------------------------ uploads
    async def a_new_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        prefix = self._upload(name, upload_id)
        await self._put(prefix + "startedat", _now_rfc3339().encode())
        await self._save_state(name, upload_id, {"size": 0, "mpu": None, "parts": [], "tail": None, "tail_size": 0})
        return upload_id

    async def a_upload_state(self, name: str, upload_id: str) -> dict[str, Any] | None:
        raw = await self._get(self._upload(name, upload_id) + STATE)
        if raw is None:
            return None
        try:
            state = json.loads(raw)
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    async def _save_state(self, name: str, upload_id: str, state: dict[str, Any]) -> None:
        state["modified"] = time.time()
        await self._put(self._upload(name, upload_id) + STATE, json.dumps(state).encode())

    async def a_upload_size(self, name: str, upload_id: str) -> int | None:
        state = await self.a_upload_state(name, upload_id)
        return None if state is None else int(state["size"])

    async def a_append(
        self, name: str, upload_id: str, state: dict[str, Any], chunks: AsyncIterator[bytes], hasher: Any
    ) -> dict[str, Any]:
        """Append a stream to the session: full parts go to the multipart upload, the rest to a new tail.

        `hasher` (or None) is updated with the new bytes only. On any error nothing the session
        points at has changed (parts uploaded meanwhile are replaced or dropped later).
        """
        if state.get("done"):  # a final PUT got as far as completing the multipart upload
            raise OSError(f"upload {upload_id} is being finished; start a new upload")
        c = await self._c()
        prefix = self._upload(name, upload_id)
        key = prefix + "data"
        size = int(state["size"])
        parts = [list(p) for p in state["parts"]]
        mpu = state.get("mpu")
        buf = bytearray()
        if state.get("tail"):
            old = await self._get(state["tail"])
            if old is None or len(old) != int(state["tail_size"]):
                raise OSError(f"upload {upload_id}: its tail object is missing")
            buf += old
        # the old tail, at the head of buf, is in the hasher already: skip that many bytes when hashing
        hashed = 0 if hasher is None else len(buf)
        pending: list[asyncio.Task[None]] = []
        number = len(parts)

        async def send(part: bytes, n: int) -> None:
            resp = await c.upload_part(Bucket=self.bucket, Key=key, UploadId=mpu, PartNumber=n, Body=part)
            parts.append([n, resp["ETag"], len(part)])

        chunk_size = self.o.chunksize
        try:
            async for chunk in chunks:
                buf += chunk
                size += len(chunk)
                while len(buf) >= chunk_size:
                    part = bytes(memoryview(buf)[:chunk_size])
                    del buf[:chunk_size]
                    skip = min(hashed, len(part))
                    hashed -= skip
                    if hasher is not None:  # in stream order, while earlier parts upload
                        await asyncio.to_thread(hasher.update, memoryview(part)[skip:])
                    if mpu is None:
                        mpu = (await c.create_multipart_upload(Bucket=self.bucket, Key=key))["UploadId"]
                    while len(pending) >= PARTS_IN_FLIGHT:
                        await pending.pop(0)
                    number += 1
                    pending.append(asyncio.ensure_future(send(part, number)))
            while pending:
                await pending.pop(0)
        except BaseException:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
            raise
        parts.sort()
        if hasher is not None and len(buf) > hashed:
            await asyncio.to_thread(hasher.update, memoryview(buf)[hashed:])
        old_tail = state.get("tail")
        tail = None
        if buf:
            tail = f"{prefix}{TAIL}{uuid.uuid4().hex}"
            await self._put(tail, bytes(buf))
        new = {"size": size, "mpu": mpu, "parts": parts, "tail": tail, "tail_size": len(buf)}
        await self._save_state(name, upload_id, new)
        if old_tail and old_tail != tail:
            with contextlib.suppress(Exception):
                await self._delete(old_tail)
        return new

    async def _finish_multipart(self, name: str, upload_id: str, state: dict[str, Any]) -> str:
        """Complete the session's multipart upload (the tail as its last part) at `_uploads/<id>/data`."""
        c = await self._c()
        key = self._upload(name, upload_id) + "data"
        parts = list(state["parts"])
        if state.get("tail"):
            data = await self._get(state["tail"])
            if data is None:
                raise OSError(f"upload {upload_id}: its tail object is missing")
            number = len(parts) + 1
            resp = await c.upload_part(Bucket=self.bucket, Key=key, UploadId=state["mpu"], PartNumber=number, Body=data)
            parts.append([number, resp["ETag"], len(data)])
        await c.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=state["mpu"],
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag, _ in parts]},
        )
        state["mpu"], state["parts"], state["tail"], state["tail_size"] = None, [], None, 0
        state["done"] = key
        await self._save_state(name, upload_id, state)
        return key

    async def _hash_object(self, key: str, alg: str) -> str:
        c = await self._c()
        h = hashlib.new(alg)
        resp = await c.get_object(Bucket=self.bucket, Key=key)
        async with resp["Body"] as body:
            while True:
                chunk = await body.read(READ_CHUNK)
                if not chunk:
                    break
                await asyncio.to_thread(h.update, chunk)
        return f"{alg}:{h.hexdigest()}"

    async def _copy(self, src: str, dst: str, size: int) -> None:
        """Server-side copy; above the threshold part by part, several at a time (as distribution)."""
        c = await self._c()
        source = {"Bucket": self.bucket, "Key": src}
        piece = self.o.multipartcopychunksize
        if size <= self.o.multipartcopythresholdsize:
            await c.copy_object(Bucket=self.bucket, Key=dst, CopySource=source)
            return
        mpu = (await c.create_multipart_upload(Bucket=self.bucket, Key=dst))["UploadId"]
        gate = asyncio.Semaphore(self.o.multipartcopymaxconcurrency)

        async def part(number: int, first: int) -> dict[str, Any]:
            last = min(first + piece, size) - 1
            async with gate:
                resp = await c.upload_part_copy(
                    Bucket=self.bucket, Key=dst, UploadId=mpu, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={first}-{last}",
                )  # fmt: skip
            return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}

        try:
            parts = await asyncio.gather(*(part(i, first) for i, first in enumerate(range(0, size, piece), 1)))
            await c.complete_multipart_upload(
                Bucket=self.bucket, Key=dst, UploadId=mpu, MultipartUpload={"Parts": list(parts)}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await c.abort_multipart_upload(Bucket=self.bucket, Key=dst, UploadId=mpu)
            raise

    async def a_complete(
        self, name: str, upload_id: str, state: dict[str, Any], digest: str, actual: str | None
    ) -> str:
        """Verify and commit the session as blob `digest`; returns the digest of what was uploaded.

        `actual` is the digest the caller hashed while receiving, or None (the session moved
        between replicas or processes: the bytes are read back and hashed). On a mismatch the
        session is deleted and nothing else is written.
        """
        alg, _ = parse_digest(digest)
        source: str | None = None
        size = int(state["size"])
        if state.get("done"):
            source = state["done"]
        elif state["parts"] or state.get("mpu"):
            if not state["parts"] and not state.get("tail"):
                await self.a_delete_upload(name, upload_id)  # pragma: no cover - cannot happen: parts are full
                raise OSError("empty multipart upload")
            source = await self._finish_multipart(name, upload_id, state)
        elif state.get("tail"):
            source = state["tail"]
        if actual is None:
            if source is None:
                actual = f"{alg}:{hashlib.new(alg, b'').hexdigest()}"
            else:
                actual = await self._hash_object(source, alg)
        if actual != digest:
            await self.a_delete_upload(name, upload_id)
            return actual
        key = self.blob_key(digest)
        if await self._head(key) is None:
            if source is None:
                await self._put(key, b"")
            else:
                await self._copy(source, key, size)
        await self.a_link_layer(name, digest)
        await self.a_delete_upload(name, upload_id)
        return actual

    async def a_delete_upload(self, name: str, upload_id: str) -> bool:
        state = await self.a_upload_state(name, upload_id)
        if state is not None and state.get("mpu"):
            c = await self._c()
            try:
                await c.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._upload(name, upload_id) + "data", UploadId=state["mpu"]
                )
            except Exception as e:
                if not _missing(e):
                    raise
        return await self._delete_prefix(self._upload(name, upload_id)) > 0

    async def a_list_uploads(self) -> list[UploadInfo]:
        found = []
        for repo in await self.a_list_repos(("_uploads",)):  # S3 has no empty `_layers` to mark a new repository
            base = f"{self._repo(repo)}_uploads/"
            for uid in await self._dirs(base):
                raw = await self._get(f"{base}{uid}/startedat")
                started = parse_startedat(raw) if raw else None
                state = await self.a_upload_state(repo, uid)
                modified = float(state.get("modified", 0.0)) if state else 0.0
                size = int(state["size"]) if state else 0
                found.append(UploadInfo(repo, uid, size, started or modified, modified))
        return found

    async def a_sweep_temporaries(self, older_than: float) -> int:
        """Abort multipart uploads started before `older_than` that no session state points at."""
        c = await self._c()
        aborted = 0
        async for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.repos):
            for up in page.get("Uploads", []):
                key, mpu = up["Key"], up["UploadId"]
                initiated = up.get("Initiated")
                if initiated is not None and initiated.timestamp() >= older_than:
                    continue
                if "/_uploads/" not in key or not key.endswith("/data"):
                    continue
                rel = key[len(self.repos) : -len("/data")]
                repo, _, uid = rel.rpartition("/_uploads/")
                state = await self.a_upload_state(repo, uid)
                if state is not None and state.get("mpu") == mpu:
                    continue
                with contextlib.suppress(Exception):
                    await c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mpu)
                    aborted += 1
        return aborted

    async def a_multipart_uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of every multipart upload in progress under the root (for tests and reports)."""
        c = await self._c()
        out: list[tuple[str, str]] = []
        async for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self.base):
            out.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
        return out

    # ------------------------------------------------------------------ the blocking interface
    def ready(self) -> None:
        self._run(self.a_ready())

    def sweep_temporaries(self, older_than: float) -> int:
        return self._run(self.a_sweep_temporaries(older_than))

    def blob_size(self, digest: str) -> int | None:
        return self._run(self.a_blob_size(digest))

    def read_blob(self, digest: str) -> bytes | None:
        return self._run(self.a_read_blob(digest))

    def write_blob(self, digest: str, data: bytes) -> None:
        self._run(self.a_write_blob(digest, data))

    def delete_blob(self, digest: str) -> None:
        self._run(self.a_delete_blob(digest))

    def iter_blobs(self) -> Iterator[str]:
        return iter(self._run(self.a_list_blobs()))

    def repo_exists(self, name: str) -> bool:
        return self._run(self.a_repo_exists(name))

    def list_repos(self) -> list[str]:
        return self._run(self.a_list_repos())

    def has_layer(self, name: str, digest: str) -> bool:
        return self._run(self.a_has_layer(name, digest))

    def link_layer(self, name: str, digest: str) -> None:
        self._run(self.a_link_layer(name, digest))

    def unlink_layer(self, name: str, digest: str) -> bool:
        return self._run(self.a_unlink_layer(name, digest))

    def iter_layers(self, name: str) -> Iterator[str]:
        return iter(self._run(self.a_list_layers(name)))

    def has_revision(self, name: str, digest: str) -> bool:
        return self._run(self.a_has_revision(name, digest))

    def link_revision(self, name: str, digest: str) -> None:
        self._run(self.a_link_revision(name, digest))

    def unlink_revision(self, name: str, digest: str) -> bool:
        return self._run(self.a_unlink_revision(name, digest))

    def iter_revisions(self, name: str) -> Iterator[str]:
        return iter(self._run(self.a_list_revisions(name)))

    def get_tag(self, name: str, tag: str) -> str | None:
        return self._run(self.a_get_tag(name, tag))

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        self._run(self.a_set_tag(name, tag, digest))

    def delete_tag(self, name: str, tag: str) -> bool:
        return self._run(self.a_delete_tag(name, tag))

    def list_tags(self, name: str) -> list[str]:
        return self._run(self.a_list_tags(name))

    def new_upload(self, name: str) -> str:
        return self._run(self.a_new_upload(name))

    def upload_size(self, name: str, upload_id: str) -> int | None:
        return self._run(self.a_upload_size(name, upload_id))

    def upload_data_path(self, name: str, upload_id: str) -> str:
        raise NotImplementedError("S3 uploads have no local file (use a_append)")

    def commit_upload(self, name: str, upload_id: str, digest: str) -> None:
        raise NotImplementedError("S3 uploads commit with a_complete")

    def delete_upload(self, name: str, upload_id: str) -> bool:
        return self._run(self.a_delete_upload(name, upload_id))

    def iter_uploads(self) -> Iterator[UploadInfo]:
        return iter(self._run(self.a_list_uploads()))

    def run(self, coro: Awaitable[T]) -> T:
        """Run a coroutine of this driver from blocking code (tests, offline tools)."""

        async def wrap() -> T:
            return await coro

        return self._run(wrap())
