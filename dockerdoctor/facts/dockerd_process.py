"""The running dockerd: its process (psutil live, `ps auxwww` in a snapshot), the sockets it serves, its
mount namespace (/proc/PID/root), and any other dockerd on the host."""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.facts.dockerd_cli import ParsedCommandLine, parse_dockerd_argv
from dockerdoctor.facts.dockerhost import (
    DEFAULT_HOST,
    DockerHost,
    EngineAnswer,
    OtherDockerd,
    path_in_root,
    reachable_sockets,
    same_socket,
)
from dockerdoctor.facts.processes import PsProcess
from dockerdoctor.facts.systemd import (
    SystemdUnitState,
)
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import isdigits

# --------------------------------------------------------------------------- running dockerd


@dataclass
class DockerdProcess:
    pid: int | None
    argv: list[str]
    start_time: float | None  # epoch seconds
    source: str
    root_prefix: str | None = None  # /proc/PID/root, to read files as the daemon sees them

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    @property
    def parsed(self) -> ParsedCommandLine:
        return parse_dockerd_argv(self.argv)

    def read_path(self, path: str) -> str:
        """Where to read the daemon's file `path`: through its root (its mount namespace) when known."""
        return path_in_root(self.root_prefix, path) if self.root_prefix else path


def _is_dockerd(argv: list[str]) -> bool:
    if not argv:
        return False
    base = argv[0].rsplit("/", 1)[-1]
    if base in ("dockerd", "dockerd-current", "dockerd-latest"):
        return True
    if base in ("docker", "docker-current") and len(argv) > 1 and (argv[1] == "daemon" or "-d" in argv[1:]):
        return True
    return False


def sockets_served(argv: list[str], default: str = DEFAULT_HOST) -> list[str]:
    """The sockets a dockerd command line listens on (no -H: the default socket; fd://: systemd's)."""
    hosts = [f.value for f in parse_dockerd_argv(argv).values("host") if f.value]
    out: list[str] = []
    for h in hosts or [default]:
        h = DEFAULT_HOST if h.startswith("fd://") else h  # socket activation: docker.socket's /run/docker.sock
        if not any(same_socket(h, o) for o in out):
            out.append(h)
    return out


def _select_process(candidates: list[DockerdProcess], want: str, main_pid: int | None = None
                    ) -> DockerdProcess | None:
    """The dockerd that serves socket `want` by its -H flags (several: the unit's main PID among them).
    Never "the only one" or "the first": an unrelated dockerd is not this host's daemon."""
    matching = [c for c in candidates if any(same_socket(want, s) for s in sockets_served(c.argv))]
    if len(matching) > 1 and main_pid is not None:
        matching = [c for c in matching if c.pid == main_pid]
    return matching[0] if len(matching) == 1 else None


def _proc_root(pid: int) -> str | None:
    root = f"/proc/{pid}/root"
    return root if os.access(root + "/", os.R_OK | os.X_OK) else None


def _live_process(pid: int, source: str) -> DockerdProcess | None:
    import psutil

    try:
        p = psutil.Process(pid)
        argv = p.cmdline()
        created = p.create_time()
    except (psutil.Error, OSError):
        return None
    if not _is_dockerd(argv):
        return None
    return DockerdProcess(pid, list(argv), created, source, _proc_root(pid))


def _main_pid(facts: Facts) -> int | None:
    """docker.service's running main process (MainPID; ExecMainPID only while the unit is active)."""
    state: SystemdUnitState | None = facts.optional("systemd_state")
    if state is None:
        return None
    pid = state.get("MainPID") or (state.get("ExecMainPID") if state.active_state == "active" else None)
    return int(pid) if pid and isdigits(str(pid)) and int(pid) > 0 else None


