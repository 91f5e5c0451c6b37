"""containerd's registry host configuration: config.toml's registry section and hosts.toml, with provenance.

Pure parsers (text in, data out) and containerd's lookup of a host directory. Reading uses the
standard library's ``tomllib``; line numbers come from a light scan of the same text (tomllib keeps
none). Nothing here reads a host: callers pass file texts, or a ``lister``/``reader`` over a Source.

containerd's rules, as this module models them (containerd/containerd:docs/hosts.md and
remotes/docker/config/hosts.go; the 1.6 differences were measured with Debian's 1.6.20, see
tests/runtimes/test_lab_containerd.py):

* ``<dir>/<host>/hosts.toml``; for ``host:port`` the directory ``host_port_`` is tried, then
  ``host:port``, then ``_default`` (newer than 1.6: see ``DEFAULT_DIR_SINCE``).
* without a hosts.toml, Docker-style ``*.crt`` (CA) and ``*.cert`` + ``*.key`` (client pair) files in
  the directory configure TLS for the registry itself.
* each ``[host."URL"]`` table is an endpoint, tried in file order, then ``server`` (default
  ``https://<host>``; Docker Hub's is ``https://registry-1.docker.io``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# The versions where a shape changes, as (major, minor).
DEFAULT_DIR_SINCE = (1, 6)  # `_default` host directory: honoured by 1.6.20 (measured); older not measured
# Root-level hosts.toml fields (server, ca, client, skip_verify) apply to the server as the docs say.
# Measured on 1.6.20: all of them are ignored there (the server stays https://<host>, no root CA or
# skip_verify); only [host."URL"] tables count. The first version that honours them is not measured.
ROOT_FIELDS_SINCE = (1, 7)
V3_CONFIG_SINCE = (2, 0)  # config.toml version = 3, plugins."io.containerd.cri.v1.images"
LEGACY_MIRRORS_REMOVED = (2, 0)  # `mirrors`/`configs.*.tls` refused since 2.0 (containerd/containerd#9766)
DEFAULT_CONFIG_PATH_SINCE = (2, 2)  # 2.2: config_path defaults to /etc/containerd/certs.d:/etc/docker/certs.d
DEFAULT_CONFIG_PATH_22 = ("/etc/containerd/certs.d", "/etc/docker/certs.d")

HOSTS_ROOT_KEYS = {"server", "capabilities", "ca", "client", "skip_verify", "header", "override_path",
                   "host", "dial_timeout"}
HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"}
CAPS = set(ALL_CAPABILITIES)

# The CRI registry section, per config.toml version.
CRI_REGISTRY_TABLES: dict[int, tuple[str, ...]] = {
    1: ("plugins", "cri", "registry"),
    2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
    3: ("plugins", "io.containerd.cri.v1.images", "registry"),
}


# --------------------------------------------------------------------------------------------- line scan

_KEY1 = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_KEYVAL = re.compile(rf"^\s*({_KEY1}(?:\s*\.\s*{_KEY1})*)\s*=")


def split_key(text: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ("a", "b.c", "d")."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t.":
            i += 1
            continue
        if c in "\"'":
            j = i + 1
            buf = ""
            while j < n and text[j] != c:
                if c == '"' and text[j] == "\\" and j + 1 < n:
                    buf += text[j + 1]
                    j += 2
                    continue
                buf += text[j]
                j += 1
            parts.append(buf)
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in " \t.":
                j += 1
            parts.append(text[i:j])
            i = j
    return tuple(parts)


def toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of every table header and key (as full dotted paths). A light scan: it skips the
    inside of multi-line arrays and strings, which is all hosts.toml and config.toml need."""
    out: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    depth = 0
    in_ml: str | None = None
    for no, line in enumerate(text.splitlines(), 1):
        if in_ml:
            if in_ml in line:
                in_ml = None
            continue
        if depth > 0:
            depth += _bracket_delta(line)
            continue
        header = _header(line)
        if header is not None:
            table = split_key(header)
            out.setdefault(table, no)
            continue
        m = _KEYVAL.match(line)
        if m:
            key = table + split_key(m.group(1))
            out.setdefault(key, no)
            rest = line[m.end():]
            for q in ('"""', "'''"):
                if rest.count(q) == 1:
                    in_ml = q
            depth = max(0, _bracket_delta(rest))
    return out


