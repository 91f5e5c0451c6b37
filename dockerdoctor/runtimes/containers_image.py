"""podman, buildah and skopeo: containers/image's registries.conf, certs.d and auth.json, with provenance.

What is modelled (containers-registries.conf(5), containers-registries.conf.d(5), containers-certs.d(5),
containers-auth.json(5) as installed with containers-common on Debian 12; checked against the real
podman 4.3.1, buildah 1.28 and skopeo 1.9.3 in tests/lab_containers.py):

* the main file is ``$HOME/.config/containers/registries.conf`` when it exists (it *replaces*
  ``/etc/containers/registries.conf``), else the system file; ``CONTAINERS_REGISTRIES_CONF`` (or a
  client's ``--registries-conf``) names another one, but only for clients that read it (CLIENTS);
* drop-ins: ``/etc/containers/registries.conf.d/*.conf`` then ``$HOME/.config/containers/registries.conf.d/*.conf``,
  each in name order; with the user main file only the user drop-in directory is read. A drop-in must be
  v2; a ``[[registry]]`` with the same prefix replaces the earlier one, scalar settings are overwritten;
* v1 (``[registries.search|insecure|block] registries = [...]``) is converted; mixing v1 and v2 in one
  file is an error the clients refuse to run with;
* one ``[[registry]]`` table applies: the longest prefix (``*.example.com`` matches subdomains);
  ``location`` rewrites the reference (not for a wildcard prefix); mirrors come first, for pulls only;
  ``insecure = true`` allows plain HTTP *and* unverified TLS (HTTPS is still tried first);
  ``blocked = true`` refuses the pull;
* TLS material: the FIRST existing directory of ``$HOME/.config/containers/certs.d/HOST:PORT``,
  ``/etc/containers/certs.d/HOST:PORT``, ``/etc/docker/certs.d/HOST:PORT`` is used (``*.crt`` CAs,
  ``*.cert``/``*.key`` pairs); an empty directory in the first place hides the others;
* credentials: ``${XDG_RUNTIME_DIR}/containers/auth.json``, then ``~/.config/containers/auth.json``,
  ``~/.docker/config.json``, ``~/.dockercfg`` (only the file and the key are named, never the secret).

Everything here is pure: a :class:`ConfigInput` of file texts goes in, a :class:`ContainersConfig` comes
out. dockerdoctor.runtimes.__init__ reads the files through the Source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from dockerdoctor.runtimes.base import (
    DEFAULT,
    Credentials,
    Endpoint,
    ImageRef,
    Origin,
    Resolution,
    TlsMaterial,
)

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as _toml  # type: ignore[no-redef,import-not-found,unused-ignore]

SYSTEM_CONF = "/etc/containers/registries.conf"
SYSTEM_DIR = "/etc/containers/registries.conf.d"
USER_CONF = ".config/containers/registries.conf"  # under $HOME
USER_DIR = ".config/containers/registries.conf.d"
USER_CERTS = ".config/containers/certs.d"
SYSTEM_CERTS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
ENV_VAR = "CONTAINERS_REGISTRIES_CONF"
LEGACY_ENV_VAR = "REGISTRIES_CONFIG_PATH"  # older name; podman and buildah still read it, the new one wins


@dataclass(frozen=True)
class ClientTraits:
    """What one containers/image client does differently (measured on Debian 12, see runtimes.md §5)."""

    name: str
    display: str
    reads_env: bool  # honours CONTAINERS_REGISTRIES_CONF (and REGISTRIES_CONFIG_PATH, which it overrides)
    short_names: bool  # resolves short names through aliases / unqualified-search-registries
    flag: str | None = "--registries-conf"  # the command-line override, when there is one
    notes: tuple[str, ...] = ()


CLIENTS: dict[str, ClientTraits] = {
    "podman": ClientTraits("podman", "podman", True, True),
    "buildah": ClientTraits("buildah", "buildah", True, True),
    "skopeo": ClientTraits(
        "skopeo", "skopeo", False, False,
        notes=("skopeo 1.9 does not read CONTAINERS_REGISTRIES_CONF or REGISTRIES_CONFIG_PATH (use --registries-conf "
               "FILE)",
               "skopeo takes a short name as docker.io/library/NAME (no unqualified-search-registries)"),
    ),
}


# --------------------------------------------------------------------------- parsed files


@dataclass(frozen=True)
class Problem:
    """Something the clients refuse (error) or ignore (warning) in one file."""

    path: str
    line: int | None
    message: str
    severity: str = "error"  # "error": podman/skopeo/buildah exit with it; "warning": ignored or risky
    kind: str = "invalid"  # invalid | mixing | v1-dropin | bad-location | mirror-option | unknown-key | toml

    def origin(self) -> Origin:
        return Origin(self.path, self.line, self.message)


@dataclass(frozen=True)
class Mirror:
    location: str
    insecure: bool = False
    pull_from_mirror: str = "all"  # all | digest-only | tag-only
    origin: Origin = DEFAULT


@dataclass(frozen=True)
class RegistryTable:
    """One ``[[registry]]`` table (or a v1 entry converted to one)."""

    prefix: str
    location: str
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    origin: Origin = DEFAULT  # the table's header line
    insecure_origin: Origin | None = None  # the `insecure = ...` line
    blocked_origin: Origin | None = None
    v1: bool = False

    @property
    def wildcard(self) -> bool:
        return self.prefix.startswith("*.")

    def matches(self, name: str) -> bool:
        """Does the reference ``name`` (host[:port]/repo[:tag|@digest]) fall under this prefix?"""
        if self.wildcard:
            host = name.split("/", 1)[0]
            host = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
            return host.endswith(self.prefix[1:])
        if len(name) < len(self.prefix) or not name.startswith(self.prefix):
            return False
        return len(name) == len(self.prefix) or name[len(self.prefix)] in ":/@"


@dataclass
class ConfFile:
    path: str
    role: str  # "main" | "drop-in"
    version: str = "empty"  # "v1" | "v2" | "empty"
    registries: list[RegistryTable] = field(default_factory=list)
    search: list[str] | None = None
    search_origin: Origin | None = None
    short_name_mode: str | None = None
    aliases: dict[str, tuple[str, Origin]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


_V2_TOP = {"unqualified-search-registries", "registry", "short-name-mode", "aliases", "credential-helpers"}
_REGISTRY_KEYS = {"prefix", "location", "insecure", "blocked", "mirror-by-digest-only", "mirror"}
_MIRROR_KEYS = {"location", "insecure", "pull-from-mirror"}
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"'-]+?)\s*(\]\]?)\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*(\"[^\"]+\"|'[^']+'|[A-Za-z0-9_-]+)\s*=")
_DOMAIN = re.compile(r"^(?:localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::\d+)?$")


class _Lines:
    """Where each table header and key sits: `[[registry]]` number i, its mirror j, plain tables."""

    def __init__(self, text: str) -> None:
        self.registry: list[int] = []  # header line of the i-th [[registry]]
        self.mirror: list[list[int]] = []
        self.keys: dict[tuple[Any, ...], int] = {}  # (table id, key) -> line
        table: tuple[Any, ...] = ("",)
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = _HEADER.match(raw)
            if m and m.group(1) in ("[", "[["):
                name = m.group(2).replace('"', "").replace("'", "")
                if m.group(1) == "[[" and name == "registry":
                    self.registry.append(n)
                    self.mirror.append([])
                    table = ("registry", len(self.registry) - 1)
                elif m.group(1) == "[[" and name == "registry.mirror" and self.registry:
                    self.mirror[-1].append(n)
                    table = ("mirror", len(self.registry) - 1, len(self.mirror[-1]) - 1)
                else:
                    table = (name,)
                    self.keys.setdefault(((name,), "__table__"), n)
                continue
            k = _KEY.match(raw)
            if k:
                self.keys.setdefault((table, k.group(1).strip("\"'")), n)

    def reg(self, i: int) -> int | None:
        return self.registry[i] if i < len(self.registry) else None

    def key(self, table: tuple[Any, ...], key: str) -> int | None:
        return self.keys.get((table, key))


def _location_problem(value: str, what: str) -> str | None:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", value):
        return f"invalid {what} {value!r}: URI schemes are not supported (write host[:port][/path])"
    if not value:
        return None
    host = value.split("/", 1)[0]
    if what == "prefix" and host.startswith("*."):
        if "/" in value or "*" in value[2:]:
            return f"invalid prefix {value!r}: a wildcard must be the whole first label of a bare host (*.example.com)"
        host = host[2:]
    elif "*" in value:
        return f"invalid {what} {value!r}: '*' is allowed only as the leading '*.' of a prefix"
    if not _DOMAIN.match(host):
        return f"invalid {what} {value!r}: {host!r} is not a host[:port]"
    return None


def parse_conf(path: str, text: str, role: str = "main") -> ConfFile:
    """One registries.conf (or drop-in) file, with every table's file:line."""
    out = ConfFile(path, role)
    try:
        data = _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        out.problems.append(Problem(path, int(m.group(1)) if m else None, f"does not parse as TOML: {exc}",
                                    kind="toml"))
        return out
    lines = _Lines(text)
    v1 = data.get("registries")
    v1_nonempty = isinstance(v1, dict) and any(
        isinstance(v1.get(k), dict) and v1[k].get("registries") for k in ("search", "insecure", "block"))
    v2_nonempty = any(k in data for k in ("registry", "unqualified-search-registries", "aliases", "short-name-mode"))
    if v1_nonempty and v2_nonempty:
        out.problems.append(Problem(path, lines.key(("registries.insecure",), "__table__")
                                    or lines.key(("registries.search",), "__table__")
                                    or lines.key(("registries.block",), "__table__"),
                                    "mixing sysregistry v1/v2 is not supported: the clients refuse to run",
                                    kind="mixing"))
        return out
    if v1_nonempty:
        out.version = "v1"
        if role == "drop-in":
            v1_line = next((lines.key(((f"registries.{k}",)), "__table__") for k in ("insecure", "search", "block")
                            if lines.key(((f"registries.{k}",)), "__table__")), None)
            out.problems.append(Problem(path, v1_line, "registry must be in v2 format but is in v1: a drop-in "
                                                    "in v1 syntax makes the clients refuse to run", kind="v1-dropin"))
            return out
        _convert_v1(out, v1 if isinstance(v1, dict) else {}, lines)
        return out
    if v2_nonempty:
        out.version = "v2"
    for key in data:
        if key not in _V2_TOP and key != "registries":
            out.problems.append(Problem(path, lines.key(("",), key), f"unknown key {key!r} is ignored",
                                        "warning", "unknown-key"))
    search = data.get("unqualified-search-registries")
    if search is not None:
        if not isinstance(search, list) or not all(isinstance(s, str) for s in search):
            out.problems.append(Problem(path, lines.key(("",), "unqualified-search-registries"),
                                        "unqualified-search-registries must be a list of host[:port] strings"))
        else:
            out.search = [s.rstrip("/") for s in search]
            out.search_origin = Origin(path, lines.key(("",), "unqualified-search-registries"),
                                       "unqualified-search-registries")
            for s in out.search:
                if "/" in s or _location_problem(s, "location") or not _DOMAIN.match(s):
                    out.problems.append(Problem(path, out.search_origin.line,
                                                f"Invalid unqualified-search-registries entry {s!r}"))
    mode = data.get("short-name-mode")
    if mode is not None:
        if mode not in ("", "enforcing", "permissive", "disabled"):
            out.problems.append(Problem(path, lines.key(("",), "short-name-mode"),
                                        f"invalid short-name-mode {mode!r} (enforcing, permissive or disabled)"))
        out.short_name_mode = str(mode)
    aliases = data.get("aliases")
    if isinstance(aliases, dict):
        for name, value in aliases.items():
            out.aliases[name] = (str(value), Origin(path, lines.key(("aliases",), name), f"alias {name}"))
    regs = data.get("registry", [])
    if not isinstance(regs, list):
        out.problems.append(Problem(path, None, "`registry` must be an array of tables ([[registry]])"))
        regs = []
    for i, reg in enumerate(regs):
        table = _registry_table(out, i, reg, lines)
        if table is not None:
            out.registries.append(table)
    _conflicts(out)
    return out


