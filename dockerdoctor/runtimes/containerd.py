"""Adapters for the clients that read containerd's hosts.toml: containerd CRI, ctr, nerdctl, k3s/rke2,
dockerd on the containerd image store (and dockerd's classic store, for `resolve`), and their facts.

The files, folders and commands these facts read are rows of the spec table
(dockerdoctor/sources/specs.py), so ``collect`` and ``collect --script`` gather them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import (
    ALL_CAPABILITIES,
    DEFAULT,
    DOCKER_HUB,
    Endpoint,
    ImageRef,
    Origin,
    Resolution,
    TlsMaterial,
)
from dockerdoctor.runtimes.hosts_toml import (
    DEFAULT_CONFIG_PATH_22,
    DEFAULT_CONFIG_PATH_SINCE,
    ContainerdConfig,
    HostsFile,
    Problem,
    find_host_dir,
    parse_containerd_config,
    parse_hosts_toml,
    resolve_legacy_mirrors,
    resolve_with_hosts_dirs,
)
from dockerdoctor.sources.specs import dir_paths, file_path, read_first

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


def _ver(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.search(r"\bv?(\d+)\.(\d+)\.\d+", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


# --------------------------------------------------------------------------------------------- source access


def _lister(facts: Facts):
    def listdir(path: str) -> list[str] | None:
        st = facts.source.stat(path)
        if st is None:
            return None
        return facts.source.listdir(path)

    return listdir


def _reader(facts: Facts):
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


def _is_containerd(argv: list[str] | tuple[str, ...]) -> bool:
    return bool(argv) and os.path.basename(argv[0]) == "containerd"


@fact()
def containerd_process(facts: Facts) -> ContainerdProcess | None:
    """The containerd daemon on this host (None: none runs). ``--containerd-config`` pins one (tests, or a
    host with several)."""
    pinned = getattr(facts.options, "containerd_config", None)
    if facts.live:
        import psutil

        found: list[ContainerdProcess] = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            argv = p.info.get("cmdline") or []
            if _is_containerd(argv):
                cfg = _config_flag(argv) or CONTAINERD_CONFIG
                found.append(ContainerdProcess(p.info["pid"], tuple(argv), cfg, f"pid {p.info['pid']}",
                                               K3S_CONTAINERD_DIR in cfg))
        if pinned:
            for c in found:
                if c.config == pinned:
                    return c
            return ContainerdProcess(None, (), pinned, "--containerd-config")
        # the system containerd (the default config, which kubelet's default endpoint talks to) before
        # test or per-user instances; k3s's own last
        found.sort(key=lambda c: (c.k3s, c.config != CONTAINERD_CONFIG, c.pid or 0))
        return found[0] if found else None
    if pinned:
        return ContainerdProcess(None, (), pinned, "--containerd-config")
    text = facts.source.command("ps")
    if text is None:
        raise FactUnavailable("no process list in the snapshot (sos_commands/process/ps_auxwww)")
    from dockerdoctor.facts.systemd import split_command_line

    for line in text.splitlines()[1:]:
        cols = line.split(None, 10)
        if len(cols) < 11:
            continue
        argv = split_command_line(cols[10])
        if _is_containerd(argv):
            cfg = _config_flag(argv) or CONTAINERD_CONFIG
            return ContainerdProcess(int(cols[1]) if cols[1].isdigit() else None, tuple(argv), cfg,
                                     facts.source.command_source("ps"), K3S_CONTAINERD_DIR in cfg)
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


def merge_imports(cfg: ContainerdConfig, listdir: Any, read: Any) -> ContainerdConfig:
    """containerd reads the files named by `imports` (globs allowed, in order) after config.toml. Measured on
    1.6.20: a plugin's table in an imported file REPLACES that plugin's table of config.toml whole, so a conf.d
    file with any [plugins."io.containerd.grpc.v1.cri"...] table drops config.toml's config_path. The merged
    view keeps each value's own file and line."""
    import fnmatch

    for pattern in cfg.imports:
        pattern = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(cfg.path), pattern)
        d, name = os.path.split(pattern)
        names = sorted(n for n in (listdir(d) or []) if fnmatch.fnmatchcase(n, name)) if any(
            c in name for c in "*?[") else [name]
        for n in names:
            p = os.path.join(d, n)
            text = read(p)
            if text is None:
                continue
            sub = parse_containerd_config(text, p, cfg.version)
            cfg.problems += sub.problems
            if sub.has_cri_plugin:
                if cfg.config_path and not sub.config_path:
                    cfg.problems.append(Problem(
                        p, sub.registry_line or 1,
                        f"this file's CRI plugin table replaces the one in {cfg.file_of('config_path')} whole "
                        f"(containerd merges imports per plugin), so config_path = "
                        f"{':'.join(cfg.config_path)!r} from there is dropped", "ignored"))
                cfg.config_path, cfg.config_path_line = (), None
                cfg.mirrors, cfg.mirror_lines, cfg.configs_tls, cfg.configs_auth, cfg.config_lines = {}, {}, {}, {}, {}
                cfg.origins = {}
            if sub.config_path:
                cfg.config_path, cfg.config_path_line = sub.config_path, sub.config_path_line
                cfg.origins["config_path"] = p
            for host, eps in sub.mirrors.items():
                cfg.mirrors[host] = eps
                cfg.mirror_lines[host] = sub.mirror_lines.get(host, 0)
                cfg.origins[f"mirrors.{host}"] = p
            for host in sub.config_lines:
                cfg.origins[f"configs.{host}"] = p
            cfg.configs_tls.update(sub.configs_tls)
            cfg.configs_auth.update(sub.configs_auth)
            cfg.config_lines.update(sub.config_lines)
            cfg.imported.append(p)
    return cfg


