"""Registry storage: a small driver interface and the filesystem driver.

The filesystem driver keeps the exact on-disk layout of the CNCF distribution filesystem
driver, so `serve-registry --root DIR` and `registry serve` (registry:2) can serve each
other's directories:

    <root>/docker/registry/v2/
      blobs/<alg>/<first two hex>/<hex>/data                  content, shared by all repositories
      repositories/<name>/
        _layers/<alg>/<hex>/link                              "alg:hex": the blob is in this repository
        _manifests/revisions/<alg>/<hex>/link                 a manifest of this repository
        _manifests/tags/<tag>/current/link                    what the tag points to now
        _manifests/tags/<tag>/index/<alg>/<hex>/link          every digest the tag ever pointed to
        _uploads/<uuid>/data, startedat                       upload sessions in progress

Crash safety: every file that other requests can see is written to a temporary name in
the same directory and renamed into place, so a reader sees the old file or the new one,
never half of one. Upload data lives under `_uploads/` and is renamed into `blobs/` only
after its digest is verified. Two uploads of the same blob rename identical content over
each other, which is harmless.

Object stores implement `StorageDriver` too (s3.py); the HTTP layer only talks to this
interface (and uses `blob_path` for zero-copy sends when it returns a local path).
"""

from __future__ import annotations

import abc
import datetime as _dt
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockerdoctor.registry.digests import parse_digest

V2 = os.path.join("docker", "registry", "v2")


@dataclass(frozen=True)
class UploadInfo:
    name: str
    upload_id: str
    size: int
    started: float  # unix time
    modified: float = 0.0  # last write to the data, unix time


def parse_startedat(raw: bytes) -> float | None:
    """Unix time from an upload's `startedat` (RFC 3339; distribution writes nanoseconds)."""
    try:
        text = raw.decode().strip().replace("Z", "+00:00")
        if "." in text:  # keep microseconds
            head, frac = text.split(".", 1)
            digits = "".join(c for c in frac if c.isdigit())
            text = f"{head}.{digits[:6].ljust(6, '0')}{frac[len(digits) :]}"
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