def _registry_table(out: ConfFile, i: int, reg: Any, lines: _Lines) -> RegistryTable | None:
    path = out.path
    tid = ("registry", i)
    head = lines.reg(i)
    if not isinstance(reg, dict):
        out.problems.append(Problem(path, head, "a [[registry]] entry is not a table"))
        return None
    for key in reg:
        if key not in _REGISTRY_KEYS:
            if key == "pull-from-mirror":
                msg = ("pull-from-mirror is a [[registry.mirror]] option, set here on a [[registry]] table: "
                       "it is ignored (move it under [[registry.mirror]])")
                out.problems.append(Problem(path, lines.key(tid, key) or head, msg, "error", "mirror-option"))
            else:
                out.problems.append(Problem(path, lines.key(tid, key) or head,
                                            f"unknown key {key!r} in [[registry]] is ignored", "warning",
                                            "unknown-key"))
    prefix = str(reg.get("prefix", "") or "").rstrip("/")
    location = str(reg.get("location", "") or "").rstrip("/")
    for what, value in (("prefix", prefix), ("location", location)):
        why = _location_problem(value, what)
        if why:
            out.problems.append(Problem(path, lines.key(tid, what) or head, why, kind="bad-location"))
            return None
    if not prefix and not location:
        out.problems.append(Problem(path, head, "invalid condition: both location and prefix are unset"))
        return None
    if not prefix:
        prefix = location
    if not location and not prefix.startswith("*."):
        location = prefix
    mirrors: list[Mirror] = []
    raw_mirrors = reg.get("mirror", [])
    for j, mir in enumerate(raw_mirrors if isinstance(raw_mirrors, list) else []):
        mid = ("mirror", i, j)
        mline = lines.mirror[i][j] if i < len(lines.mirror) and j < len(lines.mirror[i]) else head
        if not isinstance(mir, dict):
            continue
        for key in mir:
            if key not in _MIRROR_KEYS:
                out.problems.append(Problem(path, lines.key(mid, key) or mline,
                                            f"unknown key {key!r} in [[registry.mirror]] is ignored", "warning",
                                            "unknown-key"))
        mloc = str(mir.get("location", "") or "").rstrip("/")
        why = _location_problem(mloc, "location") if mloc else "a [[registry.mirror]] has no location"
        if why:
            out.problems.append(Problem(path, lines.key(mid, "location") or mline, why, kind="bad-location"))
            continue
        pfm = str(mir.get("pull-from-mirror", "") or "all")
        if pfm not in ("all", "digest-only", "tag-only"):
            out.problems.append(Problem(path, lines.key(mid, "pull-from-mirror") or mline,
                                        f"unsupported pull-from-mirror value {pfm!r} (all, digest-only, tag-only)"))
            pfm = "all"
        if pfm != "all" and reg.get("mirror-by-digest-only"):
            out.problems.append(Problem(path, lines.key(mid, "pull-from-mirror") or mline,
                                        "pull-from-mirror cannot be set on a mirror of a registry with "
                                        "mirror-by-digest-only", kind="mirror-option"))
        mirrors.append(Mirror(mloc, bool(mir.get("insecure", False)), pfm,
                              Origin(path, mline, f"[[registry.mirror]] location {mloc!r}")))
    return RegistryTable(
        prefix, location, bool(reg.get("insecure", False)), bool(reg.get("blocked", False)),
        bool(reg.get("mirror-by-digest-only", False)), tuple(mirrors),
        Origin(path, head, f"[[registry]] prefix {prefix!r}"),
        Origin(path, lines.key(tid, "insecure") or head, f"insecure = {str(bool(reg['insecure'])).lower()}")
        if "insecure" in reg else None,
        Origin(path, lines.key(tid, "blocked") or head, "blocked = true") if reg.get("blocked") else None,
    )


