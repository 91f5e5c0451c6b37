"""Rootless containerd, rootless nerdctl and rootless dockerd: the per-user paths, with file:line provenance.

The layout, from containerd/nerdctl (pkg/defaults/defaults_linux.go, extras/rootless/containerd-rootless.sh,
docs/dir.md, docs/registry.md):

* nerdctl run by a user other than root reads ``$XDG_CONFIG_HOME/nerdctl/nerdctl.toml`` (``$NERDCTL_TOML``
  overrides it; ``$XDG_CONFIG_HOME`` defaults to ``~/.config``) and, unless ``hosts_dir`` says otherwise,
  the hosts.toml directories ``$XDG_CONFIG_HOME/containerd/certs.d`` then ``$XDG_CONFIG_HOME/docker/certs.d``.
  nerdctl resolves registries itself, so these are what its pulls use.
* rootless containerd runs inside RootlessKit's mount namespace, where containerd-rootless.sh bind-mounts
  ``$XDG_CONFIG_HOME/containerd`` on ``/etc/containerd`` (and ``$XDG_DATA_HOME/containerd`` on
  ``/var/lib/containerd``, ``$XDG_RUNTIME_DIR/containerd`` on ``/run/containerd``). Its config.toml is
  ``~/.config/containerd/config.toml`` on the host, and a ``config_path = "/etc/containerd/certs.d"`` in it
  means ``~/.config/containerd/certs.d`` on the host.

Where to look: every ``/home/*`` (``/root`` is rootful), live and in a snapshot (the spec table's per-user rows,
sources/specs.py USER_FILES, which ``collect`` copies; sos gathers no home directories); live also the user running
dockerdoctor (when not root, from ``$XDG_CONFIG_HOME``/``$HOME``) and the user of every containerd process that
does not run as root.
* rootless dockerd (dockerd-rootless-setuptool.sh; Docker's rootless documentation) reads
  ``$XDG_CONFIG_HOME/docker/daemon.json`` and, on the containerd image store, ``~/.config/docker/certs.d``;
  the setuptool installs ``~/.config/systemd/user/docker.service``. Found by that unit or by a dockerd process
  that does not run as root (live psutil, a snapshot's ps USER column).

Run as root, every path read or listed for a user (her config.toml `imports`, nerdctl.toml `hosts_dir`, a process's
``$XDG_CONFIG_HOME``) must lie in realpath of her home (`Confined`): she chose it. One outside is not read; the
runtime's notes name it ("outside NAME's home, not read as root").

Neither rootlesskit nor nerdctl is packaged for Debian 12, nor a rootless dockerd set up here: tests use real
files in this layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import Origin
from dockerdoctor.runtimes.containerd import source_lister, source_reader
from dockerdoctor.runtimes.containerd_config import ContainerdConfig, merge_imports, parse_containerd_config
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime
from dockerdoctor.sources import specs

NAMESPACE_DIRS = (("/etc/containerd", "containerd"),)  # inside RootlessKit -> under $XDG_CONFIG_HOME
DAEMONS = ("containerd", "dockerd")  # a process of one of these not run by root: a rootless daemon's user


@dataclass(frozen=True)
class RootlessHome:
    """One user's configuration directory, and how it was found."""

    user: str
    config_home: str  # $XDG_CONFIG_HOME, or HOME/.config
    why: str
    env_toml: str | None = None  # $NERDCTL_TOML of this shell, for this user only
    home_dir: str | None = None  # her home (passwd, HOME_BASE/NAME): what root reads for her stays inside it
    confine: bool = True  # False: dockerdoctor runs as this user and reads as her, not as root
    ignored: tuple[str, ...] = ()  # what was not taken from her (e.g. an $XDG_CONFIG_HOME outside her home)

    def path(self, *parts: str) -> str:
        return os.path.join(self.config_home, *parts)

    def spec_path(self, key: str) -> str:
        """Where this user's per-user spec row `key` is (sources/specs.py USER_FILES)."""
        return specs.user_path(key, self.config_home)

    @property
    def home(self) -> str:
        """The user's home (the folder a fix in it must stay in): the parent of ~/.config, else the config dir."""
        if self.home_dir:
            return self.home_dir
        head, tail = os.path.split(self.config_home.rstrip("/"))
        return head if tail == ".config" and head else self.config_home

    def host_path(self, path: str) -> str:
        """A path as rootless containerd names it (inside its mount namespace) -> the path on the host."""
        for inside, sub in NAMESPACE_DIRS:
            if path == inside or path.startswith(inside + "/"):
                return self.path(sub) + path[len(inside):]
        return path


def _live_user() -> RootlessHome | None:
    if os.geteuid() == 0:
        return None  # root's nerdctl and containerd are the rootful ones
    import getpass

    xch = os.environ.get("XDG_CONFIG_HOME") or (os.path.join(os.environ["HOME"], ".config")
                                                if os.environ.get("HOME") else None)
    if not xch:
        return None
    src = "$XDG_CONFIG_HOME" if os.environ.get("XDG_CONFIG_HOME") else "$HOME/.config"
    return RootlessHome(getpass.getuser(), xch, f"this user's {src}", os.environ.get("NERDCTL_TOML") or None,
                        confine=False)


