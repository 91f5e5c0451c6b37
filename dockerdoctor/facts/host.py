"""Host facts beyond the daemon configuration: the docker journal, certs.d, the docker socket,
which registries matter here, and (live only) what each registry endpoint answers."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, HostPort, fact
from dockerdoctor.model import Provenance
from dockerdoctor.sources.specs import dir_paths

if TYPE_CHECKING:
    from dockerdoctor.probe.netns import ProbeOrigin

JOURNAL_LIMIT = 8 * 1024 * 1024  # the tail that is read; a 200 MB journal costs no more


@dataclass
class Journal:
    source: str
    lines: list[str]
    truncated: bool = False
    _names: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    def names(self, addr: HostPort) -> bool:
        """Does any line name addr (HOST:PORT, or the host alone when addr has no port)? Answered once per addr."""
        key = str(addr)
        if key not in self._names:
            needles = (key, f"{addr.host}:{addr.port}") if addr.port else (key,)
            self._names[key] = any(n in line for line in self.lines for n in needles)
        return self._names[key]

    def grep(self, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
        return [(i + 1, line) for i, line in enumerate(self.lines) if pattern.search(line)]


@fact()
def docker_journal(facts: Facts) -> Journal:
    from dockerdoctor.facts.dockerhost import require_local_daemon

    require_local_daemon(facts, "docker journal")
    text = facts.source.command("journal_docker", limit=JOURNAL_LIMIT)
    if text is None:
        raise FactUnavailable("the docker journal is not available (journalctl --unit docker)")
    lines = text.splitlines()
    truncated = len(text) >= JOURNAL_LIMIT
    if truncated and lines:
        lines = lines[1:]  # the first line may be cut in the middle
    return Journal(facts.source.command_source("journal_docker"), lines, truncated)


# --------------------------------------------------------------------------- certs.d


@dataclass
class CertsDir:
    name: str
    path: str
    files: list[str]

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text or f"files: {', '.join(self.files) or '(none)'}", line)

    def pair_error(self) -> str | None:
        """What dockerd fails every push to this registry with: a NAME.cert without NAME.key, or the reverse."""
        from dockerdoctor.probe.tls import pair_error

        return pair_error(self.files)


@fact()
def certs_d(facts: Facts) -> dict[str, CertsDir]:
    """/etc/docker/certs.d as the daemon sees it: live, through /proc/PID/root (its mount namespace;
    setns into a mount namespace is impossible in a threaded process, and not needed to read files)."""
    from dockerdoctor.facts.dockerhost import require_local_daemon

    home = dir_paths("certs_d")[0]
    require_local_daemon(facts, home)
    base = home
    proc = facts.optional("dockerd_process")
    if facts.live and proc is not None:
        base = proc.read_path(base)
    if not facts.live and not facts.source.exists(base) and facts.optional("effective_config") is None:
        # a snapshot with nothing of docker in it (no unit, dockerd or daemon.json): its certs.d is unknown
        raise FactUnavailable(f"the snapshot shows no docker (no unit, dockerd or daemon.json) and no {home}, "
                              "so its certs.d is unknown")
    out: dict[str, CertsDir] = {}
    for name in facts.source.listdir(base):
        out[name] = CertsDir(name, f"{home}/{name}", facts.source.listdir(f"{base}/{name}"))
    return out


def daemon_certs_dir(facts: Facts, name: str) -> str | None:
    """Where to read certs.d/NAME as the daemon sees it (None: the daemon has none for NAME)."""
    if name not in (facts.optional("certs_d") or {}):
        return None
    path = f"{dir_paths('certs_d')[0]}/{name}"
    proc = facts.optional("dockerd_process") if facts.live else None
    return proc.read_path(path) if proc is not None else path


# --------------------------------------------------------------------------- docker socket


@dataclass
class DockerSocket:
    path: str
    exists: bool
    accessible: bool
    mode: int | None
    uid: int
    groups: list[int] = field(default_factory=list)
    gid: int | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text, line)


@fact()
def docker_socket(facts: Facts) -> DockerSocket:
    if not facts.live:
        raise FactUnavailable("socket permissions can only be checked on a live host")
    from dockerdoctor.facts.dockerhost import DockerHost

    host: DockerHost = facts.get("docker_host")
    if host.path is None:
        raise FactUnavailable(f"the daemon is at {host.url} ({host.chosen_by}), not on a unix socket")
    path = host.path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return DockerSocket(path, False, False, None, os.getuid(), os.getgroups())
    except OSError:
        return DockerSocket(path, True, False, None, os.getuid(), os.getgroups())
    ok = os.access(path, os.R_OK | os.W_OK)
    return DockerSocket(path, stat.S_ISSOCK(st.st_mode), ok, stat.S_IMODE(st.st_mode), os.getuid(), os.getgroups(),
                        st.st_gid)


# --------------------------------------------------------------------------- target registries


@dataclass(frozen=True)
class TargetRegistry:
    address: HostPort
    why: str  # "--registry", "insecure-registries in X", "registry container Y", "journal: ..."
    explicit: bool = False


_JOURNAL_HOST = re.compile(
    r'(?:Get|Head|Post|Put|Patch)\s+\\?"?https?://([A-Za-z0-9.\-\[\]:]+?)(?::(\d+))?/v[12]/'
)


MAX_CONFIG_TARGETS = 32


@fact()
def target_registries(facts: Facts) -> list[TargetRegistry]:
    """The registries this host must be able to use: --registry, else what the host itself names."""
    if facts.options.registries:
        return [TargetRegistry(r, "named with --registry", True) for r in facts.options.registries]
    seen: dict[str, TargetRegistry] = {}

    def add(hp: HostPort, why: str) -> None:
        if hp.port is None:
            return
        seen.setdefault(str(hp), TargetRegistry(hp, why))

    from dockerdoctor.facts.daemon import check_insecure_entry

    cfg = facts.optional("effective_config")
    if cfg is not None:
        # A daemon.json may list thousands of entries: the first MAX_CONFIG_TARGETS are enough to judge
        # the file, and each target costs every endpoint rule a pass.
        for v in (cfg.insecure_planned + (cfg.insecure_running or []))[:MAX_CONFIG_TARGETS]:
            chk = check_insecure_entry(v.value)
            if chk.normalized and not chk.is_cidr:
                try:
                    add(HostPort.parse(chk.normalized), f"insecure-registries entry in {v.where()}")
                except ValueError:
                    pass
    journal = facts.optional("docker_journal")
    if journal is not None:
        for line in journal.lines[-5000:]:
            m = _JOURNAL_HOST.search(line)
            if m:
                host = m.group(1).strip("[]")
                port = int(m.group(2)) if m.group(2) else None
                if host in ("registry-1.docker.io", "index.docker.io", "auth.docker.io"):
                    continue
                add(HostPort(host.lower(), port), "named in the docker journal's push/pull errors")
    containers = facts.optional("registry_endpoints_from_containers")
    if containers:
        for hp, why in containers:
            add(hp, why)
    return list(seen.values())


# --------------------------------------------------------------------------- endpoint probes (live)


@fact()
def probe_origin(facts: Facts) -> ProbeOrigin:
    """Where live probes run: the inspected daemon's network namespace (no daemon: the caller's)."""
    from dockerdoctor.facts.dockerhost import DockerHost
    from dockerdoctor.probe.netns import ProbeOrigin, can_enter, netns_label, own_netns_label

    if not facts.live:
        raise FactUnavailable("a snapshot is never probed over the network")
    host: DockerHost = facts.get("docker_host")
    if host.remote:
        raise FactUnavailable(f"the daemon is at {host.url} ({host.chosen_by}): a probe from this host would not "
                              "show what that daemon sees; run dockerdoctor on the daemon's host")
    try:
        proc = facts.get("dockerd_process")
    except FactUnavailable as exc:
        raise FactUnavailable(f"the daemon's network namespace is unknown ({exc.reason})") from None
    if proc is None or not proc.pid:
        return ProbeOrigin(None, own_netns_label(), note="no daemon answers, so probes run from here")
    path = f"/proc/{proc.pid}/ns/net"
    own = own_netns_label()
    try:
        theirs = netns_label(path)
    except OSError as exc:
        return ProbeOrigin(None, own, note=f"{path} cannot be read ({exc.strerror}); assumed to be this one")
    if theirs == own:
        return ProbeOrigin(None, own, proc.pid)
    why = can_enter(path)
    if why is not None:
        raise FactUnavailable(f"dockerd pid {proc.pid} runs in another network namespace ({theirs}), and "
                              f"probing from there needs root ({why})")
    return ProbeOrigin(path, theirs, proc.pid)


@fact()
def endpoint_probes(facts: Facts) -> dict[str, object]:
    """Live probe of every target registry, in parallel, with a tight timeout, from the daemon's
    network namespace (probe_origin)."""
    if not facts.live:
        raise FactUnavailable("a snapshot is never probed over the network")
    if not facts.options.network:
        raise FactUnavailable("network probes are disabled")
    targets: list[TargetRegistry] = facts.get("target_registries")
    if not targets:
        return {}
    from dockerdoctor.probe.endpoint import probe_endpoint
    from dockerdoctor.probe.netns import probe_pool

    origin = facts.get("probe_origin")
    cfg = facts.optional("effective_config")
    proxy_env = {k: v.value for k, v in cfg.proxies.items()} if cfg is not None and cfg.proxies else None

    with probe_pool(origin, min(16, len(targets))) as pool:
        futures = {
            str(t.address): pool.submit(
                probe_endpoint, t.address, facts.options.timeout, daemon_certs_dir(facts, str(t.address)),
                proxy_env=proxy_env,
            )
            for t in targets
        }
        return {k: f.result() for k, f in futures.items()}
