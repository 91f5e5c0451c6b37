"""containerd's registry host configuration, hosts.toml: parsing with provenance, the host-directory lookup
and the endpoints it resolves (config.toml is containerd_config.py; writing them, toml_edits.py).

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

import dataclasses
import os
import re
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
from dockerdoctor.runtimes.containerd_config import ContainerdConfig
from dockerdoctor.runtimes.toml_scan import Problem, load_toml, toml_lines, unparsed

# The versions where a shape changes, as (major, minor).
DEFAULT_DIR_SINCE = (1, 6)  # `_default` host directory: honoured by 1.6.20 (measured); older not measured
# Root-level hosts.toml fields (server, ca, client, skip_verify) apply to the server as the docs say.
# Measured on 1.6.20: all of them are ignored there (the server stays https://<host>, no root CA or
# skip_verify); only [host."URL"] tables count. The first version that honours them is not measured.
ROOT_FIELDS_SINCE = (1, 7)

HOSTS_ROOT_KEYS = {"server", "capabilities", "ca", "client", "skip_verify", "header", "override_path",
                   "host", "dial_timeout"}
HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "header", "override_path", "dial_timeout"}
CAPS = set(ALL_CAPABILITIES)


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
    data, bad = load_toml(text, path)
    if data is None:
        return unparsed(hf, bad)
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


# --------------------------------------------------------------------------------------------- adapter


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
    config: Any = None  # the file it was read from, with .path and .problems (rootless config.toml, nerdctl.toml)
    owner: str | None = None  # rootless: the user whose home holds these directories (a fix gives them the files)
    home: str | None = None  # rootless: that user's home; a fix writes nothing that resolves outside it

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        if self.legacy is not None and not self.roots:
            return resolve_legacy_mirrors(self.name, ref, self.legacy)
        res = resolve_with_hosts_dirs(self.name, ref, self.roots, self.listdir, self.read, self.version, push=push,
                                      extra_notes=self.notes)
        if self.insecure_all:
            eps = tuple(dataclasses.replace(e, http_fallback=True, tls=dataclasses.replace(e.tls, skip_verify=True))
                        if e.role == "registry" and e.scheme == "https" else e for e in res.endpoints)
            res = dataclasses.replace(res, endpoints=eps)
        return res

    def host_dir(self, host: str):
        return find_host_dir(self.roots, host, self.listdir, self.read, self.version)
