"""The registry container: does it run, keep its data, publish its port, and can it write?"""

from __future__ import annotations

import re
from collections.abc import Iterator

from dockerdoctor.rules.registry_evidence import need_containers, need_logs

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.containers import ContainerInfo, Mount, PortBinding
from dockerdoctor.facts.host import TargetRegistry
from dockerdoctor.facts.interfaces import IfAddr
from dockerdoctor.facts.ports import ListenSocket, RegistryListener, RegistryProcess
from dockerdoctor.facts.registry_containers import V0_DATA_DIR, V2_DATA_DIR, RegistryContainer, mount_covering
from dockerdoctor.facts.selinux import SelinuxStatus
from dockerdoctor.fixes.recipes import docker_run_argv
from dockerdoctor.fixes.recipes.container import (
    persistent_data_fix,
    recreate_fix,
    start_container_fix,
    writable_storage_fix,
)
from dockerdoctor.fixes.recipes.registry import start_registry_fix
from dockerdoctor.model import Evidence, Finding, Severity
from dockerdoctor.safetext import short

LOCK_CRASH = re.compile(r"_setup_database\.lock")
FATAL = re.compile(r"level=(fatal|panic)|^\S*\s*panic:|Traceback|[A-Z][A-Za-z]+Error: |exited with code", re.I)
ERROR_LINE = re.compile(r"level=(error|fatal|panic)|\bfatal\b|Error|ERROR|Traceback|Exception|"
                        r"[A-Z][A-Za-z]+Error: |panic:|permission denied|address already in use", re.I)
PERMISSION_DENIED = re.compile(r"permission denied|Errno 13|EACCES|read-only file system", re.I)
STORAGE_WORDS = re.compile(r"storage|filesystem|/var/lib/registry|/tmp/registry|/registry|rootdirectory|"
                           r"mkdir|open |rename|docker/registry/v2|\.lock|IOError|OSError", re.I)


def _last_error(c: ContainerInfo) -> tuple[int, str] | None:
    for i in range(len(c.logs) - 1, -1, -1):
        line = c.logs[i]
        if ERROR_LINE.search(line) and not line.strip().startswith("File \""):
            return i + 1, line
    for i in range(len(c.logs) - 1, -1, -1):
        if c.logs[i].strip():
            return i + 1, c.logs[i]
    return None


def _state_text(c: ContainerInfo) -> str:
    bits = [f"Status={c.status}"]
    if c.exit_code is not None:
        bits.append(f"ExitCode={c.exit_code}")
    bits.append(f"RestartCount={c.restart_count}")
    if c.restart_policy != "no":
        bits.append(f"RestartPolicy={c.restart_policy}" + (f":{c.restart_max}" if c.restart_max else ""))
    if c.error:
        bits.append(f"Error={c.error}")
    if c.oom_killed:
        bits.append("OOMKilled=true")
    return " ".join(bits)


# ============================================================================ DD401


@rule("DD401", "registry-lock-crash", category="registry", severity=Severity.ERROR,
      title="The python registry crashes on _setup_database.lock")
