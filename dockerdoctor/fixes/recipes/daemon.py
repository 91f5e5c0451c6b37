"""Recipes for dockerd itself: trust a registry (TLS with its CA, or insecure-registries where the daemon
reads it), and systemd drop-ins that replace docker.service's ExecStart.
"""

from __future__ import annotations

from dockerdoctor.facts.daemon import ConfigValue, DaemonJson, EffectiveConfig
from dockerdoctor.facts.dockerd_cli import FlagUse
from dockerdoctor.facts.systemd import ArgOrigin, UnitModel, split_command_line
from dockerdoctor.fixes.registry_side import serve_tls_command
from dockerdoctor.model import (
    EnvFileSet,
    Fix,
    JsonListAdd,
    JsonSetKey,
    Operation,
    ReplaceFileContent,
    RunCommand,
    ServiceAction,
    Trust,
)
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
        ops.append(serve_tls_command(
            target, "on the registry host: serve TLS (or put TLS on the existing registry); it prints the CA to copy"))
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


def reload_fix(summary: str) -> Fix:
    """Only a reload (SIGHUP) is missing: the files already say what is wanted."""
    return Fix(summary, (ServiceAction("reload"),))


def move_insecure_fix(env_path: str, variable: str, daemon_json: str, registries: list[str]) -> Fix:
    """Insecure registries from an env file dockerd never reads into daemon.json; the variable emptied."""
    return Fix(f"Move the insecure registries from {env_path} into {daemon_json} and reload dockerd",
               (*[JsonListAdd(daemon_json, "insecure-registries", v) for v in registries],
                EnvFileSet(env_path, variable, ""), ServiceAction("reload")),
               warnings=(CIS_WARNING,))


def expand_var_fix(unit: UnitModel, variable: str) -> Fix:
    """A drop-in whose ExecStart is the current one plus $VARIABLE."""
    return Fix(f"Expand ${variable} in ExecStart with a drop-in, then daemon-reload and restart",
               (ReplaceFileContent(f"{DROPIN_DIR}/20-expand-vars.conf", exec_dropin(unit, [f"${variable}"])),
                ServiceAction("daemon-reload"), ServiceAction("restart")),
               warnings=(RESTART_WARNING,))


def rereads_config_fix(reload_enough: bool) -> Fix:
    """dockerd runs with older settings than its files: SIGHUP when that re-reads them, else a restart."""
    if reload_enough:
        return Fix("Reload dockerd (SIGHUP re-reads insecure-registries)", (ServiceAction("reload"),))
    return Fix("Restart dockerd", (ServiceAction("restart"),), warnings=(RESTART_WARNING,))


def docker_group_fix(user: str, group: str) -> Fix:
    return Fix(f"Add {user} to the {group} group (root-equivalent)", (RunCommand(("usermod", "-aG", group, user)),),
               warnings=(f"Members of the {group} group can become root on this host; "
                         "add only trusted users, then log in again.",))


def flag_to_file_fix(cfg: EffectiveConfig, key: str, flag: str, uses: list[FlagUse], origin: ArgOrigin | None) -> Fix:
    """A directive both a flag and a daemon.json key: the flag's values merged into daemon.json, the flag
    removed from the variable that holds it (or from ExecStart, with a drop-in), then a restart."""
    dj = cfg.daemon_json
    ops: list[Operation] = []
    file_val = (dj.data or {})[key]
    if isinstance(file_val, list):
        for v in [u.value for u in uses]:
            if v is not None and v not in file_val:
                ops.append(JsonListAdd(dj.path, key, v))
    if origin is not None and origin.variable and origin.var_path:
        ops.append(EnvFileSet(origin.var_path, origin.variable, _remove_flag_words(cfg, origin.variable, flag)))
        ops += [ServiceAction("restart")]
    else:
        drop = {u.index for u in uses} | {u.index + 1 for u in uses if " " in u.raw}
        exec_words = cfg.expanded.argv if cfg.expanded else []
        line = " ".join(w for i, w in enumerate(exec_words) if i not in drop)
        ops += exec_dropin_ops("10-no-conflict.conf", line)
    return Fix(f"Keep {key} only in {dj.path}", tuple(ops), warnings=(RESTART_WARNING,))


def _remove_flag_words(cfg: EffectiveConfig, variable: str, flag: str) -> str:
    """The variable's value with every use of --flag removed."""
    origin_values = [o for o in (cfg.expanded.origins if cfg.expanded else []) if o.variable == variable]
    if not origin_values or cfg.expanded is None:
        return ""
    words = [w for w, o in zip(cfg.expanded.argv, cfg.expanded.origins, strict=False) if o.variable == variable]
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w == f"--{flag}" or (flag == "host" and w == "-H"):
            skip = True
            continue
        if w.startswith(f"--{flag}="):
            continue
        out.append(w)
    return " ".join(out)


def no_proxy_fix(host: str, proxy: ConfigValue, no_proxy: ConfigValue | None) -> Fix:
    """`host` added to NO_PROXY where the proxy settings are (an env file, or a new drop-in)."""
    new_no_proxy = ",".join(x for x in [no_proxy.value if no_proxy else "", host] if x)
    ops: list[Operation] = []
    if no_proxy and no_proxy.via == "environment":
        ops.append(EnvFileSet(no_proxy.source, "NO_PROXY", new_no_proxy))
    elif no_proxy is None and proxy.via == "environment":
        ops.append(ReplaceFileContent(f"{DROPIN_DIR}/20-no-proxy.conf",
                                      f'[Service]\nEnvironment="NO_PROXY={new_no_proxy}"\n'))
    return Fix(f"Add {host} to NO_PROXY, then daemon-reload and restart",
               (*ops, ServiceAction("daemon-reload"), ServiceAction("restart")))


def reset_exec_fix() -> Fix:
    """Advice with the service steps: ExecStart needs a valid dockerd command line (the user writes it)."""
    return Fix("Reset ExecStart in a drop-in with a valid dockerd command line, then daemon-reload and restart",
               (ServiceAction("daemon-reload"), ServiceAction("restart")))


def split_insecure_fix(dj: DaemonJson | None, value: str, parts: list[str]) -> Fix:
    """One insecure-registries value that holds several registries: each its own element in daemon.json
    (`dj`), or, where flags carry it (dj None), one --insecure-registry per registry."""
    if dj is None:
        return Fix("Give one host:port per flag: " + " ".join(f"--insecure-registry={p}" for p in parts))
    current = dj.data.get("insecure-registries", []) if dj.data else []
    new = [x for x in current if x != value] + [p for p in parts if p not in current]
    return Fix("List each registry as its own element",
               (JsonSetKey(dj.path, "insecure-registries", new), ServiceAction("restart")))