# --------------------------------------------------------------------------------------------- adapters


@dataclass
class HostsDirRuntime:
    """A client that resolves through hosts.toml directories (containerd CRI, ctr --hosts-dir, nerdctl,
    dockerd's containerd store, k3s's rendered directory)."""

    name: str
    display: str
    roots: tuple[str, ...]
    listdir: Any
    read: Any
    version: tuple[int, int] | None = None
    netns: str | None = None
    origin: Origin = DEFAULT
    legacy: ContainerdConfig | None = None  # CRI without config_path: legacy mirrors apply
    insecure: tuple[str, ...] = ()  # dockerd insecure-registries (the containerd store: see DD606)
    notes: tuple[str, ...] = ()
    insecure_all: bool = False  # nerdctl's insecure_registry: HTTPS, then plain HTTP, for the registry itself

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        if self.legacy is not None and not self.roots:
            return resolve_legacy_mirrors(self.name, ref, self.legacy)
        res = resolve_with_hosts_dirs(self.name, ref, self.roots, self.listdir, self.read, self.version, push=push,
                                      extra_notes=self.notes)
        if self.insecure_all:
            import dataclasses

            eps = tuple(dataclasses.replace(e, http_fallback=True, tls=dataclasses.replace(e.tls, skip_verify=True))
                        if e.role == "registry" and e.scheme == "https" else e for e in res.endpoints)
            res = dataclasses.replace(res, endpoints=eps)
        return res

    def host_dir(self, host: str):
        return find_host_dir(self.roots, host, self.listdir, self.read, self.version)


@dataclass
class DockerdClassic:
    """dockerd on its classic image store: certs.d/*.crt, insecure-registries; never hosts.toml."""

    insecure: tuple[str, ...]
    certs: dict[str, list[str]]
    mirrors: tuple[str, ...] = ()
    name: str = "dockerd"
    display: str = "dockerd (classic image store)"
    netns: str | None = None
    origin: Origin = DEFAULT

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        from dockerdoctor.facts import HostPort
        from dockerdoctor.facts.daemon import trusted_as_insecure

        eps: list[Endpoint] = []
        if ref.registry == DOCKER_HUB and not push:
            for m in self.mirrors:
                hp = m.split("://", 1)[-1].rstrip("/")
                eps.append(Endpoint(m.rstrip("/") + "/v2", "http" if m.startswith("http://") else "https", hp,
                                    "mirror"))
        host = "registry-1.docker.io" if ref.registry == DOCKER_HUB else ref.registry
        d = f"{DOCKER_CERTS_D}/{ref.registry}"
        files = self.certs.get(ref.registry, [])
        cas = tuple(f"{d}/{f}" for f in files if f.endswith(".crt"))
        pairs = tuple((f"{d}/{f}", f"{d}/{f[:-5]}.key") for f in files if f.endswith(".cert"))
        try:
            insecure = bool(trusted_as_insecure(HostPort.parse(ref.registry), list(self.insecure)))
        except ValueError:
            insecure = False
        notes = ("hosts.toml in certs.d is never read by the classic store",) if "hosts.toml" in files else ()
        eps.append(Endpoint(f"https://{host}/v2", "https", host, "registry", ALL_CAPABILITIES,
                            TlsMaterial(cas, pairs, insecure, True, Origin(d) if files else DEFAULT),
                            http_fallback=insecure, notes=notes))
        return Resolution(self.name, ref, tuple(eps))


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
                           _lister(facts), _reader(facts), version, proc.netns if proc else None,
                           Origin(cfg.path if cfg else CONTAINERD_CONFIG,
                                  cfg.config_path_line if cfg else None),
                           legacy=cfg if (cfg is not None and not roots) else None, notes=tuple(notes))


