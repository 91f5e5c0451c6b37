"""Offline mark-and-sweep garbage collection for serve-registry storage.

Mark: every manifest revision of every repository (or, with `delete_untagged`, only the
manifests reachable from a tag, plus the referrers whose subject is kept), its config,
layers and child manifests. Sweep: every blob not marked, and `_layers` links that point
to a blob that is gone. Run it while no writable server uses the directory: a blob pushed
but not yet referenced by a manifest looks like garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockerdoctor.registry.common import RegistryError
from dockerdoctor.registry.manifest_doc import ManifestInfo, describe_manifest
from dockerdoctor.registry.storage import StorageDriver


@dataclass
class GCResult:
    kept_blobs: int = 0
    deleted_blobs: list[tuple[str, int]] = field(default_factory=list)
    deleted_manifests: list[tuple[str, str]] = field(default_factory=list)
    dangling_links: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(size for _d, size in self.deleted_blobs)


def collect(driver: StorageDriver, dry_run: bool = False, delete_untagged: bool = False) -> GCResult:
    result = GCResult()
    marked: set[str] = set()
    for repo in driver.list_repos():
        infos: dict[str, ManifestInfo | None] = {}
        for rev in driver.iter_revisions(repo):
            data = driver.read_blob(rev)
            if data is None:
                result.warnings.append(f"{repo}: manifest {rev} is linked but its blob is missing")
                continue
            try:
                infos[rev] = describe_manifest(data, None)
            except RegistryError as e:
                result.warnings.append(f"{repo}: manifest {rev} does not parse ({e.detail}); kept as is")
                infos[rev] = None
        if delete_untagged:
            keep: set[str] = set()
            todo = [d for d in (driver.get_tag(repo, t) for t in driver.list_tags(repo)) if d]
            while True:
                while todo:
                    d = todo.pop()
                    if d in keep:
                        continue
                    keep.add(d)
                    info = infos.get(d)
                    if info is not None:
                        todo.extend(r for r in info.refs if r in infos)
                # referrers follow their subject
                todo = [d for d, i in infos.items() if d not in keep and i is not None and i.subject in keep]
                if not todo:
                    break
            keep |= {d for d, i in infos.items() if i is None}  # never drop what we cannot read
            for d in list(infos):
                if d not in keep:
                    result.deleted_manifests.append((repo, d))
                    if not dry_run:
                        driver.unlink_revision(repo, d)
                    del infos[d]
        for d, info in infos.items():
            marked.add(d)
            if info is not None:
                marked.update(info.refs)
    for blob in list(driver.iter_blobs()):
        if blob in marked:
            result.kept_blobs += 1
            continue
        result.deleted_blobs.append((blob, driver.blob_size(blob) or 0))
        if not dry_run:
            driver.delete_blob(blob)
    gone = {d for d, _ in result.deleted_blobs}
    for repo in driver.list_repos():
        for layer in list(driver.iter_layers(repo)):
            if layer in gone or driver.blob_size(layer) is None:
                result.dangling_links.append((repo, layer))
                if not dry_run:
                    driver.unlink_layer(repo, layer)
    return result