def _header(line: str) -> str | None:
    """The key of a `[table]` or `[[array]]` header line, else None. A linear scan (a regex with a lazy
    group and optional brackets backtracks quadratically on a long line that is not closed)."""
    t = line.strip()
    if not t.startswith("["):
        return None
    quote = ""
    end = len(t)
    for i, c in enumerate(t):  # cut a trailing comment, outside quotes
        if quote:
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            end = i
            break
    body = t[:end].rstrip()
    if body.startswith("[[") and body.endswith("]]") and len(body) > 4:
        return body[2:-2].strip()
    if body.endswith("]") and len(body) > 2:
        return body[1:-1].strip()
    return None


def _bracket_delta(s: str) -> int:
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", s.split("#", 1)[0] if '"' not in s else s)
    return s.count("[") + s.count("{") - s.count("]") - s.count("}")


def _error_line(exc: Exception) -> int | None:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = data
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


@dataclass(frozen=True)
class Problem:
    """A shape containerd rejects or ignores, where it is."""

    path: str
    line: int | None
    text: str
    severity: str = "error"  # error: containerd fails on it; ignored: containerd silently drops it

    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


# --------------------------------------------------------------------------------------------- config.toml


@dataclass
class ContainerdConfig:
    """The parts of containerd's config.toml a registry client depends on."""

    path: str
    exists: bool = True
    version: int = 1
    version_line: int | None = None
    error: str | None = None
    error_line: int | None = None
    registry_table: tuple[str, ...] = ()
    config_path: tuple[str, ...] = ()  # directories, in order
    config_path_line: int | None = None
    mirrors: dict[str, list[str]] = field(default_factory=dict)  # legacy registry.mirrors
    mirror_lines: dict[str, int] = field(default_factory=dict)
    configs_tls: dict[str, dict[str, Any]] = field(default_factory=dict)  # legacy registry.configs.*.tls
    configs_auth: dict[str, int] = field(default_factory=dict)  # host -> line (never the secret)
    config_lines: dict[str, int] = field(default_factory=dict)
    registry_line: int | None = None
    imports: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)
    text: str | None = None
    imported: list[str] = field(default_factory=list)  # files merged in through `imports`
    origins: dict[str, str] = field(default_factory=dict)  # key -> the imported file that set it
    has_cri_plugin: bool = False  # this file has a [plugins."<CRI plugin>"] table (imports replace it whole)
    # disabled_plugins names the CRI plugin: this containerd serves no kubelet (docker-ce's containerd.io
    # package ships `disabled_plugins = ["cri"]`; dockerd's own managed containerd disables it too)
    cri_disabled: bool = False

    def where(self, line: int | None) -> Origin:
        return Origin(self.path, line)

    def file_of(self, key: str) -> str:
        """The file that set `key` ("config_path", "mirrors.HOST", "configs.HOST"): an import, or this file."""
        return self.origins.get(key, self.path)

    @property
    def legacy_conflict(self) -> list[tuple[str, str, int | None]]:
        """What the CRI plugin refuses next to config_path: non-empty `mirrors`, `configs.*.tls` (what, file, line)."""
        out: list[tuple[str, str, int | None]] = []
        for host in self.mirrors:
            out.append((f"mirrors.\"{host}\"", self.file_of(f"mirrors.{host}"), self.mirror_lines.get(host)))
        for host in self.configs_tls:
            out.append((f"configs.\"{host}\".tls", self.file_of(f"configs.{host}"), self.config_lines.get(host)))
        return out


# Plugin ids under which disabled_plugins turns the CRI (and with it kubelet's image pulls) off.
CRI_PLUGIN_IDS = frozenset({"cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"})