def _conflicts(out: ConfFile) -> None:
    by_loc: dict[str, RegistryTable] = {}
    for r in out.registries:
        other = by_loc.setdefault(r.location, r)
        if other is r:
            continue
        for attr in ("insecure", "blocked"):
            if getattr(other, attr) != getattr(r, attr):
                out.problems.append(Problem(out.path, r.origin.line,
                                            f"registry '{r.location}' is defined multiple times with conflicting "
                                            f"'{attr}' setting"))


def _convert_v1(out: ConfFile, v1: dict[str, Any], lines: _Lines) -> None:
    def entries(section: str) -> list[str]:
        sec = v1.get(section) or {}
        vals = sec.get("registries") if isinstance(sec, dict) else None
        return [str(v) for v in vals] if isinstance(vals, list) else []

    def line(section: str) -> int | None:
        return lines.key((f"registries.{section}",), "registries") or lines.key((f"registries.{section}",),
                                                                               "__table__")

    tables: dict[str, dict[str, Any]] = {}
    for section, attr in (("insecure", "insecure"), ("block", "blocked")):
        for name in entries(section):
            t = tables.setdefault(name, {"insecure": False, "blocked": False})
            t[attr] = True
            t[attr + "_line"] = line(section)
    for name, t in tables.items():
        o = Origin(out.path, t.get("insecure_line") or t.get("blocked_line"),
                   f"v1 [registries.{'insecure' if t['insecure'] else 'block'}] entry {name!r}")
        out.registries.append(RegistryTable(
            name, name, t["insecure"], t["blocked"], origin=o,
            insecure_origin=Origin(out.path, t.get("insecure_line"), f"v1 [registries.insecure] {name!r}")
            if t["insecure"] else None,
            blocked_origin=Origin(out.path, t.get("blocked_line"), f"v1 [registries.block] {name!r}")
            if t["blocked"] else None, v1=True))
    search = entries("search")
    if search:
        out.search = search
        out.search_origin = Origin(out.path, line("search"), "v1 [registries.search]")
    out.problems.append(Problem(out.path, line("insecure") or line("search") or line("block"),
                                "v1 syntax ([registries.*]) is deprecated; it still works in the main file, "
                                "never in a drop-in", "warning", "v1"))


