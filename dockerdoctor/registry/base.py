"""The state the registry's resource handlers share (the mixins in blobs, uploads, manifests, discovery)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.common import RegistryError, Settings
from dockerdoctor.registry.manifest_doc import ManifestInfo
from dockerdoctor.registry.storage import StorageDriver

T = TypeVar("T")


class RegistryBase:
    driver: StorageDriver
    s: Settings
    executor: ThreadPoolExecutor  # storage I/O of requests (reads, writes, hashing)
    walk_executor: ThreadPoolExecutor  # long walks (tags of a deleted manifest, catalog, referrers, purge)
    manifests: collections.OrderedDict[str, ManifestInfo]
    manifest_bytes: int
    manifest_cache_limit: int
    hashers: dict[str, tuple[int, Any]]  # upload id -> (offset, sha256 state)
    upload_locks: dict[str, tuple[asyncio.Lock, int]]  # upload id -> (lock, requests holding or waiting)
    deep_streams: int = 0  # blob streams with a deep write buffer now (blobs.DEEP_STREAMS at most)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def walk(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.walk_executor, fn, *args)

    async def st(self, method: str, *args: Any) -> Any:
        """A small storage call from the event loop: inline on a local driver, the coroutine on S3."""
        coro = getattr(self.driver, "a_" + method, None)
        if coro is not None:
            return await coro(*args)
        return getattr(self.driver, method)(*args)

    async def sto(self, method: str, *args: Any) -> Any:
        """A storage call that may take a while: in the I/O pool on a local driver, the coroutine on S3."""
        coro = getattr(self.driver, "a_" + method, None)
        if coro is not None:
            return await coro(*args)
        return await self.io(getattr(self.driver, method), *args)

    @staticmethod
    def _digest(value: str) -> str:
        try:
            dg.parse_digest(value)
        except dg.InvalidDigest as e:
            raise RegistryError("DIGEST_INVALID", "invalid digest", {"digest": value, "reason": str(e)}) from e
        return value
