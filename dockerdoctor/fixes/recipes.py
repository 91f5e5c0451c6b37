"""Fix recipes: the Fix values rules attach to findings, built in one place.

A rule detects; when it has a repair to offer it calls a recipe here with the facts at hand and gets
back data (`Fix`, operations, file text) that `fixes/plan.py` shows and `fixes/apply.py` applies.
Recipes: trust a registry (TLS with its CA, or insecure-registries where the daemon reads it), a
systemd drop-in that replaces ExecStart, recreate a container with one thing changed, open a port
(firewalld, nftables, iptables, ufw), relabel a volume for SELinux.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from dockerdoctor.facts.containers import ContainerInfo, Mount, RegistryContainer
from dockerdoctor.facts.daemon import EffectiveConfig
from dockerdoctor.facts.netfilter import FilterRule
from dockerdoctor.facts.systemd import UnitModel, split_command_line
from dockerdoctor.model import EnvFileSet, Fix, JsonListAdd, ReplaceFileContent, RunCommand, ServiceAction, Trust
from dockerdoctor.net import HostPort

RESTART_WARNING = "A restart stops running containers unless live-restore is on."
DROPIN_DIR = "/etc/systemd/system/docker.service.d"
CIS_WARNING = (
    "insecure-registries turns off TLS for this registry on this host: anyone on the path can read "
    "and alter images (CIS Docker Benchmark 2.4). Prefer TLS with the CA in certs.d."
)


# --------------------------------------------------------------------------- trust a registry


def tls_fix(target: HostPort, plain_http: bool) -> Fix:
    ca_path = f"/etc/docker/certs.d/{target}/ca.crt"
    ops: list = []
    if plain_http:
        ops.append(RunCommand(
            ("dockerdoctor", "serve-registry", "--port", str(target.port or 443), "--tls-self-signed", target.host),
            "on the registry host: serve TLS (or put TLS on the existing registry); it prints the CA to copy",
        ))
    ops.append(RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca_path),
                          "on this host: trust the registry's CA; dockerd reads certs.d on every push, no restart"))
    return Fix(f"Use TLS: trust the registry's CA in {ca_path}", tuple(ops))


def insecure_fix(target: HostPort, cfg: EffectiveConfig | None) -> Fix:
    """Add the registry to insecure-registries in the one place the daemon reads it.

    If the daemon already gets insecure registries as flags, the entry goes next to them (a new
    daemon.json key would make dockerd refuse to start, DD104); otherwise into daemon.json.
    """
    flag_values = [v for v in (cfg.insecure_planned if cfg else []) if v.via == "flag"]
    if cfg is not None and flag_values and cfg.expanded is not None:
        var_origin = next(
            (o for o in cfg.expanded.origins if o.variable and o.var_path
             and any(v.source == o.var_path and v.line == o.var_line for v in flag_values)),
            None,
        )
        if var_origin is not None and var_origin.variable and var_origin.var_path:
            return Fix(
                f"Add {target} to insecure-registries in {var_origin.var_path} (where the others are), then restart",
                (
                    EnvFileSet(var_origin.var_path, var_origin.variable, f"--insecure-registry={target}", append=True),
                    ServiceAction("restart"),
                ),
                warnings=(CIS_WARNING, RESTART_WARNING),
            )
    path = cfg.daemon_json.path if cfg else "/etc/docker/daemon.json"
    return Fix(
        f"Add {target} to insecure-registries in {path}, then reload dockerd (SIGHUP, no restart)",
        (JsonListAdd(path, "insecure-registries", str(target)), ServiceAction("reload")),
        warnings=(CIS_WARNING,),
    )


def trust_fix(target: HostPort, cfg: EffectiveConfig | None, plain_http: bool, verify_by_probe: bool = True) -> Fix:
    """TLS with the registry's CA, insecure-registries as the alternative: one trust step."""
    tls = tls_fix(target, plain_http)
    return Fix(tls.summary, tls.operations, tls.warnings, alternatives=(insecure_fix(target, cfg),),
               trust=Trust(str(target), plain_http, verify_by_probe))


# --------------------------------------------------------------------------- on the registry host


def listen_fix(addr: HostPort) -> Fix:
    """Nothing listens on addr's port: find out on the registry host, or start a registry there."""
    return Fix(f"On the registry host, make a registry listen on port {addr.port} on an address this host "
               "reaches",
               (RunCommand(("ss", "-ltnp", f"sport = :{addr.port}"),
                           "on the registry host: what listens on the port (nothing, or only 127.0.0.1)"),
                RunCommand(("docker", "run", "-d", "--restart=always", "--name", "registry",
                            "-p", f"{addr.port}:5000", "-v", "/var/lib/registry:/var/lib/registry",
                            "registry:2"),
                           "on the registry host, if no registry runs: start one with its port published")))