# --------------------------------------------------------------------------- the loaded configuration


@dataclass(frozen=True)
class ConfigInput:
    """What a client would read, as texts: path -> content (None when absent)."""

    files: dict[str, str | None]  # every path that was looked at
    dirs: dict[str, list[str]]  # directory -> its entry names
    home: str = "/root"
    env: dict[str, str] = field(default_factory=dict)  # CONTAINERS_REGISTRIES_CONF, XDG_RUNTIME_DIR ...
    auth: dict[str, set[str]] = field(default_factory=dict)  # auth file -> its registry keys (never secrets)

    def text(self, path: str) -> str | None:
        return self.files.get(path)


@dataclass
class Shadow:
    """A table or file that is read but does not decide (DD703)."""

    what: str  # "user-file" | "env" | "drop-in" | "duplicate-prefix"
    hidden: Origin  # the setting that is not in effect
    by: Origin  # what wins instead
    message: str


@dataclass
class ContainersConfig:
    client: str
    main: str  # the main file's path
    chosen_by: str  # why this file: "system file" | "user file" | "CONTAINERS_REGISTRIES_CONF" | "--registries-conf"
    files: list[ConfFile]  # in load order: main, then drop-ins
    registries: list[RegistryTable]  # after merging
    search: list[str] | None
    search_origin: Origin | None
    aliases: dict[str, tuple[str, Origin]]
    short_name_mode: str | None
    shadows: list[Shadow]
    ignored_files: list[str]  # read by nobody for this client (the system file when a user file exists)
    home: str = "/root"
    dirs: dict[str, list[str]] = field(default_factory=dict)  # directory -> entries (certs.d, drop-in dirs)

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self.files for p in f.problems]

    @property
    def valid(self) -> bool:
        return all(f.valid for f in self.files)

    def table_for(self, name: str) -> RegistryTable | None:
        best: RegistryTable | None = None
        for r in self.registries:
            if r.matches(name) and (best is None or len(r.prefix) > len(best.prefix)):
                best = r
        return best


