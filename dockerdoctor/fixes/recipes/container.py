"""Recipes for a registry container: the `docker run` line that recreates it with one thing changed, the
stop/rename/run/rm steps around it, and the SELinux relabel of a bind mount.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from dockerdoctor.facts.containers import ContainerInfo, Mount
from dockerdoctor.model import Fix, RunCommand


def _is_default(item: str, defaults: list[str] | None) -> bool:
    return defaults is not None and item in defaults


def docker_run_argv(c: ContainerInfo, *, set_env: dict[str, str] | None = None,
                    relabel: dict[str, str] | None = None, name: str | None = None,
                    publish: Sequence[str] | None = None, without_mounts_at: Collection[str] = (),
                    add_volumes: Sequence[str] = ()) -> tuple[str, ...]:
    """The `docker run` line that recreates `c`: same name, ports, volumes, env, restart policy,
    labels, network and command, with `set_env` added and `relabel` (destination -> z|Z) applied.

    `publish` replaces every `-p` (and drops `--network none`); `without_mounts_at` leaves out the
    mounts at those destinations; `add_volumes` are `-v` values. The new ones go just before the image."""
    drop_at = {d.rstrip("/") for d in without_mounts_at}
    argv: list[str] = ["docker", "run", "-d", "--name", name or c.name]
    if c.restart_policy and c.restart_policy != "no":
        rp = c.restart_policy + (f":{c.restart_max}" if c.restart_policy == "on-failure" and c.restart_max else "")
        argv += ["--restart", rp]
    if c.network_mode not in ("default", "bridge", "") and not (publish is not None and c.network_mode == "none"):
        argv += ["--network", c.network_mode]
    for p in c.ports if publish is None else []:
        if p.host_ip == "::" and any(o.host_ip in ("0.0.0.0", "") and o.host_port == p.host_port
                                     and o.container_port == p.container_port for o in c.ports):
            continue  # docker lists one -p twice (IPv4 and IPv6)
        argv += ["-p", p.docker_arg()]
    for m in c.mounts:
        if m.type not in ("bind", "volume") or m.destination.rstrip("/") in drop_at:
            continue
        mode_parts = [x for x in m.mode.split(",") if x and x not in ("z", "Z", "rw", "rprivate")]
        if not m.rw and "ro" not in mode_parts:
            mode_parts.append("ro")
        label = (relabel or {}).get(m.destination) or m.selinux_label
        if label:
            mode_parts.append(label)
        src = m.source if m.type == "bind" else (m.name or m.source)
        argv += ["-v", f"{src}:{m.destination}" + (f":{','.join(mode_parts)}" if mode_parts else "")]
    env = [e for e in c.env_list if not _is_default(e, c.image_env) and not e.startswith("PATH=")]
    for k, v in (set_env or {}).items():
        env = [e for e in env if not e.startswith(k + "=")]
        env.append(f"{k}={v}")
    for e in env:
        argv += ["-e", e]
    for k, v in sorted(c.labels.items()):
        if c.image_labels is not None and c.image_labels.get(k) == v:
            continue
        argv += ["--label", f"{k}={v}"]
    entry_changed = c.image_entrypoint is not None and c.entrypoint != c.image_entrypoint
    if entry_changed and c.entrypoint:
        argv += ["--entrypoint", c.entrypoint[0]]
    for vol in add_volumes:
        argv += ["-v", vol]
    for port in publish or []:
        argv += ["-p", port]
    argv.append(c.image)
    if entry_changed and c.entrypoint:
        argv += c.entrypoint[1:] + c.cmd
    elif c.image_cmd is None or c.cmd != c.image_cmd:
        argv += c.cmd
    return tuple(argv)


def recreate_ops(c: ContainerInfo, run_argv: tuple[str, ...], why: str) -> tuple[RunCommand, ...]:
    old = f"{c.name}-before-dockerdoctor"
    return (
        RunCommand(("docker", "stop", c.name), "stop the container (its volumes stay)"),
        RunCommand(("docker", "rename", c.name, old), "keep the old container until the new one works"),
        RunCommand(run_argv, why),
        RunCommand(("docker", "rm", old), "once the new container works: remove the old one"),
    )


# --------------------------------------------------------------------------- a registry container's state


def recreate_fix(c: ContainerInfo, run_argv: tuple[str, ...], summary: str, why: str,
                 warnings: tuple[str, ...] = ()) -> Fix:
    """Recreate `c` as `run_argv` (stop, rename, run, remove the old one)."""
    return Fix(summary, recreate_ops(c, run_argv, why), warnings=warnings)


def start_container_fix(name: str) -> Fix:
    return Fix(f"Fix the error in the log, then start {name}",
               (RunCommand(("docker", "logs", "--tail", "50", name), "read the whole error"),
                RunCommand(("docker", "start", name), "after fixing the cause")))


def delete_by_digest_fix(repo: str, ref: str) -> Fix:
    return Fix("Delete by digest", (RunCommand(
        ("curl", "-sI", "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json",
         f"https://REGISTRY/v2/{repo}/manifests/{ref}"),
        "the Docker-Content-Digest header names the digest; then DELETE /v2/NAME/manifests/<digest>"),))


def offline_gc_fix(c: ContainerInfo) -> Fix:
    return Fix("Run garbage-collect with the registry stopped", (
        RunCommand(("docker", "stop", c.name)),
        RunCommand(("docker", "run", "--rm", "--volumes-from", c.name, c.image, "garbage-collect",
                    "/etc/docker/registry/config.yml"), "collect with nothing else writing"),
        RunCommand(("docker", "start", c.name))))


def free_port_fix(port: int, holder: str | None, holder_pid: int | None, name: str) -> Fix:
    """Another process holds the registry's port."""
    return Fix(f"Stop or move {holder or 'the other process'}, or publish {name} on a free port",
               (RunCommand(("ss", "-ltnp", f"sport = :{port}"), "confirm who holds the port"),),
               warnings=(f"Find the unit that runs pid {holder_pid}: systemctl status {holder_pid}" if holder_pid else
                         "Find the service that owns the port before stopping it.",))


