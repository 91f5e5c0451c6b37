"""Port conflicts on the registry host."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.containers import ContainerInfo
from dockerdoctor.facts.ports import REGISTRY_HOLDERS, ListenSocket, RegistryProcess
from dockerdoctor.facts.registry_containers import RegistryContainer
from dockerdoctor.fixes.recipes.container import free_port_fix
from dockerdoctor.model import Finding, Severity
from dockerdoctor.net import ip_of
from dockerdoctor.safetext import short

IN_USE = re.compile(r"address already in use|port is already allocated|bind: address already in use", re.I)


def _wanted_ports(rc: RegistryContainer) -> list[tuple[int, str, str]]:
    """(host port, bind ip, how) the registry container needs on the host."""
    c = rc.container
    if c.host_network:
        addr = c.env.get("REGISTRY_HTTP_ADDR") or ""
        ip = ip_of(addr)
        return [(rc.port, ip, "its port with --network host")]
    out = []
    for p in c.ports:
        if p.proto == "tcp" and p.host_port and p.host_ip != "::":
            out.append((p.host_port, p.host_ip if p.host_ip != "0.0.0.0" else "", f"published {p.docker_arg()}"))
    return out


def _holder_name(s: ListenSocket) -> str:
    if s.process:
        return f"{s.process} (pid {s.pid})" if s.pid else s.process
    return "an unknown process" + (f" (pid {s.pid})" if s.pid else "")


def _is_registry_holder(s: ListenSocket, procs: list[RegistryProcess] | None) -> bool:
    if procs and s.pid is not None and any(p.pid == s.pid for p in procs):
        return True
    name = (s.process or "").rsplit("/", 1)[-1]
    return name in REGISTRY_HOLDERS or "serve-registry" in s.cmdline


@rule("DD303", "port-in-use", category="network", severity=Severity.ERROR,
      title="Another process holds the registry's port")
def port_in_use(registry_containers: list[RegistryContainer], listening_sockets: list[ListenSocket],
                registry_processes: list[RegistryProcess] | None = None) -> Iterator[Finding]:
    """The port the registry needs on the host is held by another process, so the registry
    cannot start (`listen tcp :5000: bind: address already in use`), or `docker run -p` fails with
    `Bind for 0.0.0.0:5000 failed: port is already allocated` / `driver failed programming
    external connectivity ... address already in use`.

    Why it happens: another service took the port first: RHEL's docker-distribution service
    (registry on :5000), a second registry container, a development web server, or macOS-style
    AirPlay tools on 5000. The holder is named by process and PID (psutil and /proc live, `ss
    -peaonmi` in a snapshot); docker-proxy and the registry binaries themselves are expected.

    How to fix: stop or move the other service (`systemctl disable --now UNIT`), or publish the
    registry on a free host port (`-p 5001:5000`) and use that port in image names.

    Example:
        level=fatal msg="listen tcp 10.0.0.5:5000: bind: address already in use"
        ss: LISTEN 0 128 0.0.0.0:5000 users:(("python3",pid=4242,fd=3))
    """
    if not registry_containers and not registry_processes:
        raise Skip("no registry on this host")
    for rc in registry_containers:
        c = rc.container
        for port, ip, how in _wanted_ports(rc):
            holders = [s for s in listening_sockets if s.port == port and s.covers(ip)]
            # running: docker-proxy or the registry itself holds the port, anything else is a conflict;
            # not running: whoever holds the port (even another registry) keeps this one from starting
            bad = holders if c.status != "running" else [
                s for s in holders if not _is_registry_holder(s, registry_processes)]
            if not bad:
                continue
            yield _held(c, port, how, bad[0])


def _held(c: ContainerInfo, port: int, how: str, s: ListenSocket) -> Finding:
    """Registry container `c` needs `port`, and socket `s` of another process holds it."""
    ev = [s.evidence(f"{s.display} LISTEN held by {_holder_name(s)}"
                     + (f": {short(s.cmdline, 120)}" if s.cmdline else "")),
          c.evidence(f"{c.name} needs {port} ({how}); Status={c.status}" + (f" Error={c.error}" if c.error else ""))]
    hits = c.log_grep(IN_USE)
    if hits:
        ev.append(c.log_evidence(hits[-1][0], hits[-1][1]))
    state_hint = ""
    if c.status != "running":
        state_hint = f" {c.name} is {c.status}" + (f" ({short(c.error, 120)})" if c.error else "") + "."
    return finding(
        "DD303", f"Port {port} is held by {_holder_name(s)}, not by registry {c.name}",
        f"Registry {c.name} needs port {port} ({how}), but {_holder_name(s)} listens on {s.display}." + state_hint,
        evidence=ev,
        fix=free_port_fix(port, s.process, s.pid, c.name),
        params={"port": port, "container": c.name, "holder": s.process, "holder_pid": s.pid},
    )
