"""Who listens where on the registry host, and how the registry is reached.

Listening sockets, live: the kernel's own tables. psutil only sees the sockets of the network
namespace it runs in (lab.md §7), so the tables are read from `/proc/PID/net/tcp{,6}` of a process in
dockerd's network namespace (the host network the registry is published on), and each socket's
inode is matched to its owner through `/proc/*/fd/*`. In a snapshot: `ss -peaonmi`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.facts.processes import PsProcess
from dockerdoctor.model import Provenance
from dockerdoctor.net import ip_of
from dockerdoctor.safetext import isdigits

# Processes that legitimately hold a registry's port.
REGISTRY_HOLDERS = {"docker-proxy", "registry", "docker-registry", "dockerdoctor", "serve-registry", "gunicorn",
                    "zot", "rootlessport", "rootlesskit", "harbor_registry", "registry_DO_NOT_USE_GC",
                    "conmon", "slirp4netns", "pasta"}


@dataclass(frozen=True)
class ListenSocket:
    ip: str  # "0.0.0.0", "::", "10.0.0.5"
    port: int
    pid: int | None
    process: str | None  # comm / name
    cmdline: str = ""
    source: str = ""
    line: int | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line if line is not None else self.line)

    @property
    def display(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def covers(self, ip: str) -> bool:
        """True when a registry that wants `ip` ("" or 0.0.0.0 = every address) would collide."""
        wild = ("", "0.0.0.0", "::", "*", "[::]")
        return self.ip in wild or ip in wild or self.ip == ip


def _hex_addr(h: str) -> str:
    if len(h) == 8:
        return str(ipaddress.IPv4Address(int(h, 16).to_bytes(4, "little")))
    raw = bytes.fromhex(h)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    addr = ipaddress.IPv6Address(words)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


def parse_proc_net_tcp(text: str) -> dict[int, tuple[str, int]]:
    """LISTEN rows (state 0A) of /proc/PID/net/tcp or tcp6: inode -> (ip, port)."""
    out: dict[int, tuple[str, int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != "0A":
            continue
        addr, _, port = cols[1].partition(":")
        try:
            out[int(cols[9])] = (_hex_addr(addr), int(port, 16))
        except ValueError:
            continue
    return out


def _netns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def sockets_in_netns(pid: int | str) -> list[ListenSocket]:
    """Listening TCP sockets of the network namespace of `pid`, with their owners."""
    inodes: dict[int, tuple[str, int]] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as fh:
                inodes.update(parse_proc_net_tcp(fh.read()))
        except OSError:
            continue
    ns = _netns(pid)
    owners: dict[int, tuple[int, str, str]] = {}
    if inodes:
        for entry in os.listdir("/proc"):
            if not isdigits(entry):
                continue
            if ns is not None and _netns(entry) != ns:
                continue
            try:
                fds = os.listdir(f"/proc/{entry}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{entry}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    ino = int(link[8:-1])
                    if ino in inodes and ino not in owners:
                        try:
                            with open(f"/proc/{entry}/comm") as fh:
                                comm = fh.read().strip()
                            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
                        except OSError:
                            comm, cmd = "?", ""
                        owners[ino] = (int(entry), comm, cmd)
    out = []
    for ino, (ip, port) in sorted(inodes.items(), key=lambda x: x[1][1]):
        pid_, comm, cmd = owners.get(ino, (None, None, ""))  # type: ignore[assignment]
        out.append(ListenSocket(ip, port, pid_, comm, cmd, f"/proc/{pid}/net/tcp (socket inode {ino})"))
    return out


_SS_USERS = re.compile(r'\(\("([^"]+)",pid=(\d+)')


def parse_ss(text: str, source: str) -> list[ListenSocket]:
    """`ss -peaonmi` (or -tlnp) output: the TCP sockets in LISTEN state."""
    out: list[ListenSocket] = []
    for i, line in enumerate(text.splitlines(), 1):
        cols = line.split()
        if len(cols) < 5:
            continue
        if cols[0] in ("tcp", "tcp6") and cols[1] == "LISTEN":
            local = cols[4]
        elif cols[0] == "LISTEN":
            local = cols[3]
        else:
            continue
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        if not isdigits(port):
            continue
        m = _SS_USERS.search(line)
        out.append(ListenSocket(host if host != "*" else "0.0.0.0", int(port), int(m.group(2)) if m else None,
                                m.group(1) if m else None, "", source, i))
    return out


def host_netns_pid(facts: Facts) -> int | str:
    """A process in "the host's" network namespace: dockerd's (where it publishes ports), else ours."""
    proc = facts.optional("dockerd_process")
    if proc is not None and proc.pid and os.path.exists(f"/proc/{proc.pid}/ns/net"):
        return int(proc.pid)
    return "thread-self" if os.path.exists("/proc/thread-self/ns/net") else "self"