def parse_containerd_config(text: str, path: str, default_version: int = 1) -> ContainerdConfig:
    cfg = ContainerdConfig(path=path, text=text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        cfg.error = str(exc)
        cfg.error_line = _error_line(exc)
        cfg.problems.append(Problem(path, cfg.error_line, f"does not parse: {exc}"))
        return cfg
    lines = toml_lines(text)
    version = data.get("version", default_version)
    cfg.version = version if isinstance(version, int) else default_version
    cfg.version_line = lines.get(("version",))
    disabled = data.get("disabled_plugins")
    if isinstance(disabled, list):
        cfg.cri_disabled = any(str(p) in CRI_PLUGIN_IDS for p in disabled)
    imports = data.get("imports")
    if isinstance(imports, list):
        cfg.imports = tuple(str(i) for i in imports)
    table = CRI_REGISTRY_TABLES.get(cfg.version, CRI_REGISTRY_TABLES[2])
    cfg.registry_table = table
    reg = _dig(data, table)
    cfg.has_cri_plugin = isinstance(_dig(data, table[:2]), dict)
    cfg.registry_line = lines.get(table)
    # a registry section under another version's name is silently ignored
    for v, other in CRI_REGISTRY_TABLES.items():
        if other != table and isinstance(_dig(data, other), dict):
            cfg.problems.append(Problem(
                path, lines.get(other),
                f"[{_fmt(other)}] is the version {v} name of the CRI registry section, but this file says "
                f"version = {cfg.version}: containerd ignores it", "ignored"))
    if not isinstance(reg, dict):
        return cfg
    cp = reg.get("config_path")
    if isinstance(cp, str) and cp.strip():
        cfg.config_path = tuple(d for d in cp.split(":") if d)
        cfg.config_path_line = lines.get(table + ("config_path",))
    mirrors = reg.get("mirrors")
    if isinstance(mirrors, dict):
        for host, m in mirrors.items():
            eps = m.get("endpoint") if isinstance(m, dict) else None
            cfg.mirrors[host] = [str(e) for e in eps] if isinstance(eps, list) else []
            cfg.mirror_lines[host] = lines.get(table + ("mirrors", host)) or lines.get(
                table + ("mirrors", host, "endpoint")) or cfg.registry_line or 0
    configs = reg.get("configs")
    if isinstance(configs, dict):
        for host, c in configs.items():
            if not isinstance(c, dict):
                continue
            line = lines.get(table + ("configs", host)) or lines.get(table + ("configs", host, "tls")) \
                or lines.get(table + ("configs", host, "auth"))
            cfg.config_lines[host] = line or 0
            tls = c.get("tls")
            if isinstance(tls, dict) and tls:
                cfg.configs_tls[host] = dict(tls)
                cfg.config_lines[host] = lines.get(table + ("configs", host, "tls")) or line or 0
            if isinstance(c.get("auth"), dict) and c.get("auth"):
                cfg.configs_auth[host] = lines.get(table + ("configs", host, "auth")) or line or 0
    return cfg


def _fmt(path: tuple[str, ...]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in path)


def cri_refusal(cfg: ContainerdConfig, version: tuple[int, int] | None) -> str | None:
    """The message containerd logs when it refuses to load the CRI plugin for this registry section,
    or None when it loads it. Measured on 1.6.20 (tests/runtimes/test_lab_containerd.py), 2.x from
    containerd/containerd#9766."""
    if version is not None and version >= LEGACY_MIRRORS_REMOVED and (cfg.mirrors or cfg.configs_tls):
        return "`mirrors` is no longer supported since containerd v2.0, please use `config_path` instead" \
            if cfg.mirrors else "`configs.tls` is no longer supported since containerd v2.0, please use " \
            "`config_path` instead"
    # 1.6.20 (measured): `failed to load plugin io.containerd.grpc.v1.cri` error="invalid plugin config: ...";
    # newer releases say "invalid cri image config: ..." (containerd/containerd#12612)
    prefix = "invalid plugin config" if version is not None and version < (1, 7) else "invalid cri image config"
    if cfg.config_path and cfg.mirrors:
        return f"{prefix}: `mirrors` cannot be set when `config_path` is provided"
    if cfg.config_path and cfg.configs_tls:
        return f"{prefix}: `configs.tls` cannot be set when `config_path` is provided"
    return None


# --------------------------------------------------------------------------------------------- hosts.toml


@dataclass(frozen=True)
class HostSettings:
    """One endpoint of a hosts.toml: a ``[host."URL"]`` table, or the root (``server``)."""

    url: str
    line: int | None
    capabilities: tuple[str, ...] | None = None  # None: not set (all)
    ca: tuple[str, ...] = ()
    client: tuple[tuple[str, str], ...] = ()
    skip_verify: bool | None = None
    override_path: bool = False
    header_keys: tuple[str, ...] = ()


@dataclass
class HostsFile:
    path: str
    text: str = ""
    error: str | None = None
    error_line: int | None = None
    server: HostSettings | None = None  # the root: server = ... plus root ca/client/skip_verify
    server_set: bool = False
    hosts: list[HostSettings] = field(default_factory=list)  # [host."URL"] in file order
    problems: list[Problem] = field(default_factory=list)
    generated_by: str | None = None  # "k3s" when k3s wrote it

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path)


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _settings(url: str, table: dict[str, Any], line: int | None, base: str, problems: list[Problem],
              path: str, lines: dict[tuple[str, ...], int], prefix: tuple[str, ...]) -> HostSettings:
    caps = table.get("capabilities")
    capabilities: tuple[str, ...] | None = None
    if caps is not None:
        if isinstance(caps, list) and all(isinstance(c, str) for c in caps):
            bad = [c for c in caps if c not in CAPS]
            if bad:
                problems.append(Problem(path, lines.get(prefix + ("capabilities",)),
                                        f"unknown capabilities {bad} (use pull, resolve, push)", "ignored"))
            capabilities = tuple(c for c in caps if c in CAPS)
        else:
            problems.append(Problem(path, lines.get(prefix + ("capabilities",)), "capabilities must be a list"))
    ca = []
    for c in _as_list(table.get("ca")):
        if isinstance(c, str):
            ca.append(c if os.path.isabs(c) else os.path.normpath(os.path.join(base, c)))
        else:
            problems.append(Problem(path, lines.get(prefix + ("ca",)), "ca must be a path or a list of paths"))
    client: list[tuple[str, str]] = []
    raw_client = table.get("client")
    for c in _as_list(raw_client):
        if isinstance(c, str):
            client.append((_abs(c, base), ""))
        elif isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c):
            client.append((_abs(c[0], base), _abs(c[1], base)))
        else:
            problems.append(Problem(path, lines.get(prefix + ("client",)),
                                    "client must be a path or a list of [cert, key] pairs"))
    sv = table.get("skip_verify")
    if sv is not None and not isinstance(sv, bool):
        problems.append(Problem(path, lines.get(prefix + ("skip_verify",)),
                                f"skip_verify must be true or false, not {sv!r}"))
        sv = None
    header = table.get("header")
    return HostSettings(url, line, capabilities, tuple(ca), tuple(client), sv,
                        bool(table.get("override_path", False)),
                        tuple(header) if isinstance(header, dict) else ())


