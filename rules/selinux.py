"""SELinux on the registry host: the label of the registry's storage, and AVC denials."""

from __future__ import annotations

from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.containers import ContainerInfo, Mount
from dockerdoctor.facts.ports import RegistryProcess
from dockerdoctor.facts.registry_containers import RegistryContainer, mount_covering
from dockerdoctor.facts.selinux import (
    CONTAINER_FILE_TYPES,
    AuditLog,
    AvcDenial,
    FcontextRule,
    FileLabel,
    SelinuxLabels,
    SelinuxStatus,
)
from dockerdoctor.fixes.recipes import relabel_fix
from dockerdoctor.fixes.recipes.selinux import avc_fix
from dockerdoctor.model import Evidence, Finding, Severity
from dockerdoctor.safetext import short

CONFINED_CONTAINER_TYPES = {"container_t", "svirt_lxc_net_t", "svirt_sandbox_t", "container_init_t"}
REGISTRY_COMMS = {"registry", "docker-registry", "gunicorn", "zot", "registry_DO_NOT", "harbor_registry"}


def _data_mounts(rc: RegistryContainer) -> list[Mount]:
    out = []
    m = mount_covering(rc.container, rc.data_dir) if rc.data_dir else None
    if m is not None and m.type == "bind":
        out.append(m)
    for x in rc.container.mounts:
        if x.type == "bind" and x.rw and x not in out and not x.source.startswith(("/var/run", "/run", "/proc",
                                                                                  "/sys", "/dev")):
            out.append(x)
    return out


# ============================================================================ DD304


@rule("DD304", "selinux-volume-label", category="network", severity=Severity.ERROR,
      title="SELinux blocks the registry's bind mount")
def selinux_volume_label(selinux_status: SelinuxStatus, registry_containers: list[RegistryContainer],
                         selinux_labels: SelinuxLabels | None = None,
                         avc_denials: AuditLog | None = None) -> Iterator[Finding]:
    """SELinux is enforcing, docker labels its containers (--selinux-enabled), and the registry's
    host directory is mounted with neither `:z`/`:Z` nor a container_file_t label. The registry
    starts, but every push fails with `500 Internal Server Error` and the log shows `permission
    denied` (DD405); the audit log has the matching AVC denial (DD305).

    Why it happens: a directory created by hand (/srv/registry, /data/registry) gets default_t,
    var_t or user_home_t; a confined container (container_t) may not write those. Old guides
    answered with `setenforce 0`.

    How to fix: recreate the container with `:Z` on the volume (`-v /srv/registry:/var/lib/registry:Z`,
    docker relabels it for this container), or label the directory once:
    `semanage fcontext -a -t container_file_t '/srv/registry(/.*)?' && restorecon -Rv /srv/registry`.
    Never `setenforce 0`.

    Example:
        $ ls -dZ /srv/registry
        unconfined_u:object_r:default_t:s0 /srv/registry
        registry: filesystem: mkdir /var/lib/registry/docker: permission denied
    """
    s = selinux_status
    if not s.enforcing:
        raise Skip(f"SELinux is {s.mode or 'unknown'}, not enforcing")
    if s.docker_selinux is False:
        raise Skip(f"dockerd does not label containers (no --selinux-enabled; {s.docker_selinux_source})")
    if not registry_containers:
        raise Skip("no registry container on this host")
    for rc in registry_containers:
        c = rc.container
        for m in _data_mounts(rc):
            if m.selinux_label:
                continue
            label = selinux_labels.label_of(m.source) if selinux_labels else None
            if label is not None and label.type in CONTAINER_FILE_TYPES:
                continue
            denied = _denials_on(avc_denials, m, label)
            if label is None and not denied:
                continue  # the label is unknown and nothing was denied: no evidence either way
            ev = _label_evidence(s, c, m, label, selinux_labels.rule_for(m.source) if selinux_labels else None,
                                 avc_denials, denied)
            yield _unlabelled(rc, m, label, denied, ev)


def _unlabelled(rc: RegistryContainer, m: Mount, label: FileLabel | None, denied: list[AvcDenial],
                ev: list[Evidence]) -> Finding:
    c = rc.container
    if label is not None:
        what = f"labelled {label.type}"
    elif denied and denied[-1].ttype:
        what = f"labelled {denied[-1].ttype} (as the AVC denial shows)"
    else:
        what = "of unknown label"
    return finding(
        "DD304", f"Registry {c.name} cannot write {m.source} under SELinux",
        f"SELinux is enforcing and {c.name} mounts {m.source} at {m.destination} without :z/:Z; the "
        f"directory is {what}, which a confined container (container_t) may not write"
        + (f" ({len(denied)} AVC denial{'s' if len(denied) != 1 else ''} in the audit log)." if denied else "."),
        evidence=ev, fix=relabel_fix(rc, m),
        params={"container": c.name, "source": m.source, "destination": m.destination,
                "label": label.context if label else None},
    )


def _denials_on(avc_denials: AuditLog | None, m: Mount, label: FileLabel | None) -> list[AvcDenial]:
    """The audit log's denials on the mount's host directory (of its label's type, when the label is known)."""
    return [d for d in (avc_denials.denials if avc_denials else [])
            if d.ttype and (label is None or d.ttype == label.type)
            and (d.path and d.path.startswith(m.source) or d.name == m.source.rstrip("/").rsplit("/", 1)[-1])]


