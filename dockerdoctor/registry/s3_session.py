"""The S3 driver's session: options, the client on one event loop, object helpers, the key layout.

See dockerdoctor.registry.s3 for the design; this module holds what every S3 operation uses.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dockerdoctor.registry.digests import parse_digest

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

S3_POOL = 64  # the client's connection pool, shared by all requests (the connection cap leaves room for it)

@dataclass
class S3Options:
    bucket: str
    region: str = "us-east-1"
    regionendpoint: str | None = None
    rootdirectory: str = ""
    # True: path style; False: virtual-hosted (bucket.host), as distribution does when asked; None:
    # botocore's choice, path style for a regionendpoint (distribution 2.8's default there), else virtual
    forcepathstyle: bool | None = None
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



class S3Session:
    """Options, the aiobotocore client on one event loop, object helpers and the key layout."""

    storage_errors: tuple[type[BaseException], ...] = ()  # as StorageDriver's: botocore's errors once built

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
        self._closing: asyncio.Task[Any] | None = None  # close() called on the bound loop itself


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
        """Close the client (and the private loop, if one was started).

        On a bound loop the client closes there: waited for from another thread while that loop runs,
        run to completion if it is stopped, scheduled if close() is called on the loop itself (a
        coroutine there should await aclose() instead). Only a closed loop leaves nothing to close on.
        """
        if self._client_cm is not None and self.loop is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            exit_ = cm.__aexit__(None, None, None)
            try:
                running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                self._closing = self.loop.create_task(exit_)
            elif self.loop.is_running():
                asyncio.run_coroutine_threadsafe(exit_, self.loop).result()
            elif not self.loop.is_closed():
                self.loop.run_until_complete(exit_)
            else:
                exit_.close()  # the loop is gone, and its connections with it
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
                    s3={"addressing_style": {True: "path", False: "virtual", None: "auto"}[o.forcepathstyle]},
                    signature_version="s3v4",  # pre-signed URLs too (botocore's default for them is SigV2)
                    max_pool_connections=S3_POOL,
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
            resp = await c.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:  # a 200 answer can still refuse keys one by one (AccessDenied, ...)
                e = errors[0]
                raise OSError(
                    f"s3 bucket {self.bucket}: {len(errors)} of {len(batch)} deletes under {prefix} failed, "
                    f"first {e.get('Key')}: {e.get('Code')} {e.get('Message')}"
                )
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