def _abs(p: str, base: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))


def parse_hosts_toml(text: str, path: str) -> HostsFile:
    hf = HostsFile(path=path, text=text)
    if "generated by k3s" in text.lower() or "k3s" in text[:200].lower() and "generated" in text[:200].lower():
        hf.generated_by = "k3s"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hf.error = str(exc)
        hf.error_line = _error_line(exc)
        hf.problems.append(Problem(path, hf.error_line, f"does not parse: {exc}"))
        return hf
    lines = toml_lines(text)
    base = os.path.dirname(path)
    for key in data:
        if key not in HOSTS_ROOT_KEYS:
            hf.problems.append(Problem(path, lines.get((key,)), f"unknown key {key!r}: containerd ignores it",
                                       "ignored"))
    server = data.get("server")
    if server is not None:
        if not isinstance(server, str) or "://" not in server:
            hf.problems.append(Problem(path, lines.get(("server",)),
                                       f"server must be a URL with its scheme (https://HOST[:PORT]), not {server!r}"))
        else:
            hf.server_set = True
    root = {k: v for k, v in data.items() if k != "host"}
    hf.server = _settings(server if isinstance(server, str) and "://" in server else "", root,
                          lines.get(("server",)), base, hf.problems, path, lines, ())
    hosts = data.get("host", {})
    if not isinstance(hosts, dict):
        hf.problems.append(Problem(path, lines.get(("host",)), "`host` must be tables: [host.\"https://HOST\"]"))
        hosts = {}
    for url, table in hosts.items():
        line = lines.get(("host", url))
        if not isinstance(table, dict):
            hf.problems.append(Problem(path, line, f"host.{url!r} is not a table"))
            continue
        for key in table:
            if key not in HOST_KEYS:
                hf.problems.append(Problem(path, lines.get(("host", url, key)),
                                           f"unknown key {key!r} in [host.\"{url}\"]: containerd ignores it",
                                           "ignored"))
        if "://" not in url:
            hf.problems.append(Problem(
                path, line, f"[host.\"{url}\"] has no scheme: containerd takes https://{url}", "ignored"))
        hf.hosts.append(_settings(url, table, line, base, hf.problems, path, lines, ("host", url)))
    return hf