def registry_lock_crash(registry_containers: list[RegistryContainer]) -> Iterator[Finding]:
    """The python docker-registry (v0.x) dies at start with a traceback that ends in
    `registry._setup_database.lock`, and restart-loops under its restart policy.

    Why it happens: docker-registry 0.9 runs gunicorn with several workers, and each worker
    imports the app and runs `_setup_database()`, which opens `./registry._setup_database.lock`
    relative to the working directory. Workers race on that lock (or the directory is not
    writable), and the worker crash takes gunicorn down (exit code 3: worker failed to boot).

    How to fix: recreate the container with `GUNICORN_OPTS=[--preload]`, which loads the app once
    in the master before forking, so the database is set up exactly once. Everything else (name,
    ports, volumes, environment, restart policy, labels) is kept: the plan shows the exact
    `docker run` line, read from the Engine API. Better still, move to registry:2 (the v0 API and
    this image have been unsupported since 2015).

    Example:
        File "/usr/local/lib/python2.7/dist-packages/docker_registry/lib/mirroring.py", line 28, in _setup_database
          with open('./registry._setup_database.lock', 'w+') as f:
        OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'
    """
    need_logs(registry_containers)
    for rc in registry_containers:
        c = rc.container
        hits = c.log_grep(LOCK_CRASH)
        if not hits:
            continue
        if "--preload" in c.env.get("GUNICORN_OPTS", "") and c.running and c.restart_count == 0:
            continue  # fixed already; the lines are old
        ev = [c.log_evidence(*hits[-1])]
        last = _last_error(c)
        if last and last[0] != hits[-1][0]:
            ev.append(c.log_evidence(*last))
        ev.append(c.evidence(_state_text(c)))
        run = docker_run_argv(c, set_env={"GUNICORN_OPTS": "[--preload]"})
        yield finding(
            "DD401", f"Registry container {c.name} crashes on _setup_database.lock",
            f"{c.name} ({c.image}) logs the gunicorn _setup_database.lock traceback"
            f" ({len(hits)} time{'s' if len(hits) != 1 else ''} in the last {len(c.logs)} log lines) and is "
            f"{c.status} after {c.restart_count} restart{'s' if c.restart_count != 1 else ''}. "
            "GUNICORN_OPTS=[--preload] sets the database up once, before gunicorn forks its workers.",
            evidence=ev,
            fix=recreate_fix(c, run, f"Recreate {c.name} with GUNICORN_OPTS=[--preload], keeping everything else",
                             "the same container, plus GUNICORN_OPTS=[--preload]",
                             warnings=("Data outside a volume is lost with the old container (see DD403).",
                                       "registry:2 replaces this python registry; plan the move.")),
            params={"container": c.name, "image": c.image, "docker_run": " ".join(run)},
        )


# ============================================================================ DD402


@rule("DD402", "registry-down", category="registry", severity=Severity.ERROR,
      title="The registry is not running")
def registry_down(registry_containers: list[RegistryContainer] | None = None,
                  target_registries: list[TargetRegistry] | None = None,
                  interface_addresses: list[IfAddr] | None = None,
                  registry_listeners: list[RegistryListener] | None = None,
                  listening_sockets: list[ListenSocket] | None = None,
                  registry_processes: list[RegistryProcess] | None = None) -> Iterator[Finding]:
    """The registry container has exited, is restarting in a loop, or never started; or the
    registry named with --registry is on this host and nothing serves its port (absent).

    Why it happens: the registry exits at start on a bad configuration (a TLS certificate path
    that is not mounted, a port already taken, a storage directory it cannot write), or crashes
    (DD401). A restart policy hides the crash as a loop: `docker ps` shows "Restarting (1) 2
    seconds ago" and every push gets `connection refused`.

    How to fix: read the last error (quoted in the finding, with State.Error), fix its cause, then
    `docker start NAME`. Related rules name the common causes: DD401, DD303, DD304, DD405.

    Example:
        registry  Restarting (1)  level=fatal msg="open /certs/domain.crt: no such file or directory"
    """
    if registry_containers is None and not any(t.explicit for t in target_registries or []):
        raise Skip("no container information, and no --registry on this host to look for")
    if registry_containers is None and (interface_addresses is None or listening_sockets is None):
        # Without containers, addresses or sockets nothing was looked at: a pass would be a guess.
        raise Skip("no container information, and this host's addresses or listening sockets are unknown, so "
                   "whether a registry runs here cannot be told")
    registry_containers = registry_containers or []
    running_elsewhere = [rc for rc in registry_containers if rc.container.running and rc.container.restart_count < 3]
    for rc in registry_containers:
        c = rc.container
        looping = c.restarting or (c.running and c.restart_count >= 3
                                   and any(FATAL.search(ln) for ln in c.logs[-10:]))
        if c.running and not looping:
            continue
        # an old, stopped copy next to a running registry is a warning
        old_copy = bool(running_elsewhere) and rc not in running_elsewhere and c.status == "exited" \
            and c.restart_policy == "no"
        yield _down(c, looping, Severity.WARNING if old_copy else Severity.ERROR)
    yield from _absent(registry_containers, target_registries, interface_addresses, registry_listeners,
                       listening_sockets, registry_processes)


