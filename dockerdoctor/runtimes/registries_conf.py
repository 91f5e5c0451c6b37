"""containers/image's registries.conf, one file at a time: v2 tables (``[[registry]]``, mirrors, aliases,
unqualified-search-registries), v1 converted, with the line of every table and the Problems the clients
refuse or ignore. containers_image.py loads the files in the clients' order and merges them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.runtimes.base import DEFAULT, Origin
from dockerdoctor.runtimes.toml_scan import tomllib as _toml


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