# --------------------------------------------------------------------------------------------- dockerd


@dataclass(frozen=True)
class DockerdStore:
    store: str  # "containerd" | "classic"
    origin: Origin
    why: str


@fact()
def dockerd_image_store(facts: Facts) -> DockerdStore | None:
    """Which image store dockerd uses: daemon.json features.containerd-snapshotter, or `docker info`
    (a `driver-type: io.containerd.snapshotter.v1` line). None when there is no dockerd to ask about."""
    dj = facts.optional("daemon_json")
    info_text = facts.source.command("docker_info") if not facts.live else None
    if info_text and "io.containerd.snapshotter" in info_text:
        return DockerdStore("containerd", Origin(facts.source.command_source("docker_info")),
                            "docker info: driver-type io.containerd.snapshotter.v1")
    if dj is not None and dj.data:
        feats = dj.data.get("features")
        if isinstance(feats, dict) and "containerd-snapshotter" in feats:
            on = feats.get("containerd-snapshotter") is True
            return DockerdStore("containerd" if on else "classic", Origin(dj.path, dj.line_of("features")),
                                f"daemon.json features.containerd-snapshotter = {str(on).lower()}")
    version = facts.optional("engine_version")
    if facts.live and version is not None and tuple(version) >= (24, 0, 0):
        # only engines that have the containerd store are asked (`docker info` costs a round trip)
        info_text = facts.source.command("docker_info")
        if info_text and "io.containerd.snapshotter" in info_text:
            return DockerdStore("containerd", Origin("docker info"), "docker info: driver-type "
                                "io.containerd.snapshotter.v1")
    if version is not None and tuple(version) >= (29, 0, 0) and info_text is None:
        return DockerdStore("containerd", DEFAULT, "Engine >= 29.0 defaults to the containerd store on a fresh "
                            "install (not provable from files; check docker info)")
    if (dj is None or not dj.exists) and facts.optional("dockerd_process") is None and info_text is None:
        return None
    return DockerdStore("classic", Origin(dj.path) if dj is not None else DEFAULT, "no containerd-snapshotter feature")


@fact()
def dockerd_containerd_store(facts: Facts) -> HostsDirRuntime | None:
    """dockerd on the containerd image store: /etc/docker/certs.d/HOST/hosts.toml in containerd's format."""
    st: DockerdStore | None = facts.optional("dockerd_image_store")
    if st is None or st.store != "containerd":
        return None
    cfg = facts.optional("effective_config")
    insecure = tuple(v.value for v in (cfg.insecure_planned if cfg else []))
    return HostsDirRuntime("dockerd-containerd-store", "dockerd (containerd image store)", (DOCKER_CERTS_D,),
                           _lister(facts), _reader(facts), None, None, st.origin, insecure=insecure)


@fact()
def dockerd_classic(facts: Facts) -> DockerdClassic | None:
    st: DockerdStore | None = facts.optional("dockerd_image_store")
    if st is None or st.store != "classic":
        return None
    cfg = facts.optional("effective_config")
    certs = facts.optional("certs_d") or {}
    return DockerdClassic(tuple(v.value for v in (cfg.insecure_planned if cfg else [])),
                          {k: list(v.files) for k, v in certs.items()}, origin=st.origin)


# --------------------------------------------------------------------------------------------- nerdctl


@dataclass
class NerdctlConfig:
    path: str
    hosts_dir: tuple[str, ...] = (CONTAINERD_CERTS_D, DOCKER_CERTS_D)
    insecure_registry: bool = False
    error: str | None = None
    line: int | None = None