@fact()
def dockerd_process(facts: Facts) -> DockerdProcess | None:
    """The daemon behind the socket, or None when nothing serves it. Unavailable when it cannot be known.

    Live, the socket names it: the PID comes from SO_PEERCRED on a connection to it (with socket
    activation, systemd holds the socket and docker.service's MainPID is the daemon). A snapshot has only
    `ps`: the dockerd whose -H flags (or the unit's MainPID) serve the socket."""
    host: DockerHost = facts.get("docker_host")
    if facts.live:
        if host.remote:
            raise FactUnavailable(f"the daemon is at {host.url} ({host.chosen_by}), so its process is not on "
                                  "this host")
        ans: EngineAnswer = facts.get("engine_answer")
        if not ans.answered:
            return None
        if not ans.peer_pid:
            raise FactUnavailable(f"the daemon on {host.url} is in another PID namespace (SO_PEERCRED gave no "
                                  "PID), so its process and files cannot be seen from here")
        via = f"pid {ans.peer_pid} listens on {host.url} (SO_PEERCRED)"
        proc = _live_process(ans.peer_pid, via)
        if proc is None:
            # Socket activation: systemd (or another holder) owns the socket; the unit's main process serves it.
            main = _main_pid(facts)
            proc = _live_process(main, f"docker.service MainPID {main}; {via}") if main else None
        if proc is None:
            raise FactUnavailable(f"{host.url} is answered, but its listener (pid {ans.peer_pid}) is not a "
                                  "dockerd and no docker.service main process serves it")
        return proc
    system = [p for p in facts.get("ps_processes") if p.user in ("", "root", "0")]  # not a rootless user's
    return _select_process(_snapshot_dockerds(system), host.url, _main_pid(facts))


ROOTLESS_SOCKET = "unix://$XDG_RUNTIME_DIR/docker.sock"  # a rootless dockerd without -H, as its user sees it


def _snapshot_dockerds(processes: list[PsProcess]) -> list[DockerdProcess]:
    return [DockerdProcess(p.pid, p.argv, None, p.source) for p in processes if _is_dockerd(p.argv)]


def _live_default_socket(pid: int) -> str:
    """A rootless dockerd (run under RootlessKit) listens on $XDG_RUNTIME_DIR/docker.sock without -H."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = dict(e.partition(b"=")[::2] for e in fh.read(256 * 1024).split(b"\0") if e)
    except OSError:
        return DEFAULT_HOST
    runtime = env.get(b"XDG_RUNTIME_DIR")
    if b"ROOTLESSKIT_STATE_DIR" in env and runtime:
        return f"unix://{runtime.decode(errors='replace')}/docker.sock"
    return DEFAULT_HOST


@fact()
def other_dockerds(facts: Facts) -> list[OtherDockerd]:
    """Every dockerd that is not the inspected daemon, with the sockets it serves (information only)."""
    chosen: DockerdProcess | None = facts.optional("dockerd_process")
    found: list[DockerdProcess] = []
    if facts.live:
        import psutil

        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                argv = p.info["cmdline"] or []
            except (psutil.Error, KeyError):
                continue
            if _is_dockerd(argv):
                found.append(DockerdProcess(p.info["pid"], list(argv), None, "process table"))
    else:
        try:
            ps = facts.get("ps_processes")
        except FactUnavailable:
            raise FactUnavailable("no process list in the snapshot") from None
        found = _snapshot_dockerds(ps)
        users = {p.pid: p.user for p in ps}
    out = []
    for p in found:
        if chosen is None or p.pid != chosen.pid:
            user = users.get(p.pid, "") if not facts.live else ""
            rootless = user not in ("", "root", "0")
            default = (_live_default_socket(p.pid) if facts.live and p.pid
                       else ROOTLESS_SOCKET if rootless else DEFAULT_HOST)
            sockets = sockets_served(p.argv, default)
            out.append(OtherDockerd(p.pid, sockets, p.source,
                                    reachable_sockets(p.pid, sockets) if facts.live and p.pid else None, user))
    return out
