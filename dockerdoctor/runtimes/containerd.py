"""containerd as a client of the registry: the daemon kubelet talks to (process, version, config.toml),
its CRI plugin's adapter, every hosts.toml the containerd family reads, the journal and the probe from
containerd's network namespace. The other clients of hosts.toml have their own modules: nerdctl.py, k3s.py,
dockerd_store.py (dockerd's image stores); HostsDirRuntime (hosts_toml.py) is the adapter they share.

The files, folders and commands these facts read are rows of the spec table
(dockerdoctor/sources/specs.py), so ``collect`` and ``collect --script`` gather them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import Origin
from dockerdoctor.runtimes.containerd_config import (
    DEFAULT_CONFIG_PATH_22,
    DEFAULT_CONFIG_PATH_SINCE,
    ContainerdConfig,
    merge_imports,
    parse_containerd_config,
)
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime, HostsFile, parse_hosts_toml
from dockerdoctor.sources.specs import dir_paths, file_path

# Every path and command these facts read is a row of the spec table (dockerdoctor/sources/specs.py:
# containerd_config, k3s_containerd_config, nerdctl_toml, k3s_registries_yaml; containerd_certs_d, k3s_certs_d,
# certs_d; containerd_version, containerd_config_dump, journal_containerd), so `collect` gathers them.
CONTAINERD_CONFIG = file_path("containerd_config")
CONTAINERD_CERTS_D = dir_paths("containerd_certs_d")[0]
DOCKER_CERTS_D = dir_paths("certs_d")[0]
NERDCTL_TOML = file_path("nerdctl_toml")
K3S_REGISTRIES = file_path("k3s_registries_yaml")
K3S_CONFIG = file_path("k3s_containerd_config")
K3S_CONTAINERD_DIR = os.path.dirname(K3S_CONFIG)
K3S_CERTS_D = dir_paths("k3s_certs_d")[0]
FILE_KEYS = ("containerd_config", "k3s_containerd_config", "nerdctl_toml", "k3s_registries_yaml")
DIR_KEYS = ("containerd_certs_d", "k3s_certs_d", "certs_d")
COMMAND_KEYS = ("containerd_version", "containerd_config_dump", "journal_containerd")
# facts of rootless.py: lists of adapters
ROOTLESS_FAMILY = ("containerd_rootless", "nerdctl_rootless", "dockerd_rootless")


def _ver(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.search(r"\bv?(\d+)\.(\d+)\.\d+", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --------------------------------------------------------------------------------------------- source access


def source_lister(facts: Facts):
    def listdir(path: str) -> list[str] | None:
        st = facts.source.stat(path)
        if st is None:
            return None
        return facts.source.listdir(path)

    return listdir


def source_reader(facts: Facts):
    def read(path: str) -> str | None:
        return facts.source.read_text(path)

    return read


# --------------------------------------------------------------------------------------------- process


@dataclass(frozen=True)
class ContainerdProcess:
    pid: int | None
    argv: tuple[str, ...]
    config: str  # --config/-c, else the default
    source: str
    k3s: bool = False

    @property
    def netns(self) -> str | None:
        return f"/proc/{self.pid}/ns/net" if self.pid else None


def _config_flag(argv: list[str] | tuple[str, ...]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


# Where kubelet's default endpoint and k3s's embedded containerd listen.
CONTAINERD_SOCKETS = ("/run/containerd/containerd.sock", "/run/k3s/containerd/containerd.sock")


def _socket_peer(path: str) -> int | None:
    """The PID listening on a unix socket (SO_PEERCRED), None when nothing answers there."""
    import socket

    from dockerdoctor.facts.dockerhost import peer_credentials

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            return peer_credentials(sock)[0] or None
    except OSError:
        return None


def _is_containerd(argv: list[str] | tuple[str, ...]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "containerd"


@fact()
def containerd_process(facts: Facts) -> ContainerdProcess | None:
    """The containerd daemon on this host (None: none runs). ``--containerd-config`` pins one (tests, or a
    host with several)."""
    pinned = getattr(facts.options, "containerd_config", None)
    if facts.live:
        import psutil

        if not pinned:
            # The containerd kubelet (or k3s) talks to is the one behind its socket, as seen from here
            # (SO_PEERCRED), not any containerd in the process table: dockerd's own, a test's or another
            # namespace's containerd serves no kubelet of this host.
            for sock_path in CONTAINERD_SOCKETS:
                pid = _socket_peer(sock_path)
                if not pid:
                    continue
                try:
                    argv = psutil.Process(pid).cmdline()
                except (psutil.Error, OSError):
                    continue
                if _is_containerd(argv) or "k3s" in os.path.basename(argv[0] if argv else ""):
                    cfg = _config_flag(argv) or (K3S_CONFIG if "k3s" in sock_path else CONTAINERD_CONFIG)
                    return ContainerdProcess(pid, tuple(argv), cfg, f"pid {pid} behind {sock_path}",
                                             K3S_CONTAINERD_DIR in cfg)
            return None
        for p in psutil.process_iter(["pid", "cmdline"]):
            argv = p.info.get("cmdline") or []
            if _is_containerd(argv) and (_config_flag(argv) or CONTAINERD_CONFIG) == pinned:
                return ContainerdProcess(p.info["pid"], tuple(argv), pinned, f"pid {p.info['pid']}",
                                         K3S_CONTAINERD_DIR in pinned)
        return ContainerdProcess(None, (), pinned, "--containerd-config")
    if pinned:
        return ContainerdProcess(None, (), pinned, "--containerd-config")
    for p in facts.get("ps_processes"):
        if _is_containerd(p.argv):
            cfg = _config_flag(p.argv) or CONTAINERD_CONFIG
            return ContainerdProcess(p.pid, tuple(p.argv), cfg, p.source, K3S_CONTAINERD_DIR in cfg)
    return None


@fact()
def containerd_version(facts: Facts) -> tuple[int, int] | None:
    """containerd's major.minor (`containerd --version`), None when unknown."""
    text = facts.source.command("containerd_version")
    if text is None:
        # containerd logs its version when it starts: msg="starting containerd" ... version=v1.7.12
        journal = facts.optional("containerd_journal")
        for line in reversed(journal.lines if journal is not None else []):
            if "starting containerd" in line and "version=" in line:
                text = line.split("version=", 1)[1]
                break
    return _ver(text)