def _down(c: ContainerInfo, looping: bool, severity: Severity) -> Finding:
    what = _down_state(c, looping)
    ev = [c.evidence(_state_text(c))]
    last = _last_error(c)
    reason = ""
    if last:
        ev.append(c.log_evidence(*last))
        reason = f" Last error: {short(last[1], 200)}"
    elif c.error:
        reason = f" State.Error: {c.error}"
    return finding(
        "DD402", f"Registry container {c.name} {what}",
        f"{c.name} ({c.image}) {what}, so nothing serves the registry port.{reason}",
        severity=severity,
        evidence=ev,
        fix=start_container_fix(c.name),
        params={"container": c.name, "status": c.status, "exit_code": c.exit_code,
                "restart_count": c.restart_count, "error": c.error},
    )


def _down_state(c: ContainerInfo, looping: bool) -> str:
    """How a registry container that serves nothing is down, as the finding says it."""
    if c.status == "created":
        return "was created but never started"
    if c.status in ("restarting",) or looping:
        return f"is restarting in a loop ({c.restart_count} restarts)"
    if c.status == "paused":
        return "is paused"
    return f"has exited (code {c.exit_code})" + (f" after {c.restart_count} restarts" if c.restart_count else "")


def _absent(registry_containers: list[RegistryContainer], target_registries: list[TargetRegistry] | None,
            interface_addresses: list[IfAddr] | None, registry_listeners: list[RegistryListener] | None,
            listening_sockets: list[ListenSocket] | None,
            registry_processes: list[RegistryProcess] | None) -> Iterator[Finding]:
    """--registry names an address of this host, and no registry (container, process, listener) has its port."""
    if listening_sockets is None:
        return  # cannot tell whether something listens
    local = {"localhost", "127.0.0.1", "::1"} | {a.address for a in interface_addresses or []}
    for t in target_registries or []:
        if not t.explicit or t.address.host not in local or t.address.port is None:
            continue
        port = t.address.port
        if any(lst.port == port for lst in registry_listeners or []):
            continue
        wanted = {p.host_port for rc in registry_containers for p in rc.container.ports} | {
            rc.port for rc in registry_containers if rc.container.host_network}
        if port in wanted:
            continue  # a registry container wants it: the loop above reports its state
        if any(s.port == port for s in listening_sockets):
            continue  # something else answers there: DD303 / DD210 tell what
        ev = [Evidence(listening_sockets[0].source or "listening sockets" if listening_sockets
                       else "listening sockets", f"nothing listens on port {port}")]
        ev.append(Evidence("registry containers",
                           ", ".join(f"{rc.name} ({rc.container.status})" for rc in registry_containers) or "none"))
        if registry_processes is not None:
            ev.append(Evidence("process table", ", ".join(f"{p.name} (pid {p.pid})" for p in registry_processes)
                               or "no registry process"))
        yield finding(
            "DD402", f"No registry runs on {t.address}",
            f"{t.address} is an address of this host, but no registry container, registry process or listener has "
            f"port {port}: the registry is absent (removed, never started, or its service is stopped).",
            evidence=ev,
            fix=start_registry_fix(port),
            params={"registry": str(t.address), "status": "absent"},
        )


# ============================================================================ DD403


def _is_persistent(m: Mount) -> bool:
    return m.type == "bind" or (m.type == "volume" and not m.anonymous)


@rule("DD403", "registry-data-not-persistent", category="registry", severity=Severity.ERROR,
      title="The registry's data is not on a volume")