@fact()
def listening_sockets(facts: Facts) -> list[ListenSocket]:
    if facts.live:
        pid = host_netns_pid(facts)
        if not os.path.exists(f"/proc/{pid}/net/tcp"):
            raise FactUnavailable("/proc/PID/net/tcp is not readable here")
        return sockets_in_netns(pid)
    text = facts.source.command("ss")
    if text is None:
        raise FactUnavailable("no socket list in the snapshot (sos_commands/networking/ss_-peaonmi)")
    return parse_ss(text, facts.source.command_source("ss"))


# --------------------------------------------------------------------------- registry processes


@dataclass(frozen=True)
class RegistryProcess:
    pid: int | None
    argv: tuple[str, ...]
    kind: str  # distribution | serve-registry | python | zot
    source: str
    config_path: str | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    @property
    def name(self) -> str:
        return self.argv[0].rsplit("/", 1)[-1] if self.argv else "?"


def classify_registry_argv(argv: list[str]) -> tuple[str, str | None] | None:
    if not argv:
        return None
    bases = [a.rsplit("/", 1)[-1] for a in argv]
    b0 = bases[0]
    if b0 in ("registry", "docker-registry", "registry_DO_NOT_USE_GC") and "serve" in argv:
        cfg = next((a for a in argv[argv.index("serve") + 1:] if not a.startswith("-")), None)
        return "distribution", cfg
    if b0 in ("dockerdoctor", "serve-registry") and ("serve-registry" in argv or b0 == "serve-registry"):
        return "serve-registry", None
    if "serve-registry" in argv and any(b.startswith("python") for b in bases[:1]) and "dockerdoctor" in " ".join(argv):
        return "serve-registry", None
    if b0 == "zot" and "serve" in argv:
        return "zot", None
    if b0 == "gunicorn" or (b0.startswith("python") and "gunicorn" in " ".join(argv)):
        if "docker_registry" in " ".join(argv):
            return "python", None
    if b0 == "docker-registry":
        return "python", None
    return None


@fact()
def registry_processes(facts: Facts) -> list[RegistryProcess]:
    """Registry servers running as processes (on the host, or in containers: same PID namespace)."""
    out: list[RegistryProcess] = []
    if facts.live:
        import psutil

        host_ns = _netns(host_netns_pid(facts))
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                argv = p.info["cmdline"] or []
            except (psutil.Error, KeyError):
                continue
            c = classify_registry_argv(list(argv))
            if c and host_ns is not None and _netns(p.info["pid"]) not in (host_ns, None):
                continue  # in another network namespace: a container's own, or another host's (a lab)
            if c:
                out.append(RegistryProcess(p.info["pid"], tuple(argv), c[0], "process table (psutil)", c[1]))
        return out
    processes: list[PsProcess] = facts.get("ps_processes")
    for p in processes:
        c = classify_registry_argv(p.argv)
        if c:
            out.append(RegistryProcess(p.pid, tuple(p.argv), c[0], p.source, c[1]))
    return out


# --------------------------------------------------------------------------- how the registry is reached


@dataclass(frozen=True)
class RegistryListener:
    port: int
    bind_ip: str  # "" = every address
    how: str  # "host" (a host process or --network host) | "published" (docker publishes the port)
    owner: str  # "container registry" | "process registry (pid 42)"
    evidence_source: str
    evidence_text: str
    container: str | None = None
    pid: int | None = None
    running: bool = True

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.evidence_source, text or self.evidence_text, line)


