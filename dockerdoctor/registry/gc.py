"""Offline mark-and-sweep garbage collection for serve-registry storage.

Mark: every manifest revision of every repository (or, with `delete_untagged`, only the
manifests reachable from a tag, plus the referrers whose subject is kept), its config,
layers and child manifests. Sweep: every blob not marked, and `_layers` links that point
to a blob that is gone. Run it while no writable server uses the directory: a blob pushed
but not yet referenced by a manifest looks like garbage.
"""

from __future__ import annotations

import os
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


_DISTRIBUTION = ("registry", "docker-registry", "docker-distribution", "distribution")


def distribution_using(root: str) -> str | None:
    """A running CNCF distribution registry (`registry serve CONFIG`, registry:2 in a container, RHEL's
    docker-distribution) that writes to `root`, described for the user; None when there is none.

    Its storage directory is read from its config (storage.filesystem.rootdirectory, default /var/lib/registry)
    and REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, as that process sees them (through /proc/PID/root, so a
    container's bind mount of `root` counts), and compared by inode. A registry in read-only maintenance mode
    does not count: gc is safe then."""
    try:
        want = os.stat(root)
    except OSError:
        return None
    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency
        return None
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            argv = p.info["cmdline"] or []
        except (psutil.Error, KeyError):
            continue
        if len(argv) < 2 or os.path.basename(argv[0]) not in _DISTRIBUTION or "serve" not in argv[1:3]:
            continue
        pid = p.info["pid"]
        rest = argv[argv.index("serve") + 1:]
        cfg = _distribution_config(pid, rest[0] if rest else "/etc/docker/registry/config.yml")
        env = _environ(pid)
        storage = _section(cfg, "storage")
        fs = _section(storage, "filesystem")
        path = env.get("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") or fs.get("rootdirectory") or "/var/lib/registry"
        ro = _section(_section(storage, "maintenance"), "readonly")
        if str(env.get("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", ro.get("enabled", ""))).lower() == "true":
            continue
        if not isinstance(path, str):
            continue
        try:
            st = os.stat(f"/proc/{pid}/root{path}" if path.startswith("/") else path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            return f"{os.path.basename(argv[0])} (pid {pid}) serves {path}"
    return None


def _section(d: dict, key: str) -> dict:  # type: ignore[type-arg]
    v = d.get(key)
    return v if isinstance(v, dict) else {}


def _distribution_config(pid: int, path: str) -> dict:  # type: ignore[type-arg]
    import yaml

    full = f"/proc/{pid}/root{path}" if path.startswith("/") else os.path.join(f"/proc/{pid}/cwd", path)
    try:
        with open(full, "rb") as fh:
            data = yaml.safe_load(fh.read(1024 * 1024))
    except (OSError, yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read(256 * 1024)
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out
