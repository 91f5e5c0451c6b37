"""Manifest resources: GET/HEAD/PUT/DELETE `/v2/<name>/manifests/<reference>`."""

from __future__ import annotations

from aiohttp import web

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.common import INDEX_TYPES, MAX_MANIFEST, RegistryError
from dockerdoctor.registry.discovery import DiscoveryMixin, parse_stored
from dockerdoctor.registry.manifest_doc import ManifestInfo, describe_manifest

PARSE_INLINE = 64 * 1024  # manifests up to this size are parsed on the event loop (a real one is ~1-10 KB)


class ManifestsMixin(DiscoveryMixin):
    async def _manifest_info(self, digest: str) -> ManifestInfo | None:
        info = self.manifests.get(digest)
        if info is not None:
            self.manifests.move_to_end(digest)
            return info
        data = await self.st("read_blob", digest)
        if data is None:
            return None
        info = parse_stored(data)
        self._cache_manifest(digest, info)
        return info

    async def _resolve(self, name: str, ref: str) -> str:
        if dg.looks_like_digest(ref):
            digest = self._digest(ref)
            if await self.st("has_revision", name, digest):
                return digest
        elif dg.valid_tag(ref):
            digest = await self.st("get_tag", name, ref) or ""
            if digest:
                return digest
        # A reference that is no valid tag names no manifest: 404, as the v1.1.1 conformance suite
        # and Harbor expect (a PUT to such a reference is still MANIFEST_INVALID).
        raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref[:256]})

    async def get_manifest(self, request: web.Request, name: str, ref: str) -> web.StreamResponse:
        digest = await self._resolve(name, ref)
        info = await self._manifest_info(digest)
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
        ct = request.headers.get("Content-Type")
        # a big body (up to 4 MiB, maybe hostile) is parsed in a thread, not on the event loop
        info = await self.io(describe_manifest, data, ct) if len(data) > PARSE_INLINE else describe_manifest(data, ct)
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
                    raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": t[:256]})
        else:
            if not dg.valid_tag(ref):
                raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": ref[:256]})
            tags = [ref]
            digest = dg.digest_of(data)
        for needed in info.refs:
            if info.media_type in INDEX_TYPES:
                present = await self.st("has_revision", name, needed)
            else:
                present = await self.st("has_layer", name, needed)
            if not present:
                raise RegistryError("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", {"digest": needed})

        def store() -> None:
            self.driver.write_blob(digest, data)
            self.driver.link_revision(name, digest)
            for t in tags:
                self.driver.set_tag(name, t, digest)

        if self.driver.local:
            await self.io(store)
        else:
            await self.st("write_blob", digest, data)
            await self.st("link_revision", name, digest)
            for t in tags:
                await self.st("set_tag", name, t, digest)
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

            def untag_and_unlink() -> bool:
                # Every tag is read (20,000 tags: seconds): in a thread, so other requests go on.
                if not self.driver.has_revision(name, digest):
                    return False
                for tag in self.driver.list_tags(name):
                    if self.driver.get_tag(name, tag) == digest:
                        self.driver.delete_tag(name, tag)
                self.driver.unlink_revision(name, digest)
                return True

            found = await self.walk(untag_and_unlink)
        else:
            found = dg.valid_tag(ref) and await self.sto("delete_tag", name, ref)
        if not found:
            raise RegistryError("MANIFEST_UNKNOWN", "manifest unknown", {"name": name, "reference": ref[:256]})
        return web.Response(status=202)