def persistent_data_fix(c: ContainerInfo, data_dir: str, keep: Mount | None) -> Fix:
    """Recreate `c` with a volume at the registry's data directory: `keep` (the volume mounted at the wrong
    path, or the anonymous one) becomes it, else a named volume NAME-data; the images are copied out first."""
    src = (keep.source if keep is not None and keep.type == "bind" else (keep.name if keep is not None else None))
    vol = src or f"{c.name}-data"
    # the same container without the wrong/anonymous volume, with one at the right path
    fixed = docker_run_argv(c, without_mounts_at=[data_dir, *([keep.destination] if keep else [])],
                            add_volumes=[f"{vol}:{data_dir}"])
    ops: list[RunCommand] = []
    if keep is not None and keep.type == "bind" and not keep.anonymous:
        # the images are in the container (or its anonymous volume), not in the host directory
        ops.append(RunCommand(("docker", "cp", f"{c.name}:{data_dir}/.", keep.source),
                              f"copy the images into {keep.source}, which the new container uses"))
    elif keep is None or keep.anonymous:
        ops.append(RunCommand(("docker", "cp", f"{c.name}:{data_dir}", f"./{c.name}-data-backup"),
                              "keep a copy of the images before the container is replaced"))
    ops.extend(recreate_ops(c, fixed, f"the same container, with its data on {vol} at {data_dir}"))
    return Fix(f"Recreate {c.name} with {vol} mounted at {data_dir}", tuple(ops),
               warnings=("Copy the data out before removing the old container.",))


def writable_storage_fix(c: ContainerInfo, m: Mount | None, selinux_enforcing: bool) -> Fix:
    """The registry cannot write its storage mount `m`: read-write, an SELinux label, or the owner, as the case is."""
    ops: list[RunCommand] = []
    if m is not None and not m.rw:
        summary = f"Mount {m.source} read-write"
        c2 = ContainerInfo(**{**c.__dict__, "mounts": [
            Mount(x.type, x.source, x.destination, ",".join(p for p in x.mode.split(",") if p != "ro"), True, x.name)
            if x is m else x for x in c.mounts]})
        ops.extend(recreate_ops(c, docker_run_argv(c2), "the same container, with the volume read-write"))
    elif m is not None and m.type == "bind" and selinux_enforcing:
        summary = f"Label {m.source} for containers (container_file_t)"
        ops.append(RunCommand(("semanage", "fcontext", "-a", "-t", "container_file_t", f"{m.source}(/.*)?"),
                              "label the directory for containers, permanently"))
        ops.append(RunCommand(("restorecon", "-Rv", m.source), "apply the label"))
    elif m is not None and m.type == "bind":
        summary = f"Give the registry's user the directory {m.source}"
        user = str((c.raw.get("Config") or {}).get("User") or "") or "0"
        ops.append(RunCommand(("chown", "-R", user.split(":")[0], m.source),
                              "the container's user (Config.User; root when empty) must own its storage"))
    else:
        summary = "Give the registry a writable volume for its data"
    return Fix(summary, tuple(ops), warnings=("Never chmod 777 the directory, never setenforce 0.",))


def shared_secret_fix(replicas: list[ContainerInfo]) -> Fix:
    """Recreate every replica with one REGISTRY_HTTP_SECRET."""
    ops: list[RunCommand] = []
    for c in replicas:
        run = docker_run_argv(c, set_env={"REGISTRY_HTTP_SECRET": "<the same secret>"})
        ops.extend(recreate_ops(c, run, "the same container with the shared secret"))
    return Fix("Give every replica one REGISTRY_HTTP_SECRET (openssl rand -hex 32)", tuple(ops))
