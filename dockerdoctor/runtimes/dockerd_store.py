"""dockerd as a client of the registry: which image store it uses (daemon.json
``features.containerd-snapshotter``, or ``docker info``), and an adapter for each store: on the containerd
store it resolves through /etc/docker/certs.d/HOST/hosts.toml, on the classic store through certs.d's
``*.crt`` files and insecure-registries (never hosts.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import DEFAULT, DOCKER_HUB, Endpoint, ImageRef, Origin, Resolution, TlsMaterial
from dockerdoctor.runtimes.containerd import DOCKER_CERTS_D, source_lister, source_reader
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime


@dataclass
class DockerdClassic:
    """dockerd on its classic image store: certs.d/*.crt, insecure-registries; never hosts.toml."""

    insecure: tuple[str, ...]
    certs: dict[str, list[str]]
    mirrors: tuple[str, ...] = ()
    name: str = "dockerd"
    display: str = "dockerd (classic image store)"
    netns: str | None = None
    origin: Origin = DEFAULT

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        from dockerdoctor.facts import HostPort
        from dockerdoctor.facts.daemon import trusted_as_insecure

        eps: list[Endpoint] = []
        if ref.registry == DOCKER_HUB and not push:
            for m in self.mirrors:
                hp = m.split("://", 1)[-1].rstrip("/")
                eps.append(Endpoint(m.rstrip("/") + "/v2", "http" if m.startswith("http://") else "https", hp,
                                    "mirror"))
        host = "registry-1.docker.io" if ref.registry == DOCKER_HUB else ref.registry
        d = f"{DOCKER_CERTS_D}/{ref.registry}"
        files = self.certs.get(ref.registry, [])
        cas = tuple(f"{d}/{f}" for f in files if f.endswith(".crt"))
        pairs = tuple((f"{d}/{f}", f"{d}/{f[:-5]}.key") for f in files if f.endswith(".cert"))
        try:
            insecure = bool(trusted_as_insecure(HostPort.parse(ref.registry), list(self.insecure)))
        except ValueError:
            insecure = False
        notes = ("hosts.toml in certs.d is never read by the classic store",) if "hosts.toml" in files else ()
        eps.append(Endpoint(f"https://{host}/v2", "https", host, "registry",
                            tls=TlsMaterial(cas, pairs, insecure, True, Origin(d) if files else DEFAULT),
                            http_fallback=insecure, notes=notes))
        return Resolution(self.name, ref, tuple(eps))


@dataclass(frozen=True)
class DockerdStore:
    store: str  # "containerd" | "classic"
    origin: Origin
    why: str


SNAPSHOTTER_TYPE = "io.containerd.snapshotter.v1"
# Storage Driver names only a containerd snapshotter has (overlay2, btrfs, zfs, vfs ... are also graph drivers)
SNAPSHOTTER_ONLY_NAMES = frozenset({"overlayfs", "stargz", "native", "nydus", "soci"})


def store_from_info(info: Any) -> DockerdStore | None:
    """The store the running dockerd reports in `docker info` (Engine API /info live): `Storage Driver:
    overlayfs` with `driver-type: io.containerd.snapshotter.v1` under it on the containerd store, a graph
    driver (overlay2, ...) without it on the classic one. None when docker info says nothing about it."""
    if info is None or not info.storage_driver:
        return None
    where = Origin(info.source, info.storage_driver_line)
    kind = info.driver_status.get("driver-type")
    if kind == SNAPSHOTTER_TYPE or (kind is None and info.storage_driver in SNAPSHOTTER_ONLY_NAMES):
        return DockerdStore("containerd", where, f"docker info: Storage Driver {info.storage_driver}"
                            + (f", driver-type {kind}" if kind else " (a containerd snapshotter)"))
    return DockerdStore("classic", where, f"docker info: Storage Driver {info.storage_driver} (a graph driver)")


def store_from_daemon_json(dj: Any) -> DockerdStore | None:
    feats = dj.data.get("features") if dj is not None and isinstance(dj.data, dict) else None
    if not isinstance(feats, dict) or "containerd-snapshotter" not in feats:
        return None
    on = feats.get("containerd-snapshotter") is True
    return DockerdStore("containerd" if on else "classic", Origin(dj.path, dj.line_of("features")),
                        f"daemon.json features.containerd-snapshotter = {str(on).lower()}")


@fact()
def dockerd_image_store(facts: Facts) -> DockerdStore | None:
    """Which image store dockerd uses: what the running dockerd reports (`docker info`: Storage Driver and its
    driver-type), else daemon.json features.containerd-snapshotter, else the Engine's default. None when there
    is no dockerd to ask about."""
    dj = facts.optional("daemon_json")
    running = store_from_info(facts.optional("docker_info"))
    planned = store_from_daemon_json(dj)
    if running is not None:
        if planned is not None and planned.store != running.store:
            return DockerdStore(running.store, running.origin, f"{running.why}; {planned.why} takes effect only "
                                "when dockerd restarts")
        return running
    if planned is not None:
        return planned
    version = facts.optional("engine_version")
    if version is not None and tuple(version) >= (29, 0, 0):
        return DockerdStore("containerd", DEFAULT, "Engine >= 29.0 defaults to the containerd store on a fresh "
                            "install (not provable from files; check docker info)")
    if (dj is None or not dj.exists) and facts.optional("dockerd_process") is None:
        return None
    return DockerdStore("classic", Origin(dj.path) if dj is not None else DEFAULT, "no containerd-snapshotter feature")


def _store_setup(facts: Facts, store: str) -> tuple[DockerdStore, tuple[str, ...]] | None:
    """dockerd's store when it is `store`, with its planned insecure-registries; None otherwise."""
    st: DockerdStore | None = facts.optional("dockerd_image_store")
    if st is None or st.store != store:
        return None
    cfg = facts.optional("effective_config")
    return st, tuple(v.value for v in (cfg.insecure_planned if cfg else []))


@fact()
def dockerd_containerd_store(facts: Facts) -> HostsDirRuntime | None:
    """dockerd on the containerd image store: /etc/docker/certs.d/HOST/hosts.toml in containerd's format."""
    got = _store_setup(facts, "containerd")
    return _containerd_store(facts, *got) if got else None


def _containerd_store(facts: Facts, st: DockerdStore, insecure: tuple[str, ...]) -> HostsDirRuntime:
    return HostsDirRuntime("dockerd-containerd-store", "dockerd (containerd image store)", (DOCKER_CERTS_D,),
                           source_lister(facts), source_reader(facts), None, None,
                           Origin(st.origin.source, st.origin.line, st.why), insecure=insecure)


@fact()
def dockerd_classic(facts: Facts) -> DockerdClassic | None:
    """dockerd on its classic image store (for `resolve`: certs.d *.crt and insecure-registries)."""
    got = _store_setup(facts, "classic")
    certs = facts.optional("certs_d") or {} if got else {}
    return DockerdClassic(got[1], {k: list(v.files) for k, v in certs.items()}, origin=got[0].origin) if got else None