def parse_nerdctl_toml(text: str, path: str) -> NerdctlConfig:
    from dockerdoctor.runtimes.hosts_toml import _error_line, toml_lines, tomllib

    nc = NerdctlConfig(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        nc.error, nc.line = str(exc), _error_line(exc)
        return nc
    hd = data.get("hosts_dir")
    if isinstance(hd, list):
        nc.hosts_dir = tuple(str(d) for d in hd)
        nc.line = toml_lines(text).get(("hosts_dir",))
    nc.insecure_registry = data.get("insecure_registry") is True
    return nc


@fact()
def nerdctl_runtime(facts: Facts) -> HostsDirRuntime | None:
    found = read_first(facts.source, "nerdctl_toml")
    text = found[1] if found else None
    if text is None:
        import shutil

        if not (facts.live and shutil.which("nerdctl")):
            return None
    nc = parse_nerdctl_toml(text, NERDCTL_TOML) if text is not None else NerdctlConfig(NERDCTL_TOML)
    notes = ("nerdctl.toml insecure_registry = true: HTTPS first, then plain HTTP, for every registry",) \
        if nc.insecure_registry else ()
    return HostsDirRuntime("nerdctl", "nerdctl", nc.hosts_dir, _lister(facts), _reader(facts),
                           facts.optional("containerd_version"), None,
                           Origin(NERDCTL_TOML if text is not None else "default", nc.line),
                           insecure_all=nc.insecure_registry, notes=notes)


# --------------------------------------------------------------------------------------------- k3s


@dataclass
class K3sMirror:
    host: str
    endpoints: list[str]
    line: int | None
    rewrite: bool = False


@dataclass
class K3sConfig:
    host: str
    line: int | None
    tls: dict[str, Any] = field(default_factory=dict)
    tls_lines: dict[str, int] = field(default_factory=dict)
    auth: bool = False


@dataclass
class K3sRegistries:
    path: str
    mirrors: dict[str, K3sMirror] = field(default_factory=dict)
    configs: dict[str, K3sConfig] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    text: str | None = None

    def effective(self) -> dict[str, list[str]]:
        """What k3s renders: host -> endpoints in order (the default https://host last)."""
        return {h: m.endpoints + [f"https://{h}"] for h, m in self.mirrors.items()}


_K3S_TOP = {"mirrors", "configs"}
_K3S_MIRROR = {"endpoint", "rewrite"}
_K3S_CONFIG = {"auth", "tls"}
_K3S_TLS = {"ca_file", "cert_file", "key_file", "insecure_skip_verify"}
_K3S_AUTH = {"username", "password", "auth", "identity_token"}


def parse_registries_yaml(text: str, path: str, exists=lambda p: True) -> K3sRegistries:
    """k3s's registries.yaml with line numbers (PyYAML's node tree keeps them)."""
    import yaml

    reg = K3sRegistries(path, text=text)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reg.error = str(exc).splitlines()[0]
        reg.problems.append(Problem(path, line, f"does not parse: {reg.error}"))
        return reg
    if root is None:
        return reg
    if not isinstance(root, yaml.MappingNode):
        reg.problems.append(Problem(path, root.start_mark.line + 1, "the top level must be a mapping"))
        return reg

    def items(node):
        return [(k.value, v, k.start_mark.line + 1) for k, v in node.value] if isinstance(node, yaml.MappingNode) \
            else []

    for key, val, line in items(root):
        if key not in _K3S_TOP:
            reg.problems.append(Problem(path, line, f"unknown top-level key {key!r}: k3s ignores it"))
            continue
        if key == "mirrors":
            for host, m, hline in items(val):
                if host in _K3S_TOP:
                    reg.problems.append(Problem(
                        path, hline, f"`{host}:` is indented under `mirrors:`, so k3s reads it as a mirror named "
                        f"{host!r} and the {host} do nothing (k3s-io/k3s#10135)"))
                    continue
                eps: list[str] = []
                rewrite = False
                for mk, mv, mline in items(m):
                    if mk == "endpoint":
                        seq = mv.value if isinstance(mv, yaml.SequenceNode) else [mv]
                        for e in seq:
                            ev = str(getattr(e, "value", ""))
                            if "://" not in ev:
                                reg.problems.append(Problem(
                                    path, e.start_mark.line + 1,
                                    f"endpoint {ev!r} of mirror {host!r} has no scheme: write https://{ev} "
                                    f"or http://{ev}"))
                            eps.append(ev)
                    elif mk == "rewrite":
                        rewrite = True
                    else:
                        reg.problems.append(Problem(path, mline, f"unknown key {mk!r} in mirror {host!r}"))
                reg.mirrors[host] = K3sMirror(host, eps, hline, rewrite)
        else:
            for host, c, hline in items(val):
                kc = K3sConfig(host, hline)
                for ck, cv, cline in items(c):
                    if ck not in _K3S_CONFIG:
                        reg.problems.append(Problem(path, cline, f"unknown key {ck!r} in configs {host!r}"))
                    elif ck == "tls":
                        for tk, tv, tline in items(cv):
                            if tk not in _K3S_TLS:
                                reg.problems.append(Problem(path, tline, f"unknown tls key {tk!r} in configs {host!r}"))
                                continue
                            kc.tls[tk] = _scalar(tv)
                            kc.tls_lines[tk] = tline
                            if tk.endswith("_file") and tv.value and not exists(tv.value):
                                reg.problems.append(Problem(path, tline, f"{tk} {tv.value} does not exist"))
                    else:
                        kc.auth = True
                        for ak, _av, aline in items(cv):
                            if ak not in _K3S_AUTH:
                                reg.problems.append(Problem(path, aline,
                                                            f"unknown auth key {ak!r} in configs {host!r}"))
                reg.configs[host] = kc
    return reg


def _scalar(node: Any) -> Any:
    value = getattr(node, "value", None)
    tag = getattr(node, "tag", "")
    if tag.endswith(":bool") and isinstance(value, str):
        return value.lower() in ("true", "yes", "on")
    if tag.endswith(":int") and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


@fact()
def k3s_registries(facts: Facts) -> K3sRegistries | None:
    found = read_first(facts.source, "k3s_registries_yaml")
    if found is None:
        return None
    return parse_registries_yaml(found[1], found[0], facts.source.exists)


@dataclass
class K3sRuntime:
    registries: K3sRegistries | None
    generated: HostsDirRuntime | None
    name: str = "k3s"
    display: str = "k3s (registries.yaml)"
    netns: str | None = None
    origin: Origin = DEFAULT

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        """What k3s renders from registries.yaml (the generated hosts.toml follows it after a restart)."""
        reg = self.registries
        host = ref.registry
        if reg is None:
            return Resolution(self.name, ref, (Endpoint(f"https://{host}/v2", "https", host, "registry"),))
        mirror = reg.mirrors.get(host) or reg.mirrors.get("*")
        eps: list[Endpoint] = []
        if mirror is not None:
            for e in mirror.endpoints:
                url = e if "://" in e else f"https://{e}"
                hp = url.split("://", 1)[1].split("/", 1)[0]
                eps.append(self._ep(url, hp, "mirror", Origin(reg.path, mirror.line, f"mirrors.{mirror.host}")))
        if not any(e.host == host for e in eps):
            eps.append(self._ep(f"https://{host}", host, "registry", DEFAULT))
        return Resolution(self.name, ref, tuple(eps))

    def _ep(self, url: str, hp: str, role: str, origin: Origin) -> Endpoint:
        reg = self.registries
        c = reg.configs.get(hp) if reg else None
        tls = TlsMaterial(origin=origin)
        if c is not None and c.tls:
            ca = c.tls.get("ca_file")
            pair = (c.tls.get("cert_file"), c.tls.get("key_file"))
            tls = TlsMaterial((ca,) if ca else (), (pair,) if all(pair) else (),  # type: ignore[arg-type]
                              bool(c.tls.get("insecure_skip_verify")), True, Origin(reg.path, c.line))  # type: ignore[union-attr]
        scheme = "http" if url.startswith("http://") else "https"
        return Endpoint(url.rstrip("/") + "/v2", scheme, hp, role, ALL_CAPABILITIES, tls, origin=origin)  # type: ignore[arg-type]


@fact()
def k3s_runtime(facts: Facts) -> K3sRuntime | None:
    reg = facts.optional("k3s_registries")
    have_dir = facts.source.stat(K3S_CERTS_D) is not None or read_first(facts.source, "k3s_containerd_config")
    if reg is None and not have_dir:
        return None
    gen = HostsDirRuntime("k3s-containerd", "k3s's containerd", (K3S_CERTS_D,), _lister(facts), _reader(facts))
    return K3sRuntime(reg, gen, origin=Origin(reg.path if reg else K3S_CONTAINERD_DIR))


# --------------------------------------------------------------------------------------------- hosts files


@fact()
def containerd_hosts_files(facts: Facts) -> dict[str, HostsFile]:
    """Every hosts.toml under the directories any containerd-family client reads, by path."""
    roots = [dir_paths(k)[0] for k in DIR_KEYS]
    cfg = facts.optional("containerd_config")
    if cfg is not None:
        roots += [r for r in cfg.config_path if r not in roots]
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