def load(inp: ConfigInput, client: str = "podman", conf_override: str | None = None) -> ContainersConfig:
    """The configuration ``client`` ends up with, in its lookup order."""
    traits = CLIENTS.get(client)
    home = inp.home.rstrip("/") or "/"
    user_conf = f"{home}/{USER_CONF}"
    user_dir = f"{home}/{USER_DIR}"
    env_name = next((v for v in (ENV_VAR, LEGACY_ENV_VAR) if inp.env.get(v)), None) \
        if traits is None or traits.reads_env else None
    env_conf = inp.env.get(env_name) if env_name else None
    shadows: list[Shadow] = []
    ignored: list[str] = []
    dirs: list[str]
    if conf_override:
        main, chosen_by, dirs = conf_override, "--registries-conf", [SYSTEM_DIR, user_dir]
    elif env_conf and env_name:
        main, chosen_by, dirs = env_conf, env_name, [SYSTEM_DIR, user_dir]
    elif inp.text(user_conf) is not None:
        main, chosen_by, dirs = user_conf, "user file", [user_dir]
        if inp.text(SYSTEM_CONF) is not None:
            ignored.append(SYSTEM_CONF)
        ignored += [f"{SYSTEM_DIR}/{n}" for n in inp.dirs.get(SYSTEM_DIR, []) if n.endswith(".conf")]
    else:
        main, chosen_by, dirs = SYSTEM_CONF, "system file", [SYSTEM_DIR, user_dir]
    if (env_conf or conf_override) and inp.text(SYSTEM_CONF) is not None and main != SYSTEM_CONF:
        ignored.append(SYSTEM_CONF)
    files: list[ConfFile] = []
    text = inp.text(main)
    if text is not None:
        files.append(parse_conf(main, text, "main"))
    elif chosen_by in (ENV_VAR, LEGACY_ENV_VAR, "--registries-conf"):
        f = ConfFile(main, "main")
        f.problems.append(Problem(main, None, f"{main} (from {chosen_by}) does not exist: the clients refuse to run"))
        files.append(f)
    for d in dirs:
        for name in sorted(inp.dirs.get(d, [])):
            if not name.endswith(".conf"):
                continue
            p = f"{d}/{name}"
            t = inp.text(p)
            if t is not None:
                files.append(parse_conf(p, t, "drop-in"))
    merged: list[RegistryTable] = []
    search: list[str] | None = None
    search_origin: Origin | None = None
    aliases: dict[str, tuple[str, Origin]] = {}
    mode: str | None = None
    for f in files:
        if not f.valid:
            continue
        for r in f.registries:
            for k, old in enumerate(merged):
                if old.prefix == r.prefix:
                    if old.origin.source == r.origin.source:
                        shadows.append(Shadow("duplicate-prefix", old.origin, r.origin,
                                              f"prefix {r.prefix!r} appears twice in {r.origin.source}; the later "
                                              "table wins"))
                    else:
                        shadows.append(Shadow("drop-in", old.origin, r.origin,
                                              f"prefix {r.prefix!r} from {old.origin.where()} is replaced by the "
                                              f"drop-in table at {r.origin.where()}"))
                    merged[k] = r
                    break
            else:
                merged.append(r)
        if f.search is not None:
            if search_origin is not None and f.role == "drop-in":
                shadows.append(Shadow("drop-in", search_origin, f.search_origin or Origin(f.path),
                                      f"unqualified-search-registries from {search_origin.where()} is replaced by "
                                      f"{f.path}"))
            search, search_origin = f.search, f.search_origin
        for name, (value, o) in f.aliases.items():
            if value:
                aliases[name] = (value, o)
            else:
                aliases.pop(name, None)
        if f.short_name_mode is not None:
            mode = f.short_name_mode
    for path in ignored:
        t = inp.text(path)
        by = Origin(main, None, chosen_by)
        if t is None:
            continue
        hidden = parse_conf(path, t, "main" if path == SYSTEM_CONF else "drop-in")
        if hidden.registries or hidden.search:
            first = hidden.registries[0].origin if hidden.registries else (hidden.search_origin or Origin(path))
            why = {"user file": f"{user_conf} exists and replaces it",
                   ENV_VAR: f"{ENV_VAR}={main} replaces it",
                   LEGACY_ENV_VAR: f"{LEGACY_ENV_VAR}={main} replaces it",
                   "--registries-conf": f"--registries-conf {main} replaces it"}[chosen_by]
            shadows.append(Shadow("user-file" if chosen_by == "user file" else "env", first, by,
                                  f"{path} is not read by {client}: {why}"))
    for var in (ENV_VAR, LEGACY_ENV_VAR):
        if traits is not None and not traits.reads_env and inp.env.get(var) and not conf_override:
            env_path = inp.env[var]
            shadows.append(Shadow("env", Origin(env_path, None, f"{var}={env_path}"), Origin(main, None, chosen_by),
                                  f"{client} does not read {var}; it loads {main} (give it --registries-conf "
                                  f"{env_path})"))
            break
    return ContainersConfig(client, main, chosen_by, files, merged, search, search_origin, aliases, mode, shadows,
                            ignored, home, inp.dirs)


