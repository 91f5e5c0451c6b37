"""Listing resources: `_catalog`, `tags/list` and the referrers API. Walks run off the event loop."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web

from dockerdoctor.registry.base import RegistryBase
from dockerdoctor.registry.common import MAX_PAGE, OCI_INDEX, RegistryError, parse_int
from dockerdoctor.registry.manifest_doc import ManifestInfo, describe_manifest, stored_media_type


def parse_stored(data: bytes) -> ManifestInfo:
    """What a stored manifest is, even one we would refuse today (schema1, say)."""
    try:
        return describe_manifest(data, None)
    except RegistryError:
        return ManifestInfo(data=data, media_type=stored_media_type(data))


class DiscoveryMixin(RegistryBase):
    @staticmethod
    def _paginate(items: list[str], request: web.Request, base: str) -> tuple[list[str], dict[str, str]]:
        n = parse_int(request.query.get("n"), "n")
        if n is not None:
            n = min(n, MAX_PAGE)
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
        def walk() -> list[str] | None:
            return self.driver.list_tags(name) if self.driver.repo_exists(name) else None

        tags = await self.walk(walk)
        if tags is None:
            raise RegistryError("NAME_UNKNOWN", "repository name not known to registry", {"name": name})
        tags, headers = self._paginate(tags, request, f"/v2/{name}/tags/list")
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        repos = await self.walk(self.driver.list_repos)
        repos, headers = self._paginate(repos, request, "/v2/_catalog")
        return web.json_response({"repositories": repos}, headers=headers)

    async def referrers(self, request: web.Request, name: str, digest: str) -> web.StreamResponse:
        self._digest(digest)
        wanted = request.query.get("artifactType")
        cached = dict(self.manifests)  # a snapshot: the walk runs in a thread

        def walk() -> list[tuple[str, ManifestInfo, bool]]:
            found: list[tuple[str, ManifestInfo, bool]] = []
            if not self.driver.repo_exists(name):
                return found
            for rev in list(self.driver.iter_revisions(name)):
                info = cached.get(rev)
                fresh = info is None
                if info is None:
                    data = self.driver.read_blob(rev)
                    if data is None:
                        continue
                    info = parse_stored(data)
                found.append((rev, info, fresh))
            return found

        result = []
        for rev, info, fresh in await self.walk(walk):
            if fresh:
                self._cache_manifest(rev, info)
            if info.subject != digest or (wanted and info.artifact_type != wanted):
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

    def _cache_manifest(self, digest: str, info: ManifestInfo) -> None:
        """Keep parsed manifests (immutable by digest) up to the cache limit in bytes, least recently used out."""
        if digest in self.manifests:
            return
        self.manifests[digest] = info
        self.manifest_bytes += len(info.data)
        while self.manifest_bytes > self.manifest_cache_limit and len(self.manifests) > 1:
            _, old = self.manifests.popitem(last=False)
            self.manifest_bytes -= len(old.data)