def _process_users() -> list[RootlessHome]:
    """Live: the users of containerd and dockerd processes that do not run as root (rootless ones)."""
    import pwd

    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline", "uids"]):
        argv = p.info.get("cmdline") or []
        uids = p.info.get("uids")
        if not argv or os.path.basename(argv[0]) not in DAEMONS or uids is None or uids.real == 0:
            continue
        try:
            pw = pwd.getpwuid(uids.real)
        except KeyError:
            continue
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            env = {}
        xch, ignored = os.path.join(pw.pw_dir, ".config"), ""
        env_xch = env.get("XDG_CONFIG_HOME")
        if env_xch and inside_home(pw.pw_dir, env_xch, True):
            xch = env_xch
        elif env_xch:  # the user chose it: root lists and reads nothing she could point elsewhere
            ignored = f"$XDG_CONFIG_HOME={env_xch} of pid {p.info['pid']}: {outside(pw.pw_name)}"
        out.append(RootlessHome(pw.pw_name, xch, f"{os.path.basename(argv[0])} pid {p.info['pid']} runs as "
                                f"{pw.pw_name}", home_dir=pw.pw_dir, ignored=(ignored,) if ignored else ()))
    return out


@fact()
def rootless_homes(facts: Facts) -> list[RootlessHome]:
    """The users whose rootless containerd or nerdctl configuration could be on this host."""
    found: list[RootlessHome] = []
    if facts.live:  # a snapshot holds only what `collect` copied: the /home/* rows of the spec table
        me = _live_user()
        found += [me] if me else []
        found += _process_users()
    for name in sorted(facts.source.listdir(specs.HOME_BASE) or [])[:specs.MAX_USER_HOMES]:
        found.append(RootlessHome(name, specs.home_config(name), f"{specs.HOME_BASE}/{name}",
                                  home_dir=os.path.join(specs.HOME_BASE, name)))
    out: dict[str, RootlessHome] = {}
    for h in found:
        out.setdefault(h.config_home, h)
    return list(out.values())


def outside(user: str) -> str:
    return f"outside {user}'s home, not read as root"


def inside_home(home: str, path: str, live: bool, to_host: Any = None) -> bool:
    """`path` lies in `home`: by its name and, live, through every symbolic link (realpath of both). A snapshot
    holds only what `collect` copied under the same rule, so the name decides there."""
    h, p = os.path.normpath(home), os.path.normpath(path)
    if not os.path.isabs(p) or not (p == h or p.startswith(h.rstrip("/") + "/")):
        return False
    if not live:
        return True
    to_host = to_host or (lambda x: x)
    rh, rp = os.path.realpath(to_host(h)), os.path.realpath(to_host(p))
    return rp == rh or rp.startswith(rh.rstrip("/") + "/")


class Confined:
    """The reads and listings root makes for one rootless user: only inside realpath of her home. A path
    outside is not read; `ignored` names it (the runtime's notes carry them)."""

    def __init__(self, facts: Facts, home: RootlessHome) -> None:
        self.facts, self.home, self.ignored = facts, home, list(home.ignored)
        self._list, self._read = source_lister(facts), source_reader(facts)

    def ok(self, path: str) -> bool:
        if not self.home.confine:
            return True
        src = self.facts.source
        if inside_home(self.home.home, path, bool(self.facts.live), getattr(src, "_path", None)):
            return True
        note = f"{path}: {outside(self.home.user)}"
        if note not in self.ignored:
            self.ignored.append(note)
        return False

    def read(self, path: str) -> str | None:
        if not self.ok(path):
            return None
        read_in = getattr(self.facts.source, "read_in", None) if self.home.confine else None
        return read_in(self.home.home, path) if read_in is not None else self._read(path)

    def listdir(self, path: str) -> list[str] | None:
        return self._list(path) if self.ok(path) else None

    def stat(self, path: str) -> Any:
        return self.facts.source.stat(path) if self.ok(path) else None

    def check(self, paths: Any) -> tuple[str, ...]:
        """Check these now (hosts.toml roots are listed later, at resolve time) and return the ignored notes."""
        for p in paths:
            self.ok(p)
        return tuple(self.ignored)


@fact()
def containerd_rootless(facts: Facts) -> list[HostsDirRuntime]:
    """Rootless containerd per user: its config.toml (~/.config/containerd/config.toml), config_path mapped
    from its mount namespace to the host. [] when there is none."""
    out = []
    for home in facts.get("rootless_homes"):
        c = Confined(facts, home)
        path = home.spec_path("containerd_rootless_config")
        text = c.read(path)
        if text is None:
            continue
        cfg = parse_containerd_config(text, path)
        cfg = merge_imports(_imports_on_host(cfg, home), c.listdir, c.read)
        if cfg.cri_disabled:
            continue
        roots = tuple(home.host_path(d) for d in cfg.config_path)
        notes: tuple[str, ...] = ((f"{path}: paths are as rootless containerd sees them; /etc/containerd is "
                  f"{home.path('containerd')} on the host",) if cfg.config_path else ())
        notes += c.check(roots)
        out.append(HostsDirRuntime(
            "containerd-rootless", f"rootless containerd CRI ({home.user})", roots, c.listdir, c.read,
            facts.optional("containerd_version"), None, Origin(path, cfg.config_path_line, home.why),
            legacy=cfg if not roots else None, notes=notes, config=cfg, owner=home.user, home=home.home))
    return out