def _pid_in_container(pid: int | None, facts: Facts) -> bool:
    if pid is None or not facts.live:
        return False
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            cg = fh.read()
    except OSError:
        return False
    return "docker" in cg or "containerd" in cg or "libpod" in cg


@fact()
def registry_listeners(facts: Facts) -> list[RegistryListener]:
    """Every way a registry on this host is reached: host-level listeners and published ports."""
    regs = facts.optional("registry_containers")
    procs = facts.optional("registry_processes")
    socks = facts.optional("listening_sockets")
    if regs is None and procs is None:
        raise FactUnavailable("neither containers nor processes are known here")
    out: list[RegistryListener] = []
    seen: set[tuple[int, str]] = set()
    for rc in regs or []:
        c = rc.container
        if c.host_network:
            addr = c.env.get("REGISTRY_HTTP_ADDR") or ""
            ip = ip_of(addr)
            key = (rc.port, "host")
            if key not in seen:
                seen.add(key)
                out.append(RegistryListener(rc.port, ip, "host", f"container {c.name} (--network host)", c.source,
                                            f"network host, port {rc.port} ({rc.port_why})", c.name,
                                            running=c.status in ("running", "restarting")))
            continue
        for p in c.ports:
            if p.container_port == rc.port and p.proto == "tcp" and p.host_port and p.host_ip != "::":
                key = (p.host_port, "published")
                if key not in seen:
                    seen.add(key)
                    out.append(RegistryListener(p.host_port, p.host_ip if p.host_ip != "0.0.0.0" else "",
                                                "published", f"container {c.name}", c.source,
                                                f"publishes {p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}"
                                                "/tcp", c.name, running=c.status in ("running", "restarting")))
    container_argvs = {tuple(rc.container.argv) for rc in regs or [] if rc.container.argv}
    for rp in procs or []:
        if _pid_in_container(rp.pid, facts):
            continue  # a containerised registry: listed above from its container
        if any(tuple(rp.argv[-len(a):]) == a for a in container_argvs if len(a) <= len(rp.argv)):
            continue  # the same command as a registry container (a snapshot cannot tell by cgroup)
        if rp.config_path and any(rp.config_path in a for a in container_argvs):
            continue  # `registry serve CONFIG` started by a registry container's entrypoint
        ports = [s for s in socks or [] if s.pid == rp.pid and s.pid is not None]
        if ports:
            for s in ports:
                key = (s.port, "host")
                if key not in seen:
                    seen.add(key)
                    out.append(RegistryListener(s.port, s.ip if s.ip not in ("0.0.0.0", "::") else "", "host",
                                                f"process {rp.name} (pid {rp.pid})", s.source,
                                                f"{rp.name} (pid {rp.pid}) listens on {s.display}", None, rp.pid))
        else:
            port = _port_from_config(facts, rp)
            if port and (port, "host") not in seen:
                seen.add((port, "host"))
                out.append(RegistryListener(port, "", "host", f"process {rp.name} (pid {rp.pid})", rp.source,
                                            " ".join(rp.argv)[:200], None, rp.pid))
    return out


def _port_from_config(facts: Facts, rp: RegistryProcess) -> int | None:
    argv = list(rp.argv)
    for i, a in enumerate(argv):
        if a in ("--port", "-p") and i + 1 < len(argv) and isdigits(argv[i + 1]):
            return int(argv[i + 1])
        if a.startswith("--port=") and isdigits(a[7:]):
            return int(a[7:])
    if rp.config_path:
        text = facts.source.read_text(rp.config_path, limit=256 * 1024)
        if text:
            m = re.search(r"^\s+addr:\s*['\"]?[^\s'\"]*:(\d+)", text, re.M)
            if m:
                return int(m.group(1))
    if rp.kind == "serve-registry":
        return 5000
    return 5000 if rp.kind in ("distribution", "python") else None