# --------------------------------------------------------------------------------------------- lookup


def host_dir_names(host: str, version: tuple[int, int] | None = None) -> list[str]:
    """Directory names containerd tries for `host`, in order."""
    names: list[str] = []
    h, sep, port = host.rpartition(":")
    if sep and port.isdigit() and not host.endswith("]"):
        names.append(f"{h}_{port}_")
    names.append(host)
    if version is None or version >= DEFAULT_DIR_SINCE:
        names.append("_default")
    return names


@dataclass
class HostDirMatch:
    root: str  # the config_path directory
    name: str  # the directory name that matched
    path: str  # root/name
    hosts_toml: HostsFile | None
    cert_files: list[str] = field(default_factory=list)  # Docker-style files, when no hosts.toml
    tried: list[str] = field(default_factory=list)

    @property
    def is_default(self) -> bool:
        return self.name == "_default"


Lister = Callable[[str], "list[str] | None"]  # directory entries, or None when it does not exist
Reader = Callable[[str], "str | None"]


def find_host_dir(roots: tuple[str, ...] | list[str], host: str, listdir: Lister, read: Reader,
                  version: tuple[int, int] | None = None) -> HostDirMatch | None:
    """containerd's choice of host directory: for each root in order, the first name variant that
    exists. None when none does."""
    names = host_dir_names(host, version)
    tried: list[str] = []
    for root in roots:
        entries = listdir(root)
        for name in names:
            path = os.path.join(root, name)
            tried.append(path)
            if entries is None or name not in entries:
                continue
            files = listdir(path)
            if files is None:
                continue
            hf = None
            if "hosts.toml" in files:
                text = read(os.path.join(path, "hosts.toml"))
                hf = parse_hosts_toml(text or "", os.path.join(path, "hosts.toml")) if text is not None else None
            certs = sorted(f for f in files if f.endswith((".crt", ".cert", ".key")))
            return HostDirMatch(root, name, path, hf, certs, tried)
    return None