def _imports_on_host(cfg: ContainerdConfig, home: RootlessHome) -> ContainerdConfig:
    cfg.imports = tuple(home.host_path(i) if os.path.isabs(i) else i for i in cfg.imports)
    return cfg


@fact()
def nerdctl_rootless(facts: Facts) -> list[HostsDirRuntime]:
    """nerdctl as each user other than root runs it: $XDG_CONFIG_HOME/nerdctl/nerdctl.toml (or $NERDCTL_TOML)
    and the per-user hosts.toml directories. [] when no user has a nerdctl.toml (or, live with nerdctl
    installed, a ~/.config/containerd/certs.d)."""
    import shutil

    from dockerdoctor.runtimes.nerdctl import nerdctl_adapter

    installed = facts.live and shutil.which("nerdctl") is not None
    out = []
    for home in facts.get("rootless_homes"):
        c = Confined(facts, home)
        path = home.env_toml or home.spec_path("nerdctl_rootless_toml")
        text = c.read(path)
        certs = home.spec_path("containerd_rootless_certs_d")
        if text is None and not (installed and c.stat(certs) is not None):
            continue
        defaults = (certs, home.spec_path("docker_rootless_certs_d"))
        rt = nerdctl_adapter(facts, "nerdctl-rootless", f"nerdctl rootless ({home.user})", path, text, defaults,
                             home.why, lister=c.listdir, reader=c.read)
        rt.notes += c.check(rt.roots)
        rt.owner, rt.home = home.user, home.home
        out.append(rt)
    return out


def _dockerd_users(facts: Facts) -> dict[str, str]:
    """The users other than root who run a dockerd, and what says so: live psutil, a snapshot's ps USER column."""
    if facts.live:
        return {h.user: h.why for h in _process_users() if h.why.startswith("dockerd ")}
    ps = facts.optional("ps_processes") or []
    return {p.user: f"{p.source}:{p.line}: dockerd runs as {p.user}" for p in ps
            if p.argv and os.path.basename(p.argv[0]) == "dockerd" and p.user not in ("", "root", "0")}


@fact()
def dockerd_rootless(facts: Facts) -> list[HostsDirRuntime]:
    """Rootless dockerd per user (a dockerd run by that user, or her ~/.config/systemd/user/docker.service that
    dockerd-rootless-setuptool.sh installs), on the containerd image store: ~/.config/docker/daemon.json
    (features.containerd-snapshotter, insecure-registries) and ~/.config/docker/certs.d/HOST/hosts.toml.
    On the classic store it is not modelled (DD101 judges the one system dockerd). [] when there is none."""
    from dockerdoctor.facts.daemon import parse_daemon_json
    from dockerdoctor.runtimes.dockerd_store import store_from_daemon_json

    users, out = _dockerd_users(facts), []
    for home in facts.get("rootless_homes"):
        c = Confined(facts, home)
        unit = home.spec_path("docker_rootless_unit")
        why = users.get(home.user) or (f"{unit} exists" if c.stat(unit) is not None else None)
        path = home.spec_path("docker_rootless_daemon_json")
        text = c.read(path) if why else None
        dj = parse_daemon_json(text, path) if text is not None else None
        store = store_from_daemon_json(dj)
        if why is None or store is None or store.store != "containerd":
            continue
        raw = dj.data.get("insecure-registries") if dj is not None and isinstance(dj.data, dict) else None
        insecure = tuple(str(v) for v in raw) if isinstance(raw, list) else ()
        out.append(HostsDirRuntime(
            "dockerd-rootless-containerd-store", f"rootless dockerd ({home.user}, containerd image store)",
            (home.spec_path("docker_rootless_certs_d"),), c.listdir, c.read, None, None,
            Origin(store.origin.source, store.origin.line, f"{why}; {store.why}"), insecure=insecure, config=dj,
            notes=c.check((home.spec_path("docker_rootless_certs_d"),)),
            owner=home.user, home=home.home))
    return out


def rootless_roots(runtimes: list[Any]) -> set[str]:
    """The hosts.toml directories only rootless clients read (DD602 does not judge them by the rootful CRI)."""
    return {r for rt in runtimes if "rootless" in getattr(rt, "name", "") for r in getattr(rt, "roots", ())}


def unread_user_dirs(runtimes: list[Any]) -> dict[str, Any]:
    """Per-user default hosts.toml directories that the user's nerdctl.toml `hosts_dir` replaced and that no
    rootless client reads: directory -> that nerdctl (DD602 names its nerdctl.toml line)."""
    from dockerdoctor.runtimes.nerdctl import replaced_defaults

    read = rootless_roots(runtimes)
    return {d: rt for rt in runtimes if rt.name == "nerdctl-rootless" for d in replaced_defaults(rt) if d not in read}