class StorageDriver(abc.ABC):
    """What the registry needs from storage. Names and digests are validated by the caller.

    `local` drivers answer small calls fast enough to make them on the event loop and keep
    uploads in local files (`upload_data_path`); others (S3) offer `a_<method>` coroutines
    for the calls the HTTP layer makes on the loop, and their own upload path.
    """

    local = True
    storage_errors: tuple[type[BaseException], ...] = ()  # exceptions of the driver's client that mean "storage failed"

    # -- blobs (global, content addressed)
    @abc.abstractmethod
    def blob_size(self, digest: str) -> int | None: ...

    @abc.abstractmethod
    def blob_path(self, digest: str) -> str | None:
        """A local file path for zero-copy sends, or None if the blob is not local."""

    def open_blob(self, digest: str) -> BinaryIO | None:
        """A readable stream of the blob (used when blob_path gives no local file)."""
        path = self.blob_path(digest)
        try:
            return open(path, "rb") if path else None  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            return None

    @abc.abstractmethod
    def read_blob(self, digest: str) -> bytes | None: ...

    @abc.abstractmethod
    def write_blob(self, digest: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def delete_blob(self, digest: str) -> None: ...

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[str]: ...

    def ready(self) -> None:  # noqa: B027 - optional for drivers
        """Raise OSError if the storage cannot be used right now (for /readyz)."""
        return None

    def sweep_temporaries(self, older_than: float) -> int:
        """Remove temporary files a killed process left behind; returns how many."""
        return 0

    # -- repositories and links
    @abc.abstractmethod
    def repo_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def list_repos(self) -> list[str]: ...

    @abc.abstractmethod
    def has_layer(self, name: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def link_layer(self, name: str, digest: str) -> None: ...

    @abc.abstractmethod
    def unlink_layer(self, name: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def iter_layers(self, name: str) -> Iterator[str]: ...

    @abc.abstractmethod
    def has_revision(self, name: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def link_revision(self, name: str, digest: str) -> None: ...

    @abc.abstractmethod
    def unlink_revision(self, name: str, digest: str) -> bool: ...

    @abc.abstractmethod
    def iter_revisions(self, name: str) -> Iterator[str]: ...

    @abc.abstractmethod
    def get_tag(self, name: str, tag: str) -> str | None: ...

    @abc.abstractmethod
    def set_tag(self, name: str, tag: str, digest: str) -> None: ...

    @abc.abstractmethod
    def delete_tag(self, name: str, tag: str) -> bool: ...

    @abc.abstractmethod
    def list_tags(self, name: str) -> list[str]: ...

    # -- uploads
    @abc.abstractmethod
    def new_upload(self, name: str) -> str: ...

    @abc.abstractmethod
    def upload_size(self, name: str, upload_id: str) -> int | None: ...

    @abc.abstractmethod
    def upload_data_path(self, name: str, upload_id: str) -> str:
        """Where the upload's bytes are appended (a local staging file)."""

    @abc.abstractmethod
    def commit_upload(self, name: str, upload_id: str, digest: str) -> None:
        """Make the verified upload the blob `digest`, link it into `name`, and drop the session."""

    @abc.abstractmethod
    def delete_upload(self, name: str, upload_id: str) -> bool: ...

    @abc.abstractmethod
    def iter_uploads(self) -> Iterator[UploadInfo]: ...


def _write_atomic(path: str, data: bytes, fsync: bool = False) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _read_small(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _rmtree_quiet(path: str) -> bool:
    try:
        shutil.rmtree(path)
        return True
    except FileNotFoundError:
        return False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


class FilesystemDriver(StorageDriver):
    """Local directory storage in the distribution filesystem-driver layout."""

    def __init__(self, root: str, fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.base = os.path.join(self.root, V2)
        self.fsync = fsync
        self.repos_dir = os.path.join(self.base, "repositories")
        self.blobs_dir = os.path.join(self.base, "blobs")

    def ensure(self) -> None:
        os.makedirs(self.repos_dir, exist_ok=True)
        os.makedirs(self.blobs_dir, exist_ok=True)

    def ready(self) -> None:
        os.stat(self.repos_dir)
        os.stat(self.blobs_dir)

    def sweep_temporaries(self, older_than: float) -> int:
        """Delete `.tmp-*` files (atomic writes cut short by kill -9) last changed before `older_than`."""
        removed = 0
        for top in (self.blobs_dir, self.repos_dir):
            for dirpath, _dirs, files in os.walk(top):
                for f in files:
                    if not f.startswith(".tmp-"):
                        continue
                    path = os.path.join(dirpath, f)
                    try:
                        if os.lstat(path).st_mtime < older_than:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    # ---- paths
    def _blob_dir(self, digest: str) -> str:
        alg, enc = parse_digest(digest)
        return os.path.join(self.blobs_dir, alg, enc[:2], enc)

    def _repo(self, name: str) -> str:
        return os.path.join(self.repos_dir, name)

    def _link(self, name: str, kind: str, digest: str) -> str:
        alg, enc = parse_digest(digest)
        return os.path.join(self._repo(name), kind, alg, enc, "link")

    def _tag_dir(self, name: str, tag: str) -> str:
        return os.path.join(self._repo(name), "_manifests", "tags", tag)

    def _upload_dir(self, name: str, upload_id: str) -> str:
        return os.path.join(self._repo(name), "_uploads", upload_id)

    # ---- blobs
    def blob_size(self, digest: str) -> int | None:
        try:
            return os.stat(os.path.join(self._blob_dir(digest), "data")).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def blob_path(self, digest: str) -> str | None:
        return os.path.join(self._blob_dir(digest), "data")

    def read_blob(self, digest: str) -> bytes | None:
        return _read_small(os.path.join(self._blob_dir(digest), "data"))

    def write_blob(self, digest: str, data: bytes) -> None:
        path = os.path.join(self._blob_dir(digest), "data")
        if not os.path.exists(path):
            _write_atomic(path, data, self.fsync)

    def delete_blob(self, digest: str) -> None:
        d = self._blob_dir(digest)
        _rmtree_quiet(d)
        try:  # drop the empty two-letter fan-out directory too, like distribution's gc
            os.rmdir(os.path.dirname(d))
        except OSError:
            pass

    def iter_blobs(self) -> Iterator[str]:
        for alg in sorted(_listdir(self.blobs_dir)):
            for prefix in sorted(_listdir(os.path.join(self.blobs_dir, alg))):
                for enc in sorted(_listdir(os.path.join(self.blobs_dir, alg, prefix))):
                    digest = f"{alg}:{enc}"
                    try:
                        parse_digest(digest)
                    except ValueError:
                        continue
                    yield digest

    # ---- repositories
    def repo_exists(self, name: str) -> bool:
        r = self._repo(name)
        return os.path.isdir(os.path.join(r, "_layers")) or os.path.isdir(os.path.join(r, "_manifests"))

    def list_repos(self) -> list[str]:
        """Walk like distribution's catalog: a directory holding `_layers` or `_manifests` is a repo."""
        found: list[str] = []
        for dirpath, dirnames, _files in os.walk(self.repos_dir):
            if "_layers" in dirnames or "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, self.repos_dir).replace(os.sep, "/"))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)

    def _has(self, path: str) -> bool:
        return os.path.exists(path)

    def _put_link(self, path: str, digest: str) -> None:
        if _read_small(path) != digest.encode():
            _write_atomic(path, digest.encode(), self.fsync)

    def _iter_links(self, base: str) -> Iterator[str]:
        for alg in sorted(_listdir(base)):
            for enc in sorted(_listdir(os.path.join(base, alg))):
                if os.path.exists(os.path.join(base, alg, enc, "link")):
                    yield f"{alg}:{enc}"

    def has_layer(self, name: str, digest: str) -> bool:
        return self._has(self._link(name, "_layers", digest))

    def link_layer(self, name: str, digest: str) -> None:
        self._put_link(self._link(name, "_layers", digest), digest)

    def unlink_layer(self, name: str, digest: str) -> bool:
        return _rmtree_quiet(os.path.dirname(self._link(name, "_layers", digest)))

    def iter_layers(self, name: str) -> Iterator[str]:
        return self._iter_links(os.path.join(self._repo(name), "_layers"))

    def has_revision(self, name: str, digest: str) -> bool:
        return self._has(self._link(name, "_manifests/revisions", digest))

    def link_revision(self, name: str, digest: str) -> None:
        os.makedirs(os.path.join(self._repo(name), "_layers"), exist_ok=True)  # marks the repo for catalogs
        self._put_link(self._link(name, "_manifests/revisions", digest), digest)

    def unlink_revision(self, name: str, digest: str) -> bool:
        return _rmtree_quiet(os.path.dirname(self._link(name, "_manifests/revisions", digest)))

    def iter_revisions(self, name: str) -> Iterator[str]:
        return self._iter_links(os.path.join(self._repo(name), "_manifests", "revisions"))

    def get_tag(self, name: str, tag: str) -> str | None:
        data = _read_small(os.path.join(self._tag_dir(name, tag), "current", "link"))
        return data.decode().strip() if data else None

    def set_tag(self, name: str, tag: str, digest: str) -> None:
        d = self._tag_dir(name, tag)
        alg, enc = parse_digest(digest)
        self._put_link(os.path.join(d, "index", alg, enc, "link"), digest)
        self._put_link(os.path.join(d, "current", "link"), digest)

    def delete_tag(self, name: str, tag: str) -> bool:
        return _rmtree_quiet(self._tag_dir(name, tag))

    def list_tags(self, name: str) -> list[str]:
        base = os.path.join(self._repo(name), "_manifests", "tags")
        return sorted(t for t in _listdir(base) if os.path.exists(os.path.join(base, t, "current", "link")))

    # ---- uploads
    def new_upload(self, name: str) -> str:
        upload_id = str(uuid.uuid4())
        d = self._upload_dir(name, upload_id)
        os.makedirs(d)
        os.makedirs(os.path.join(self._repo(name), "_layers"), exist_ok=True)
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _write_atomic(os.path.join(d, "startedat"), now.encode())
        open(os.path.join(d, "data"), "wb").close()
        return upload_id

    def upload_size(self, name: str, upload_id: str) -> int | None:
        try:
            return os.stat(os.path.join(self._upload_dir(name, upload_id), "data")).st_size
        except (FileNotFoundError, NotADirectoryError):
            return None

    def upload_data_path(self, name: str, upload_id: str) -> str:
        return os.path.join(self._upload_dir(name, upload_id), "data")

    def commit_upload(self, name: str, upload_id: str, digest: str) -> None:
        src = self.upload_data_path(name, upload_id)
        dst_dir = self._blob_dir(digest)
        os.makedirs(dst_dir, exist_ok=True)
        dst = os.path.join(dst_dir, "data")
        if self.fsync:
            fd = os.open(src, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            os.rename(src, dst)  # atomic; identical content if a concurrent push won the race
        except OSError as e:
            if e.errno != errno.ENOENT or not os.path.exists(dst):
                raise
        self.link_layer(name, digest)
        _rmtree_quiet(self._upload_dir(name, upload_id))

    def delete_upload(self, name: str, upload_id: str) -> bool:
        return _rmtree_quiet(self._upload_dir(name, upload_id))

    def iter_uploads(self) -> Iterator[UploadInfo]:
        for repo in self.list_repos():
            base = os.path.join(self._repo(repo), "_uploads")
            for uid in _listdir(base):
                d = os.path.join(base, uid)
                try:
                    st = os.stat(d)
                except FileNotFoundError:
                    continue
                raw = _read_small(os.path.join(d, "startedat"))
                started = (parse_startedat(raw) if raw else None) or st.st_mtime
                try:
                    data = os.stat(os.path.join(d, "data"))
                    size, modified = data.st_size, data.st_mtime
                except FileNotFoundError:
                    size, modified = 0, 0.0
                yield UploadInfo(repo, uid, size, started, modified)