def near_misses(roots: tuple[str, ...] | list[str], host: str, listdir: Lister) -> list[tuple[str, str]]:
    """Directories meant for `host` that containerd will not pick: (path, why)."""
    out: list[tuple[str, str]] = []
    h, sep, port = host.rpartition(":")
    bare = h if sep and port.isdigit() else host
    wanted = set(host_dir_names(host, (9, 9)))
    for root in roots:
        for name in listdir(root) or []:
            if name in wanted:
                continue
            low = name.lower()
            why = None
            if low.startswith(("http:", "https:", "http_", "https_")) or "://" in low:
                stripped = re.sub(r"^https?(?::|_)(?:/|_)*", "", low)
                if stripped.rstrip("/_") in (host, bare) or stripped.rstrip("/") in wanted:
                    why = "the scheme is part of the directory name"
            elif name == bare and sep:
                why = f"the port is missing (containerd looks for {host})"
            elif name == f"{bare}:{port}_" or name == f"{bare}_{port}":
                why = f"half of the Windows-safe spelling (containerd looks for {bare}_{port}_ or {host})"
            elif name in ("default", "_default_", "*") and sep is not None:
                why = "containerd's catch-all directory is spelled _default"
            if why:
                out.append((os.path.join(root, name), why))
    return out


# --------------------------------------------------------------------------------------------- resolve


def _server_for(host: str) -> str:
    return "https://registry-1.docker.io" if host == DOCKER_HUB else f"https://{host}"


def _tls(s: HostSettings | None, origin: Origin) -> TlsMaterial:
    if s is None:
        return TlsMaterial(origin=origin)
    return TlsMaterial(s.ca, s.client, bool(s.skip_verify), True, origin)


def _endpoint(url: str, role: Any, s: HostSettings | None, origin: Origin, notes: tuple[str, ...] = ()) -> Endpoint:
    scheme: Any = "http" if url.startswith("http://") else "https"
    full = url if "://" in url else f"https://{url}"
    hostpart = full.split("://", 1)[1].split("/", 1)[0]
    override = bool(s and s.override_path)
    if not override:
        path = full.split("://", 1)[1][len(hostpart):].rstrip("/")
        full = f"{scheme}://{hostpart}{path if path.endswith('/v2') else path + '/v2'}"
    caps: Any = tuple(s.capabilities) if s and s.capabilities is not None else ALL_CAPABILITIES
    tls = _tls(s, origin) if scheme == "https" else TlsMaterial(origin=origin)
    return Endpoint(full, scheme, hostpart, role, caps, tls, False, override, origin, notes)  # type: ignore[arg-type]


def resolve_with_hosts_dirs(runtime: str, ref: ImageRef, roots: tuple[str, ...] | list[str], listdir: Lister,
                            read: Reader, version: tuple[int, int] | None = None, *, push: bool = False,
                            default_scheme: str | None = None, extra_notes: tuple[str, ...] = ()) -> Resolution:
    """The endpoints containerd tries for `ref` given these config_path / --hosts-dir roots."""
    host = ref.registry
    notes = list(extra_notes)
    match = find_host_dir(roots, host, listdir, read, version) if roots else None
    want = "push" if push else "pull"
    eps: list[Endpoint] = []
    if match is None or match.hosts_toml is None:
        server_url = _server_for(host)
        if default_scheme == "http" and host != DOCKER_HUB:
            server_url = f"http://{host}"
        tls = TlsMaterial()
        origin = DEFAULT
        if match is not None:
            cas = tuple(os.path.join(match.path, f) for f in match.cert_files if f.endswith(".crt"))
            pairs = tuple((os.path.join(match.path, f), os.path.join(match.path, f[:-5] + ".key"))
                          for f in match.cert_files if f.endswith(".cert"))
            origin = Origin(match.path, None, f"{match.path} (no hosts.toml: Docker-style certificate files)")
            tls = TlsMaterial(cas, pairs, False, True, origin)
            notes.append(f"{match.path} has no hosts.toml: its *.crt/*.cert/*.key configure TLS for {host}")
        elif roots:
            tried = ", ".join(host_dir_names(host, version))
            notes.append(f"no host directory for {host} in {':'.join(roots)} (tried {tried})")
        scheme = "http" if server_url.startswith("http://") else "https"
        eps.append(Endpoint(server_url + "/v2", scheme, server_url.split("://", 1)[1], "registry",  # type: ignore[arg-type]
                            ALL_CAPABILITIES, tls, False, False, origin))
        return Resolution(runtime, ref, tuple(eps), notes=tuple(notes))
    hf = match.hosts_toml
    if hf.error:
        # measured on 1.6.20: `failed to decode hosts.toml` (no path) is logged and the pull goes on with
        # the defaults, as if the file were not there
        notes.append(f"{hf.path} does not parse: containerd logs `failed to decode hosts.toml` (without the path) "
                     "and pulls with its defaults")
        server_url = _server_for(host)
        eps.append(Endpoint(server_url + "/v2", "https", server_url.split("://", 1)[1], "registry",
                            ALL_CAPABILITIES, TlsMaterial(), False, False, DEFAULT))
        return Resolution(runtime, ref, tuple(eps), notes=tuple(notes))
    if match.is_default:
        notes.append(f"{host} has no directory of its own: {match.path} (the catch-all) applies")
    for s in hf.hosts:
        url = s.url if "://" in s.url else f"https://{s.url}"
        ep = _endpoint(url, "mirror", s, Origin(hf.path, s.line, f'[host."{s.url}"] in {hf.path}:{s.line}'))
        if want in ep.capabilities or (not push and "resolve" in ep.capabilities):
            eps.append(ep)
        else:
            notes.append(f"{url} is skipped: capabilities {list(ep.capabilities)} lack {want}")
    server = hf.server
    rs = hf.server
    old = version is not None and version < ROOT_FIELDS_SINCE
    if old and version and rs and (hf.server_set or rs.ca or rs.skip_verify or rs.client):
        notes.append(f"containerd {version[0]}.{version[1]} ignores the root fields of {hf.path} (server, ca, "
                     "client, skip_verify; measured on 1.6.20): put them in a [host.\"URL\"] table")
        server = None
    server_url = server.url if server and server.url else _server_for(host)
    server_origin = Origin(hf.path, server.line if server and hf.server_set else None,
                           f"server in {hf.path}" if server and hf.server_set else f"default server for {host}")
    ep = _endpoint(server_url, "registry", server, server_origin)
    eps.append(ep)
    return Resolution(runtime, ref, tuple(eps), notes=tuple(notes))