def registry_data_not_persistent(registry_containers: list[RegistryContainer]) -> Iterator[Finding]:
    """The registry stores images inside the container (or in an anonymous volume), or its volume
    is mounted at a path the registry does not write to. The images vanish with the container.

    Why it happens: the path changed between generations. The python registry (v0.x, 2014-2015)
    stored under /tmp/registry (or $STORAGE_PATH); registry 2 stores under /var/lib/registry (or
    $REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, or storage.filesystem.rootdirectory in its
    config.yml). Old guides say `-v /data:/tmp/registry`; with registry:2 that volume stays empty.
    The version is read from evidence (tag, command, environment, log lines), because `registry`
    without a tag meant v0 in 2015 and means v2 today.

    How to fix: recreate the container with a named volume or a host directory at the path the
    registry really uses. Copy the existing data out first (`docker cp NAME:/var/lib/registry .`).

    Example:
        registry:2 with -v /srv/registry:/tmp/registry: images are written to /var/lib/registry,
        inside the container, and are lost on `docker rm`.
    """
    need_containers(registry_containers)
    for rc in registry_containers:
        c = rc.container
        if rc.data_dir is None:
            continue  # object storage, or the version is unknown and nothing says where
        m = mount_covering(c, rc.data_dir)
        ev = [c.evidence(f"image {c.image}; {rc.version}: " + "; ".join(rc.version_why or ["no evidence"])),
              c.evidence("mounts: " + (", ".join(f"{x.source or x.name}:{x.destination}" for x in c.mounts)
                                               or "none"))]
        if m is not None and _is_persistent(m) and m.destination != "/":
            continue
        other = _mount_at_other_generation(rc)
        problem, severity = _data_problem(rc, m, other)
        keep = other or (m if m is not None and m.anonymous else None)
        yield finding(
            "DD403", f"Registry {c.name} keeps its data inside the container",
            f"{c.name} ({c.image}, {rc.version}) writes images to {rc.data_dir}, but {problem}.",
            severity=severity, evidence=ev,
            fix=persistent_data_fix(c, rc.data_dir, keep),
            params={"container": c.name, "version": rc.version, "data_dir": rc.data_dir,
                    "wrong_mount": other.destination if other else None},
        )


def _mount_at_other_generation(rc: RegistryContainer) -> Mount | None:
    """The (last) volume mounted at the other generation's data path (/tmp/registry for a v2 registry)."""
    wrong = V0_DATA_DIR if rc.version == "v2" else V2_DATA_DIR if rc.version == "v0" else None
    other = None
    for x in rc.container.mounts:
        if _is_persistent(x) and wrong and (x.destination.rstrip("/") == wrong):
            other = x
    return other


def _data_problem(rc: RegistryContainer, m: Mount | None, other: Mount | None) -> tuple[str, Severity]:
    if m is not None and m.anonymous:
        problem = (f"its data directory {rc.data_dir} ({rc.data_dir_why}) is an anonymous volume, which "
                   "`docker rm -v`, `docker compose down -v` or a recreate without it loses")
        severity = Severity.WARNING
    else:
        problem = f"nothing is mounted at its data directory {rc.data_dir} ({rc.data_dir_why})"
        severity = Severity.ERROR
    if other is not None:
        gen = "registry 2" if rc.version == "v2" else "the python v0.x registry"
        problem += (f"; the volume {other.source or other.name} is mounted at {other.destination}, the path of the "
                    f"{'python v0.x registry' if rc.version == 'v2' else 'registry 2'}, where {gen} never writes")
        severity = Severity.ERROR
    return problem, severity


# ============================================================================ DD404


@rule("DD404", "registry-port-not-published", category="registry", severity=Severity.ERROR,
      title="The registry's port is not published on the host")
def registry_port_not_published(registry_containers: list[RegistryContainer]) -> Iterator[Finding]:
    """The registry container listens on its port, but docker does not publish that port on the
    host (no `-p`), publishes another container port, or publishes it on 127.0.0.1 only. Other
    hosts get `connection refused`.

    Why it happens: `docker run registry:2` without `-p 5000:5000`; `-p 5000:5001` after
    REGISTRY_HTTP_ADDR moved the registry; `-p 127.0.0.1:5000:5000` copied from a local-only guide;
    `--network none`.

    How to fix: recreate the container with `-p 5000:5000` (host port : the registry's port), or
    run it with `--network host`. The plan keeps everything else.

    Example:
        registry  registry:2  "5000/tcp"   (PORTS shows no 0.0.0.0:5000->5000/tcp)
    """
    need_containers(registry_containers)
    for rc in registry_containers:
        c = rc.container
        if c.host_network:
            continue
        mine = [p for p in c.ports if p.container_port == rc.port and p.proto == "tcp" and p.host_port]
        ev = [c.evidence(f"registry port {rc.port} ({rc.port_why}); published: "
                                 + (", ".join(f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.proto}"
                                              for p in c.ports) or "none")
                                 + f"; network {c.network_mode}")]
        if mine and any(p.host_ip not in ("127.0.0.1", "::1", "localhost") for p in mine):
            continue
        title, msg, host_port, severity = _unpublished(rc, mine)
        keep_ports = [p.docker_arg() for p in c.ports if p.container_port != rc.port and p.host_ip != "::"]
        out = docker_run_argv(c, publish=[f"{host_port}:{rc.port}", *keep_ports])
        yield finding(
            "DD404", title, msg, severity=severity, evidence=ev,
            fix=recreate_fix(c, out, f"Recreate {c.name} with -p {host_port}:{rc.port}",
                             f"the same container, publishing {host_port}:{rc.port}"),
            params={"container": c.name, "port": rc.port},
        )