# --------------------------------------------------------------------------- certs.d and auth.json


@dataclass(frozen=True)
class CertsChoice:
    directory: str | None  # the one directory the client uses for HOST:PORT
    files: tuple[str, ...]
    hidden: tuple[str, ...]  # later directories for the same host that are never read
    origin: Origin = DEFAULT

    def tls(self, skip_verify: bool, insecure_origin: Origin | None = None) -> TlsMaterial:
        d = self.directory or ""
        cas = tuple(f"{d}/{f}" for f in self.files if f.endswith(".crt"))
        pairs = tuple((f"{d}/{f}", f"{d}/{f[:-5]}.key") for f in self.files
                      if f.endswith(".cert") and f"{f[:-5]}.key" in self.files)
        return TlsMaterial(cas, pairs, skip_verify, True, insecure_origin if skip_verify and insecure_origin
                           else (self.origin if self.directory else DEFAULT))


def certs_for(host: str, dirs: dict[str, list[str]], home: str = "/root") -> CertsChoice:
    candidates = [f"{home.rstrip('/')}/{USER_CERTS}/{host}"] + [f"{b}/{host}" for b in SYSTEM_CERTS]
    present = [c for c in candidates if c in dirs]
    if not present:
        return CertsChoice(None, (), ())
    first = present[0]
    return CertsChoice(first, tuple(sorted(dirs[first])), tuple(present[1:]), Origin(first, None, "certs.d"))