@fact()
def containerd_config(facts: Facts) -> ContainerdConfig | None:
    """config.toml of the running containerd (or /etc/containerd/config.toml); None when there is none."""
    proc = facts.optional("containerd_process")
    path = proc.config if proc is not None else CONTAINERD_CONFIG
    text = facts.source.read_text(path)
    if text is None:
        if proc is None:
            return None
        cfg = ContainerdConfig(path=path, exists=False)
        return cfg
    cfg = parse_containerd_config(text, path)
    return merge_imports(cfg, facts.source.listdir, facts.source.read_text)




# --------------------------------------------------------------------------------------------- CRI


@fact()
def containerd_cri(facts: Facts) -> HostsDirRuntime | None:
    """containerd's CRI plugin (what kubelet pulls through): config_path directories, or the legacy
    mirrors when there is none."""
    cfg: ContainerdConfig | None = facts.get("containerd_config")
    proc = facts.optional("containerd_process")
    if cfg is None and proc is None:
        return None
    if cfg is not None and cfg.cri_disabled:
        return None  # no CRI plugin: nothing pulls through it (docker-ce's containerd, dockerd's own)
    if facts.live and proc is None:
        return None  # installed, not running: nothing pulls through it now (a fix must not start it)
    version = facts.optional("containerd_version")
    roots: tuple[str, ...] = ()
    notes: list[str] = []
    if cfg is not None and cfg.config_path:
        roots = cfg.config_path
    elif version is not None and version >= DEFAULT_CONFIG_PATH_SINCE and not (cfg and cfg.mirrors):
        roots = DEFAULT_CONFIG_PATH_22
        notes.append("containerd 2.2+: config_path defaults to " + ":".join(roots))
    k3s = bool(proc and proc.k3s)
    return HostsDirRuntime("k3s-containerd" if k3s else "containerd-cri",
                           "k3s's containerd (CRI)" if k3s else "containerd CRI (kubelet)", roots,
                           source_lister(facts), source_reader(facts), version, proc.netns if proc else None,
                           Origin(cfg.path if cfg else CONTAINERD_CONFIG,
                                  cfg.config_path_line if cfg else None),
                           legacy=cfg if (cfg is not None and not roots) else None, notes=tuple(notes))