def _label_evidence(s: SelinuxStatus, c: ContainerInfo, m: Mount, label: FileLabel | None, rule_: FcontextRule | None,
                    avc_denials: AuditLog | None, denied: list[AvcDenial]) -> list[Evidence]:
    ev = [c.evidence(f"{c.name}: -v {m.source}:{m.destination}" + (f":{m.mode}" if m.mode else "")
                     + " (no :z or :Z)"),
          Evidence(s.source, f"SELinux {s.mode}; docker labels containers: "
                             f"{'yes' if s.docker_selinux else 'unknown'}")]
    if label is not None:
        ev.append(label.evidence())
    if rule_ is not None and rule_.type in CONTAINER_FILE_TYPES:
        ev.append(rule_.evidence(f"{rule_.pattern} {rule_.context} (never applied: run restorecon)"))
    if denied:
        ev.append(Evidence(avc_denials.source if avc_denials else "audit.log", short(denied[-1].text, 300),
                           denied[-1].line))
    return ev


# ============================================================================ DD305


def _concerns_registry(d: AvcDenial, dirs: list[str], pids: set[int]) -> bool:
    if d.comm and d.comm in REGISTRY_COMMS:
        return True
    if d.pid is not None and d.pid in pids:
        return True
    if d.stype in CONFINED_CONTAINER_TYPES:
        for p in dirs:
            base = p.rstrip("/").rsplit("/", 1)[-1]
            if (d.path and (d.path == p or d.path.startswith(p.rstrip("/") + "/"))) or (d.name and d.name == base):
                return True
    return False


def _denied_mount(d: AvcDenial, dirs: dict[str, tuple[RegistryContainer, Mount]]
                  ) -> tuple[RegistryContainer, Mount] | None:
    """The registry container and bind mount whose host directory the denial names, if any."""
    for p, (rc, m) in dirs.items():
        base = p.rstrip("/").rsplit("/", 1)[-1]
        if (d.path and d.path.startswith(p)) or d.name == base:
            return rc, m
    return None


@rule("DD305", "selinux-denials", category="network", severity=Severity.ERROR,
      title="SELinux denies the registry")
def selinux_denials(avc_denials: AuditLog, registry_containers: list[RegistryContainer] | None = None,
                    selinux_status: SelinuxStatus | None = None,
                    registry_processes: list[RegistryProcess] | None = None) -> Iterator[Finding]:
    """The audit log has AVC denials for the registry's process or its files: SELinux stops the
    registry from writing (or reading) its storage, certificates or config.

    Why it happens: see DD304: the files carry a label a confined container or the
    docker-distribution service (registry_t on RHEL) may not use. With `permissive=1` the access
    was only logged; it will fail once SELinux enforces.

    How to fix: relabel what the denial names, never `setenforce 0`: `:Z` on the volume, or
    `semanage fcontext -a -t container_file_t 'DIR(/.*)?' && restorecon -Rv DIR`.
    `ausearch -m avc -ts recent | audit2why` explains each denial.

    Example:
        type=AVC msg=audit(1709550000.123:812): avc:  denied  { write } for  pid=2711 comm="registry"
        name="registry" dev="dm-0" ino=1048 scontext=system_u:system_r:container_t:s0:c123,c456
        tcontext=unconfined_u:object_r:default_t:s0 tclass=dir permissive=0
    """
    if not avc_denials.denials:
        return
    dirs: dict[str, tuple[RegistryContainer, Mount]] = {}
    for rc in registry_containers or []:
        for m in _data_mounts(rc):
            dirs[m.source] = (rc, m)
    pids = {p.pid for p in registry_processes or [] if p.pid}
    hits = [d for d in avc_denials.denials if _concerns_registry(d, list(dirs), pids)]
    if not hits:
        return
    groups: dict[tuple[str | None, str | None, str | None, tuple[str, ...]], list[AvcDenial]] = {}
    for d in hits:
        groups.setdefault((d.comm, d.ttype, d.tclass, d.perms), []).append(d)
    enforcing = selinux_status.enforcing if selinux_status is not None else None
    for ds in groups.values():
        yield _denied(avc_denials, ds, _denied_mount(ds[-1], dirs), enforcing)


def _denied(avc_denials: AuditLog, ds: list[AvcDenial], target: tuple[RegistryContainer, Mount] | None,
            enforcing: bool | None) -> Finding:
    """One kind of denial (same command, target type, class and permissions), with its last three lines."""
    comm, ttype, tclass, perms = ds[0].comm, ds[0].ttype, ds[0].tclass, ds[0].perms
    last = ds[-1]
    only_permissive = all(d.permissive for d in ds)
    what = last.path or last.name or "?"
    return finding(
        "DD305", f"SELinux denied {comm or '?'} {' '.join(perms)} on {what} ({ttype})",
        f"{len(ds)} AVC denial{'s' if len(ds) != 1 else ''} for {comm or 'the registry'}: "
        f"{{ {' '.join(perms)} }} on {tclass} {what} labelled {ttype}, from {last.stype}"
        + (" (permissive: logged only, it fails once SELinux enforces)" if only_permissive else "") + ".",
        severity=Severity.WARNING if only_permissive or enforcing is False else Severity.ERROR,
        evidence=[avc_denials.evidence(short(d.text, 400), d.line) for d in ds[-3:]],
        fix=relabel_fix(*target) if target is not None else avc_fix(comm),
        params={"comm": comm, "tcontext_type": ttype, "tclass": tclass, "perms": list(perms),
                "count": len(ds), "path": what},
    )
