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

from collections.abc import Awaitable, Iterator

from dockerdoctor.registry.s3_session import (
    DEFAULT_CHUNK,
    MAX_COPY,
    MIB,
    MIN_CHUNK,
    PARTS_IN_FLIGHT,
    READ_CHUNK,
    STATE,
    TAIL,
    S3Options,
    S3Unavailable,
    T,
)
from dockerdoctor.registry.s3_uploads import S3Uploads
from dockerdoctor.registry.storage import StorageDriver, UploadInfo

__all__ = [
    "DEFAULT_CHUNK", "MAX_COPY", "MIB", "MIN_CHUNK", "PARTS_IN_FLIGHT", "READ_CHUNK", "STATE", "TAIL",
    "S3Driver", "S3Options", "S3Unavailable",
]  # fmt: skip


class S3Driver(S3Uploads, StorageDriver):
    """The StorageDriver on S3: `a_` coroutines (s3_objects, s3_uploads) and their blocking forms."""

    local = False

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