# --------------------------------------------------------------------------------------------- hosts files


@fact()
def containerd_hosts_files(facts: Facts) -> dict[str, HostsFile]:
    """Every hosts.toml under the directories any containerd-family client reads, by path."""
    roots = [dir_paths(k)[0] for k in DIR_KEYS]
    cfg = facts.optional("containerd_config")
    if cfg is not None:
        roots += [r for r in cfg.config_path if r not in roots]
    from dockerdoctor.runtimes.nerdctl import replaced_defaults

    for name in ROOTLESS_FAMILY:  # the per-user directories rootless containerd and nerdctl read (or would)
        for rt in facts.optional(name) or []:
            roots += [r for r in (*rt.roots, *replaced_defaults(rt)) if r not in roots]
    out: dict[str, HostsFile] = {}
    for root in roots:
        for name in facts.source.listdir(root) if facts.source.stat(root) else []:
            p = f"{root}/{name}/hosts.toml"
            text = facts.source.read_text(p)
            if text is not None:
                out[p] = parse_hosts_toml(text, p)
    return out


@fact()
def containerd_runtimes(facts: Facts) -> list[Any]:
    """The containerd-family adapters present on this host (for the `runtimes` fact and `resolve`)."""
    out = []
    for name in ("containerd_cri", "dockerd_containerd_store", "dockerd_classic", "nerdctl_runtime", "k3s_runtime"):
        rt = facts.optional(name)
        if rt is not None:
            out.append(rt)
    for name in ROOTLESS_FAMILY:
        out += facts.optional(name) or []
    return out


@fact()
def containerd_journal(facts: Facts):
    """containerd's log (journal or the sosreport's copy)."""
    from dockerdoctor.facts.host import Journal

    text = facts.source.command("journal_containerd")
    if text is None:
        raise FactUnavailable("no containerd journal " + ("(journalctl gave nothing)" if facts.live else
                                                          "in the snapshot"))
    return Journal(facts.source.command_source("journal_containerd"), text.splitlines())


@fact()
def containerd_probes(facts: Facts) -> dict[str, object]:
    """Live probe of every target registry from containerd's own network namespace."""
    if not facts.live:
        raise FactUnavailable("a snapshot is never probed over the network")
    if not facts.options.network:
        raise FactUnavailable("network probes are disabled")
    targets = facts.get("target_registries")
    proc = facts.optional("containerd_process")
    if not targets:
        return {}
    from dockerdoctor.probe.endpoint import probe_endpoint
    from dockerdoctor.probe.netns import ProbeOrigin, netns_label, own_netns_label, probe_pool

    origin = ProbeOrigin(None, own_netns_label())
    if proc is not None and proc.netns:
        try:
            label = netns_label(proc.netns)
            if label != origin.label:
                origin = ProbeOrigin(proc.netns, label, proc.pid)
        except OSError:
            pass
    with probe_pool(origin, min(8, len(targets))) as pool:
        futures = {str(t.address): pool.submit(probe_endpoint, t.address, facts.options.timeout, None,
                                               check_auth=False) for t in targets}
        return {k: f.result() for k, f in futures.items()}