AUTH_FILES = ("{xdg}/containers/auth.json", "{home}/.config/containers/auth.json", "{home}/.docker/config.json",
              "{home}/.dockercfg")


def auth_paths(home: str = "/root", xdg_runtime_dir: str | None = None) -> list[str]:
    out = [p.format(xdg=(xdg_runtime_dir or "").rstrip("/"), home=home.rstrip("/")) for p in AUTH_FILES]
    if not xdg_runtime_dir:  # root without XDG_RUNTIME_DIR: /run/containers/0/auth.json (containers-auth.json(5))
        out[0] = "/run/containers/0/auth.json"
    return out


def credentials_for(image: str, auth: dict[str, set[str]], home: str = "/root",
                    xdg_runtime_dir: str | None = None) -> Credentials:
    """The first auth file and key that has an entry for the image (most specific key first)."""
    parts = image.split("/")
    keys = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    for path in auth_paths(home, xdg_runtime_dir):
        entries = auth.get(path)
        if not entries:
            continue
        for k in keys:
            for variant in (k, f"https://{k}", f"http://{k}", f"https://{k}/v1/", f"https://{k}/v2/"):
                if variant in entries:
                    return Credentials(path, None, Origin(path, None, f"key {variant!r}"))
    return Credentials("none")


# --------------------------------------------------------------------------- resolution


def _split(name: str) -> tuple[str, str]:
    host, _, rest = name.partition("/")
    return host, rest


def _qualified_name(ref: ImageRef) -> str:
    tail = f":{ref.tag}" if ref.tag else ""
    tail += f"@{ref.digest}" if ref.digest else ""
    return f"{ref.registry}/{ref.repository}{tail}"


def _short_name(ref: ImageRef) -> str:
    repo = ref.repository
    raw = ref.text.split("@", 1)[0]
    if repo.startswith("library/") and not raw.startswith("library/"):
        repo = repo[len("library/"):]
    return repo


@dataclass
class Candidate:
    """One fully qualified name the client tries for a reference (several for a short name)."""

    name: str
    origin: Origin  # why this name (the search list, an alias, or the reference itself)


