"""The S3 driver's blob, repository, link and tag operations (coroutines) in distribution's layout."""

from __future__ import annotations

from typing import Any

from dockerdoctor.registry.digests import parse_digest
from dockerdoctor.registry.s3_session import S3Session, _missing


class S3Objects(S3Session):
    """Blobs, repositories, layer and revision links, tags."""

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