def remote_open_port_fix(port: int | None) -> Fix:
    """A firewall on the way filters the port: open it on the registry host (firewalld, else nftables)."""
    return Fix(f"Open {port}/tcp on the registry host's firewall",
               (RunCommand(("firewall-cmd", f"--add-port={port}/tcp"), "on the registry host: open it now"),
                RunCommand(("firewall-cmd", "--permanent", f"--add-port={port}/tcp"),
                           "on the registry host: keep it open after a reload or reboot")),
               alternatives=(Fix("Without firewalld: accept the port in nftables",
                                 (RunCommand(("nft", "insert", "rule", "inet", "filter", "input", "tcp",
                                              "dport", str(port), "accept"),
                                             "on the registry host; adjust table/chain to your ruleset"),)),))


def resolve_fix(host: str) -> Fix:
    return Fix(f"Make {host} resolvable on this host (DNS or /etc/hosts)",
               (RunCommand(("getent", "hosts", host), "what this host's resolver says"),))


# --------------------------------------------------------------------------- systemd drop-ins


def dropin_text(command: str) -> str:
    """A docker.service drop-in that resets ExecStart and runs `command` instead."""
    return f"[Service]\nExecStart=\nExecStart={command}\n"


def exec_dropin_ops(name: str, command: str) -> tuple[ReplaceFileContent, ServiceAction, ServiceAction]:
    """Write drop-in `name` (in docker.service.d) that runs `command`, then daemon-reload and restart."""
    return (ReplaceFileContent(f"{DROPIN_DIR}/{name}", dropin_text(command)),
            ServiceAction("daemon-reload"), ServiceAction("restart"))


def exec_dropin(unit: UnitModel, extra: list[str], drop: set[int] | None = None) -> str:
    """A drop-in that resets ExecStart and sets it to the current command plus `extra` words."""
    current = unit.exec_start[-1].command if unit.exec_start else "/usr/bin/dockerd"
    words = split_command_line(current)
    if drop:
        words = [w for i, w in enumerate(words) if i not in drop]
    return dropin_text(" ".join(words + extra))


# --------------------------------------------------------------------------- recreate a container


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


# --------------------------------------------------------------------------- open a port


def open_port_ops(zone: str, port: int, runtime: bool, permanent: bool) -> tuple[RunCommand, ...]:
    ops = []
    if runtime:
        ops.append(RunCommand(("firewall-cmd", f"--zone={zone}", f"--add-port={port}/tcp"),
                              "open the one port now (runtime)"))
    if permanent:
        ops.append(RunCommand(("firewall-cmd", "--permanent", f"--zone={zone}", f"--add-port={port}/tcp"),
                              "and keep it open across reloads and reboots"))
    return tuple(ops)


def allow_port_ops(r: FilterRule, port: int) -> tuple[RunCommand, ...]:
    if r.backend == "nftables":
        if r.handle is not None and not r.is_policy:
            return (RunCommand(("nft", "insert", "rule", r.family, r.table, r.chain, "position", str(r.handle),
                                "tcp", "dport", str(port), "accept"),
                               f"accept {port}/tcp just before the rule that blocks it"),)
        return (RunCommand(("nft", "insert", "rule", r.family, r.table, r.chain, "tcp", "dport", str(port), "accept"),
                           f"accept {port}/tcp at the top of the chain"),)
    if r.backend == "iptables":
        pos = str(r.position) if r.position and not r.is_policy else "1"
        return (RunCommand(("iptables", "-I", r.chain, pos, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"),
                           f"accept {port}/tcp before the rule that blocks it"),)
    return (RunCommand(("ufw", "allow", f"{port}/tcp"), f"allow {port}/tcp"),)


# --------------------------------------------------------------------------- SELinux


def relabel_fix(c_rc: RegistryContainer, m: Mount) -> Fix:
    c = c_rc.container
    run = docker_run_argv(c, relabel={m.destination: "Z"})
    semanage = Fix(
        f"Label {m.source} container_file_t with semanage fcontext and restorecon",
        (RunCommand(("semanage", "fcontext", "-a", "-t", "container_file_t", f"{m.source}(/.*)?"),
                    "a permanent labelling rule for the directory"),
         RunCommand(("restorecon", "-Rv", m.source), "apply it to the files there now")),
        warnings=("Use this when several containers share the directory, or it must keep its label "
                  "across relabels and container recreation.",),
    )
    return Fix(
        f"Recreate {c.name} with :Z on {m.source}:{m.destination}",
        recreate_ops(c, run, f"the same container, with {m.source} relabelled for it (:Z)"),
        warnings=(":Z gives the directory a label private to this one container; use :z if another container "
                  "shares it. Never setenforce 0.",),
        alternatives=(semanage,),
    )