def resolve_legacy_mirrors(runtime: str, ref: ImageRef, cfg: ContainerdConfig) -> Resolution:
    """containerd CRI without config_path: registry.mirrors endpoints in order, then the registry."""
    host = ref.registry
    eps: list[Endpoint] = []
    entries = cfg.mirrors.get(host) or cfg.mirrors.get("*") or []
    key = host if host in cfg.mirrors else "*"
    for e in entries:
        url = e if "://" in e else f"https://{e}"
        hp = url.split("://", 1)[1].split("/", 1)[0]
        tls = cfg.configs_tls.get(hp, {})
        origin = Origin(cfg.path, cfg.mirror_lines.get(key), f'mirrors."{key}".endpoint in {cfg.path}')
        eps.append(Endpoint(url.rstrip("/") + "/v2", "http" if url.startswith("http://") else "https", hp,
                            "mirror", ALL_CAPABILITIES,
                            TlsMaterial(tuple(_as_list(tls.get("ca_file"))), (), bool(tls.get("insecure_skip_verify")),
                                        True, origin), False, False, origin))
    if not any(e.host == host for e in eps):
        tls = cfg.configs_tls.get(host, {})
        origin = Origin(cfg.path, cfg.config_lines.get(host)) if tls else DEFAULT
        server = _server_for(host)
        eps.append(Endpoint(server + "/v2", "https", server.split("://", 1)[1], "registry", ALL_CAPABILITIES,
                            TlsMaterial(tuple(_as_list(tls.get("ca_file"))), (), bool(tls.get("insecure_skip_verify")),
                                        True, origin), False, False, origin))
    return Resolution(runtime, ref, tuple(eps), notes=("legacy registry.mirrors/configs (no config_path)",))


# --------------------------------------------------------------------------------------------- writing


