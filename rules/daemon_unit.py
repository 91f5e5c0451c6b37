"""Daemon configuration, part two: does the configuration take effect? A restart or daemon-reload that
is pending (DD107, DD108), an ExecStart the engine cannot run (DD109), a proxy that catches the
registry's traffic (DD110). DD101-DD106 (what the configuration says) are in daemon_config.py."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

# Variables of the stock env files that carry dockerd options.
from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import (
    DEFAULT_INSECURE_CIDRS,
    ConfigValue,
    DockerdProcess,
    DockerInfo,
    EffectiveConfig,
    EnvFileInfo,
    InsecureEntryCheck,
    check_insecure_entry,
    trusted_as_insecure,
)
from dockerdoctor.facts.dockerd_cli import (
    REMOVED_FLAGS,
    RHEL_FORK_FLAGS,
    FlagUse,
    parse_dockerd_argv,
)
from dockerdoctor.facts.host import TargetRegistry
from dockerdoctor.facts.systemd import ExpandedCommand, SystemdUnitState, UnitModel
from dockerdoctor.fixes.recipes import (
    RESTART_WARNING,
)
from dockerdoctor.fixes.recipes.daemon import exec_dropin_ops, no_proxy_fix, rereads_config_fix, reset_exec_fix
from dockerdoctor.model import (
    Evidence,
    Finding,
    Fix,
    ServiceAction,
    Severity,
)
from dockerdoctor.net import no_proxy_match
from dockerdoctor.probe.report import EndpointProbes

# ============================================================================ DD107


def _canonical(chk: InsecureEntryCheck) -> str:
    if chk.is_cidr and chk.normalized:
        try:
            return str(ipaddress.ip_network(chk.normalized, strict=False))
        except ValueError:
            pass
    return chk.normalized or ""


def _norm_set(values: list[str]) -> set[str]:
    out = set()
    for v in values:
        chk = check_insecure_entry(v)
        if chk.normalized and _canonical(chk) not in DEFAULT_INSECURE_CIDRS:
            out.add(chk.normalized.lower())
    return out


@rule("DD107", "restart-pending", category="daemon", severity=Severity.WARNING,
      title="The configuration changed after dockerd started")
def restart_pending(effective_config: EffectiveConfig, dockerd_process: DockerdProcess | None,
                    env_files: dict[str, EnvFileInfo] | None = None,
                    systemd_state: SystemdUnitState | None = None) -> Iterator[Finding]:
    """The config files changed after the running dockerd started, and what it runs with differs
    from them. Nobody restarted (or reloaded) the daemon.

    Why it happens: daemon.json and the env files are read at start; only a few daemon.json
    keys (insecure-registries, registry-mirrors, labels, debug, ...) are re-read on SIGHUP.

    How to fix: for insecure-registries in daemon.json, `systemctl reload docker` (SIGHUP, no
    container stops); for flags in an env file, `systemctl restart docker`.

    Example:
        /etc/docker/daemon.json changed at 10:02, dockerd started at 09:15;
        docker info lists no 10.0.0.5:5000
    """
    cfg = effective_config
    if dockerd_process is None:
        raise Skip("dockerd is not running")
    if cfg.insecure_running is None:
        raise Skip("what the running daemon uses is unknown (no docker info)")
    if cfg.daemon_json.error:
        raise Skip("daemon.json does not parse, so what it configures is unknown (see DD106)")
    if systemd_state is not None and systemd_state.need_daemon_reload:
        raise Skip("systemd has not reloaded the unit yet (DD108); compare after a daemon-reload")
    planned = _norm_set([v.value for v in cfg.insecure_planned])
    running = _norm_set([v.value for v in cfg.insecure_running])
    if planned == running:
        return
    added, removed = sorted(planned - running), sorted(running - planned)
    evidence = [Evidence(cfg.insecure_running[0].source if cfg.insecure_running else "docker info",
                         "running with insecure registries: " + (", ".join(sorted(running)) or "none"))]
    changed = _changed_since(cfg, env_files, dockerd_process.start_time, evidence)
    for v in cfg.insecure_planned:
        evidence.append(v.evidence(f"configured: {v.value}"))
    yield finding(
        "DD107", "dockerd runs with an older configuration",
        "The files configure insecure registries that the running daemon does not use"
        + (f" (missing: {', '.join(added)})" if added else "")
        + (f" (still using: {', '.join(removed)})" if removed else "")
        + (f"; {', '.join(changed)} changed after it started." if changed else "."),
        evidence=evidence,
        fix=rereads_config_fix(_only_in_daemon_json(cfg, added)),
        params={"missing": added, "extra": removed},
    )


def _only_in_daemon_json(cfg: EffectiveConfig, added: list[str]) -> bool:
    """Does every entry the daemon lacks come from daemon.json (which a SIGHUP re-reads)?"""
    added_set = set(added)  # a list here is quadratic on a daemon.json of 200,000 entries
    return all(v.via == "daemon.json" for v in cfg.insecure_planned
               if check_insecure_entry(v.value).normalized in added_set)


def _changed_since(cfg: EffectiveConfig, env_files: dict[str, EnvFileInfo] | None, start: float | None,
                   evidence: list[Evidence]) -> list[str]:
    """The configuration files modified after dockerd started (each added to `evidence`)."""
    changed: list[str] = []
    files = [(cfg.daemon_json.path, cfg.daemon_json.mtime)] + [
        (p, i.mtime) for p, i in (env_files or {}).items() if i.loaded]
    for path, mtime in files:
        if mtime and start and mtime > start:
            changed.append(path)
            evidence.append(Evidence(path, f"modified after dockerd started (mtime {mtime:.0f} > start {start:.0f})"))
    return changed


# ============================================================================ DD108


@rule("DD108", "daemon-reload-pending", category="daemon", severity=Severity.WARNING,
      title="systemd has not reloaded the changed unit")
def daemon_reload_pending(systemd_state: SystemdUnitState, docker_unit: UnitModel | None = None
                          ) -> Iterator[Finding]:
    """docker.service or one of its drop-ins changed on disk, and systemd still runs the old
    definition (NeedDaemonReload=yes). A restart alone would start dockerd the old way.

    How to fix: `systemctl daemon-reload`, then `systemctl restart docker`.

    Example:
        Warning: The unit file, source configuration file or drop-ins of docker.service changed on disk.
        Run 'systemctl daemon-reload' to reload units.
    """
    if systemd_state.need_daemon_reload is None:
        raise Skip("systemd does not say whether docker.service needs a daemon-reload")
    if not systemd_state.need_daemon_reload:
        return
    files = docker_unit.files if docker_unit else []
    yield finding(
        "DD108", "docker.service changed on disk; systemd has not reloaded it",
        "systemd reports NeedDaemonReload=yes for docker.service: the unit or a drop-in changed since the "
        "last daemon-reload, so systemd still uses the old ExecStart/EnvironmentFile.",
        evidence=[systemd_state.evidence("NeedDaemonReload=yes")] +
        [Evidence(f, "unit file") for f in files],
        fix=Fix("Reload systemd, then restart docker", (ServiceAction("daemon-reload"), ServiceAction("restart")),
                warnings=(RESTART_WARNING,)),
    )


# ============================================================================ DD109


@rule("DD109", "unit-exec-invalid", category="daemon", severity=Severity.ERROR,
      title="ExecStart cannot work with this engine",
      validates_config=True, repair_order=6)
def unit_exec_invalid(docker_unit: UnitModel, planned_command: ExpandedCommand, docker_socket_unit: bool,
                      engine_version: tuple[int, int, int] | None = None) -> Iterator[Finding]:
    """ExecStart uses `docker daemon` or `docker -d` (removed in 17.12 and 1.13), `-H fd://`
    without a docker.socket unit (dockerd: "no sockets found via socket activation"), or a flag
    the engine does not have (removed, or only in Red Hat's docker 1.13 fork such as
    `--add-registry`), so dockerd does not start.

    How to fix: a drop-in that resets ExecStart (`ExecStart=` then `ExecStart=/usr/bin/dockerd ...`)
    with current flags; daemon-reload and restart.

    Example:
        ExecStart=/usr/bin/docker daemon -H fd://   on docker-ce 20.10
        -> dockerd: unknown command "daemon"
    """
    line = docker_unit.exec_start[-1]
    parsed = parse_dockerd_argv(planned_command.argv)
    ev = line.evidence()
    if parsed.mode in ("docker daemon", "docker -d") and (engine_version is None or engine_version >= (17, 12, 0)):
        new_words = ["/usr/bin/dockerd", *planned_command.argv[2 if parsed.mode == "docker daemon" else 1:]]
        new_words = [w for w in new_words if w != "-d"]
        yield finding("DD109", f"ExecStart runs `{parsed.mode}`",
                      f"`{parsed.mode}` was removed; engine "
                      f"{'.'.join(map(str, engine_version)) if engine_version else 'of this host'} starts as dockerd.",
                      evidence=[ev],
                      fix=Fix("Start /usr/bin/dockerd instead", exec_dropin_ops("10-exec.conf", " ".join(new_words))))
    if any((f.value or "").startswith("fd://") for f in parsed.values("host")) and not docker_socket_unit:
        yield finding("DD109", "-H fd:// without docker.socket",
                      "ExecStart passes -H fd://, which needs socket activation, but there is no docker.socket "
                      "unit; dockerd fails with 'no sockets found via socket activation'.",
                      evidence=[ev], fix=Fix("Install/enable docker.socket, or replace -H fd:// with "
                                             "-H unix:///var/run/docker.sock in a drop-in"))
    for use in parsed.flags + parsed.unknown:
        yield from _bad_flag(use, engine_version, ev)


def _bad_flag(use: FlagUse, engine_version: tuple[int, ...] | None, ev: Evidence) -> Iterator[Finding]:
    """A flag this engine removed, or one dockerd does not have (Red Hat's fork aside)."""
    name = use.name
    if " " in name or "=" in name:
        return  # a ${VAR} glued several words: DD103 reports it
    removed = REMOVED_FLAGS.get(name)
    if removed and (engine_version is None or engine_version[:2] >= removed.removed_in):
        yield finding("DD109", f"--{name} was removed",
                      f"--{name} was removed in engine {removed.removed_in[0]}.{removed.removed_in[1]}; use "
                      f"{removed.replacement}.", evidence=[ev], fix=reset_exec_fix(), params={"flag": name})
    elif name in RHEL_FORK_FLAGS or (not use.known and name not in REMOVED_FLAGS):
        if name in RHEL_FORK_FLAGS and (engine_version is None or engine_version < (17, 0, 0)):
            return  # Red Hat's docker 1.13 has these (and an unknown engine may be it)
        if not use.known and engine_version is not None and engine_version < (20, 0, 0) \
                and name not in RHEL_FORK_FLAGS:
            return  # our flag table is 20.10's; older engines had others
        yield finding("DD109", f"unknown flag --{name}",
                      f"dockerd has no --{name}" + (" (it exists only in Red Hat's docker 1.13 fork)"
                                                    if name in RHEL_FORK_FLAGS else "") +
                      "; dockerd exits with 'unknown flag'.", evidence=[ev], fix=reset_exec_fix(),
                      params={"flag": name})


# ============================================================================ DD110


def _proxy_settings(cfg: EffectiveConfig, docker_info: DockerInfo | None) -> dict[str, ConfigValue]:
    """HTTP(S)_PROXY and NO_PROXY as dockerd has them: the configuration, else what `docker info` reports."""
    proxies = dict(cfg.proxies)
    if docker_info is not None:
        for key, val in (("HTTP_PROXY", docker_info.http_proxy), ("HTTPS_PROXY", docker_info.https_proxy),
                         ("NO_PROXY", docker_info.no_proxy)):
            if val and key not in proxies:
                proxies[key] = ConfigValue(val, "docker info", docker_info.source, None)
    return proxies


@rule("DD110", "proxy-catches-registry", category="daemon", severity=Severity.ERROR,
      title="The daemon's proxy would carry the registry's traffic")
def proxy_catches_registry(effective_config: EffectiveConfig, target_registries: list[TargetRegistry],
                           docker_info: DockerInfo | None = None,
                           endpoint_probes: EndpointProbes | None = None) -> Iterator[Finding]:
    """dockerd has HTTP_PROXY/HTTPS_PROXY (from the unit's Environment=, an EnvironmentFile or
    daemon.json "proxies"), and NO_PROXY does not exempt the registry, so pushes go to the proxy,
    which cannot reach an internal registry (or rejects large uploads).

    Matching is Go's: NO_PROXY entries are domains (matching subdomains too), `.suffix`, IPs,
    CIDRs, optionally with a port; `*` matches all; loopback is never proxied.

    How to fix: add the registry's host to NO_PROXY where HTTP(S)_PROXY is set, then
    daemon-reload and restart.

    Example:
        /etc/systemd/system/docker.service.d/http-proxy.conf:2 Environment="HTTPS_PROXY=http://proxy:3128"
        NO_PROXY=localhost,127.0.0.1   (no 10.0.0.5)
    """
    proxies = _proxy_settings(effective_config, docker_info)
    if "HTTP_PROXY" not in proxies and "HTTPS_PROXY" not in proxies:
        return
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    no_proxy = proxies.get("NO_PROXY")
    for t in target_registries:
        addr = t.address
        if no_proxy and no_proxy_match(no_proxy.value, addr.host, addr.port or 443):
            continue
        if trusted_as_insecure(addr, []) is not None:
            continue  # loopback: never proxied
        proxy = proxies.get("HTTPS_PROXY") or proxies.get("HTTP_PROXY")
        assert proxy is not None
        ev = [proxy.evidence(f"proxy {proxy.value}")]
        if no_proxy:
            ev.append(no_proxy.evidence(f"NO_PROXY={no_proxy.value}"))
        probe = (endpoint_probes or {}).get(str(addr))
        if probe is not None and probe.proxy_result:
            # live: the probe asked the proxy for a tunnel to the registry, as dockerd would
            verdict = "the proxy carries it" if probe.proxy_ok else "the proxy cannot reach it"
            ev.append(Evidence(f"probe {addr} via proxy", f"{verdict}: {probe.proxy_result}"))
        yield finding(
            "DD110", f"{addr} would go through the proxy {proxy.value}",
            f"dockerd uses {proxy.value} ({proxy.where()}) and NO_PROXY "
            f"{'(' + no_proxy.value + ')' if no_proxy else '(unset)'} does not exempt {addr.host}.",
            evidence=ev,
            fix=no_proxy_fix(addr.host, proxy, no_proxy),
            params={"registry": str(addr), "proxy": proxy.value},
        )