def _unpublished(rc: RegistryContainer, mine: list[PortBinding]) -> tuple[str, str, int, Severity]:
    """(title, message, the host port to publish, severity): published on loopback only, or not at all."""
    c = rc.container
    if mine:
        msg = f"{c.name} publishes its port {rc.port} on {mine[0].host_ip} only, so no other host can reach it."
        return (f"Registry {c.name} is published on loopback only", msg, mine[0].host_port or rc.port,
                Severity.WARNING)
    others = [p for p in c.ports if p.host_port]
    msg = f"{c.name} listens on port {rc.port} ({rc.port_why}), but docker publishes no host port for it"
    msg += (f" (it publishes {', '.join(f'{p.host_port}->{p.container_port}' for p in others)} instead)."
            if others else ".")
    if c.network_mode == "none":
        msg += " It runs with --network none."
    host_port = others[0].host_port if others and others[0].host_port else rc.port
    return f"Registry {c.name} does not publish port {rc.port}", msg, host_port, Severity.ERROR


# ============================================================================ DD405


def _denied_detail(line: str) -> str:
    """The registry's own words in a permission-denied log line (the whole line when they are not found)."""
    m = re.search(r'(?:err\.detail|err\.message|error|msg)="([^"]*(?:permission denied|read-only)[^"]*)"', line,
                  re.I) or re.search(r"(\S*(?:Error|error)\S*:? .*(?:denied|read-only).*)$", line)
    return m.group(1) if m else line


@rule("DD405", "registry-storage-denied", category="registry", severity=Severity.ERROR,
      title="The registry may not write its storage")
def registry_storage_denied(registry_containers: list[RegistryContainer],
                            selinux_status: SelinuxStatus | None = None) -> Iterator[Finding]:
    """The registry's log shows `permission denied` (or a read-only file system) on its storage:
    pushes fail with `received unexpected HTTP status: 500 Internal Server Error` or `blob upload
    unknown`.

    Why it happens: on SELinux hosts, a host directory mounted without `:Z` keeps a label the
    container may not write (DD304 and DD305 have the details); elsewhere the directory is owned
    by another user (registry images that run as a non-root user, rootless docker, NFS with
    root_squash) or the volume is mounted read-only.

    How to fix: on SELinux hosts relabel the directory (`:Z`, or semanage fcontext + restorecon);
    otherwise give the container's user the directory (`chown -R UID DIR`) or drop `:ro`. Never
    `chmod 777` and never `setenforce 0`.

    Example:
        level=error msg="response completed with error" err.code=unknown
        err.message="filesystem: mkdir /var/lib/registry/docker: permission denied"
    """
    need_logs(registry_containers)
    for rc in registry_containers:
        c = rc.container
        hits = [h for h in c.log_grep(PERMISSION_DENIED) if STORAGE_WORDS.search(h[1])]
        if not hits:
            continue
        m = mount_covering(c, rc.data_dir) if rc.data_dir else None
        ev = [c.log_evidence(*hits[-1])]
        if m is not None:
            ev.append(c.evidence(f"mount {m.source}:{m.destination} mode={m.mode or '-'} rw={m.rw}"))
        detail = _denied_detail(hits[-1][1])
        yield finding(
            "DD405", f"Registry {c.name} gets permission denied on its storage",
            f"{c.name} logs \"{short(detail, 160)}\" ({len(hits)} time{'s' if len(hits) != 1 else ''}); pushes "
            "to it fail with 500 errors.",
            evidence=ev, fix=writable_storage_fix(c, m, selinux_status is not None and selinux_status.enforcing),
            params={"container": c.name},
        )