def candidates(ref: ImageRef, cfg: ContainersConfig) -> tuple[list[Candidate], list[str]]:
    """The qualified names tried for ref, in order, and notes (short-name handling)."""
    traits = CLIENTS.get(cfg.client)
    if ref.qualified or (traits is not None and not traits.short_names):
        notes = []
        if not ref.qualified:
            notes.append(f"{cfg.client} takes the short name as {ref.registry}/{ref.repository}")
        return [Candidate(_qualified_name(ref), Origin("image reference", None, str(ref)))], notes
    short = _short_name(ref)
    tail = (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    if short in cfg.aliases:
        value, o = cfg.aliases[short]
        return [Candidate(value + tail, o)], [f"short name {short!r} is an alias ({o.where()})"]
    if not cfg.search:
        return [], [f"short name {short!r}: no alias and no unqualified-search-registries, so {cfg.client} "
                    "cannot resolve it"]
    out = []
    for reg in cfg.search:
        repo = short if reg != "docker.io" or "/" in short else f"library/{short}"
        out.append(Candidate(f"{reg}/{repo}{tail}", cfg.search_origin or DEFAULT))
    notes = []
    mode = cfg.short_name_mode or "permissive"
    if len(cfg.search) > 1 and mode == "enforcing":
        notes.append("short-name-mode enforcing with several search registries: without a terminal the pull fails")
    return out, notes


def _host_of(location: str) -> str:
    return location.split("/", 1)[0]


def resolve(ref: ImageRef, cfg: ContainersConfig, dirs: dict[str, list[str]], auth: dict[str, set[str]],
            *, push: bool = False, env: dict[str, str] | None = None,
            proxy_for: Callable[[str, str], str | None] | None = None) -> Resolution:
    """The endpoints ``cfg.client`` tries for ref, in order, each with its scheme, TLS material and file:line."""
    traits = CLIENTS.get(cfg.client)
    notes: list[str] = list(traits.notes) if traits else []
    if not cfg.valid:
        bad = next(p for p in cfg.problems if p.severity == "error")
        return Resolution(cfg.client, ref, (), None, None, None,
                          tuple(notes + [f"{cfg.client} refuses to run: {bad.message} ({bad.origin().where()})"]))
    cands, cnotes = candidates(ref, cfg)
    notes += cnotes
    endpoints: list[Endpoint] = []
    blocked: Origin | None = None
    rewritten: str | None = None
    creds: Credentials | None = None
    first_name = None
    for cand in cands:
        table = cfg.table_for(cand.name)
        if table is not None and table.blocked:
            blocked = blocked or table.blocked_origin or table.origin
            notes.append(f"{cand.name} is blocked by {(table.blocked_origin or table.origin).where()}")
            continue
        host, rest = _split(cand.name)
        primary = cand.name
        if table is not None and not table.wildcard and table.location != table.prefix and not push:
            primary = table.location + cand.name[len(table.prefix):]
            if rewritten is None:
                rewritten = primary
        elif table is not None and not table.wildcard and table.location != table.prefix and push:
            notes.append(f"location rewrite of {table.origin.where()} does not apply to pushes")
        if first_name is None:
            first_name = primary
            creds = credentials_for(primary.split("@")[0].rsplit(":", 1)[0] if ":" in primary.split("/")[-1]
                                    else primary.split("@")[0], auth, cfg.home, (env or {}).get("XDG_RUNTIME_DIR"))
        sources: list[tuple[str, bool, Literal["mirror", "registry"], Origin]] = []
        if table is not None and not push:
            is_digest = ref.digest is not None
            for m in table.mirrors:
                use = m.pull_from_mirror
                if table.mirror_by_digest_only:
                    use = "digest-only"
                if (use == "digest-only" and not is_digest) or (use == "tag-only" and is_digest):
                    notes.append(f"mirror {m.location} ({m.origin.where()}) is {use}: not used for this reference")
                    continue
                name = m.location + cand.name[len(table.prefix):] if not table.wildcard else \
                    m.location + "/" + rest
                sources.append((name, m.insecure, "mirror", m.origin))
        elif table is not None and push and table.mirrors:
            notes.append(f"mirrors of {table.origin.where()} are for pulls only")
        insecure = table.insecure if table is not None else False
        sources.append((primary, insecure, "registry", table.origin if table is not None else cand.origin))
        for name, ins, role, origin in sources:
            h = _host_of(name)
            certs = certs_for(h, dirs, cfg.home)
            ins_origin = (table.insecure_origin if table is not None and role == "registry" else origin) if ins \
                else None
            tls = certs.tls(ins, ins_origin)
            enotes: list[str] = []
            if certs.hidden:
                enotes.append(f"{certs.directory} is used; {', '.join(certs.hidden)} is not read")
            if ins:
                enotes.append(f"insecure ({(ins_origin or origin).where()}): HTTPS without verification, then "
                              "plain HTTP")
            proxy = proxy_for(h, "https") if proxy_for else None
            if proxy:
                enotes.append(f"through proxy {proxy}")
            endpoints.append(Endpoint(f"https://{h}/v2/", "https", h, role,
                                      ("pull", "resolve") if role == "mirror" else ("pull", "resolve", "push"),
                                      tls, ins, False, origin, tuple(enotes)))
    proxy = None
    if endpoints and proxy_for:
        proxy = proxy_for(endpoints[0].host, endpoints[0].scheme)
    return Resolution(cfg.client, ref, tuple(endpoints), creds, proxy, blocked if not endpoints else None,
                      tuple(notes), rewritten)


@dataclass
class ContainersRuntime:
    """The Runtime (base.py) for one containers/image client on this host."""

    name: str
    display: str
    config: ContainersConfig
    dirs: dict[str, list[str]]
    auth: dict[str, set[str]]
    origin: Origin
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    proxy_for: Callable[[str, str], str | None] | None = None

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        return resolve(ref, self.config, self.dirs, self.auth, push=push, env=self.env, proxy_for=self.proxy_for)