def hosts_toml_text(host: str, *, scheme: str, server: str | None = None, ca: str | None = None,
                    skip_verify: bool = False, capabilities: tuple[str, ...] = ("pull", "resolve", "push"),
                    note: str = "") -> str:
    """A new hosts.toml for `host` (written by a fix)."""
    url = f"{scheme}://{host}"
    out = [f"# {note or 'written by dockerdoctor'}", f'server = "{server or url}"', "", f'[host."{url}"]',
           "  capabilities = [" + ", ".join(f'"{c}"' for c in capabilities) + "]"]
    if ca:
        out.append(f'  ca = "{ca}"')
    if skip_verify:
        out.append("  skip_verify = true")
    return "\n".join(out) + "\n"


class UneditableToml(ValueError):
    """A TOML file the style-preserving editor cannot take (it does not parse, or has an odd shape)."""


def _tomlkit_edit(edit: Callable[[], str]) -> str:
    import tomlkit.exceptions

    try:
        return edit()
    except (tomlkit.exceptions.TOMLKitError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise UneditableToml(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _edit_hosts_toml(current: str, host: str, *, scheme: str, ca: str | None = None, skip_verify: bool = False,
                     capabilities: tuple[str, ...] = ("pull", "resolve", "push")) -> str:
    """Add or update the ``[host."scheme://host"]`` table of an existing hosts.toml, keeping its comments,
    order and formatting (tomlkit, imported only here)."""
    import tomlkit

    doc = tomlkit.parse(current)
    url = f"{scheme}://{host}"
    hosts = doc.get("host")
    if hosts is None:
        hosts = tomlkit.table(is_super_table=True)
        doc["host"] = hosts
    entry = hosts.get(url)  # type: ignore[union-attr]
    if entry is None:
        entry = tomlkit.table()
        hosts[url] = entry  # type: ignore[index]
    entry["capabilities"] = list(capabilities)
    if ca:
        entry["ca"] = ca
    if skip_verify:
        entry["skip_verify"] = True
    return tomlkit.dumps(doc)


def _add_config_path(current: str, cfg: ContainerdConfig, directory: str) -> str:
    """config.toml with config_path set in the CRI registry section (tomlkit keeps the rest as it was)."""
    import tomlkit

    doc = tomlkit.parse(current) if current.strip() else tomlkit.document()
    if not current.strip():
        doc["version"] = 2
    table_path = cfg.registry_table or CRI_REGISTRY_TABLES[2]
    cur: Any = doc
    for part in table_path:
        nxt = cur.get(part)
        if nxt is None:
            nxt = tomlkit.table(is_super_table=part != table_path[-1])
            cur[part] = nxt
        cur = nxt
    cur["config_path"] = directory
    return tomlkit.dumps(doc)


def _remove_legacy_registry(current: str, cfg: ContainerdConfig) -> str:
    """config.toml without the legacy `mirrors` and `configs.*.tls` tables (auth stays)."""
    import tomlkit

    doc = tomlkit.parse(current)
    cur: Any = doc
    for part in cfg.registry_table:
        cur = cur.get(part)
        if cur is None:
            return current
    if "mirrors" in cur:
        del cur["mirrors"]
    configs = cur.get("configs")
    if configs is not None:
        for host in list(configs):
            if "tls" in configs[host]:
                del configs[host]["tls"]
            if not configs[host]:
                del configs[host]
        if not configs:
            del cur["configs"]
    return tomlkit.dumps(doc)


# The editors as fixes call them: a file tomlkit cannot take raises UneditableToml, never tomlkit's own errors.
def edit_hosts_toml(current: str, host: str, *, scheme: str, ca: str | None = None, skip_verify: bool = False,
                    capabilities: tuple[str, ...] = ("pull", "resolve", "push")) -> str:
    return _tomlkit_edit(lambda: _edit_hosts_toml(current, host, scheme=scheme, ca=ca, skip_verify=skip_verify,
                                                  capabilities=capabilities))


def add_config_path(current: str, cfg: ContainerdConfig, directory: str) -> str:
    return _tomlkit_edit(lambda: _add_config_path(current, cfg, directory))


def remove_legacy_registry(current: str, cfg: ContainerdConfig) -> str:
    return _tomlkit_edit(lambda: _remove_legacy_registry(current, cfg))
