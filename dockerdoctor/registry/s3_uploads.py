"""The S3 driver's upload sessions: `ddstate` + multipart upload + `ddtail-*`, verify, copy, sweep.

See dockerdoctor.registry.s3 for how a session survives replicas and killed processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from dockerdoctor.registry.digests import parse_digest
from dockerdoctor.registry.s3_objects import S3Objects
from dockerdoctor.registry.s3_session import PARTS_IN_FLIGHT, READ_CHUNK, STATE, TAIL, _missing, _now_rfc3339
from dockerdoctor.registry.storage import UploadInfo, parse_startedat


class S3Uploads(S3Objects):
    """Upload sessions on a multipart upload."""

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

