"""The effective daemon configuration, and the facts it is merged from.

Inputs: docker.service and its drop-ins, the EnvironmentFiles it loads (and the well-known ones
it may not load), daemon.json (or the --config-file the daemon was given), RHEL's
registries.conf, the running dockerd's command line and `docker info`. Every value keeps
where it came from, so a finding can say "set in X, but ignored because Y".
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, HostPort, fact
from dockerdoctor.facts.docker_info import DockerInfo, docker_info_from_api, parse_docker_info_text  # noqa: E402,F401
from dockerdoctor.facts.dockerd_cli import ParsedCommandLine, parse_dockerd_argv
from dockerdoctor.facts.dockerd_process import DockerdProcess, sockets_served  # noqa: E402,F401
from dockerdoctor.facts.dockerhost import (
    require_local_daemon,
)
from dockerdoctor.facts.systemd import (
    UNIT_DIRS,
    EnvAssignment,
    EnvFile,
    ExpandedCommand,
    SystemdUnitState,
    UnitModel,
    expand_exec,
    merge_unit,
    parse_env_file,
    parse_systemctl_show,
)
from dockerdoctor.model import Provenance
from dockerdoctor.net import split_host_port
from dockerdoctor.safetext import isdigits, loads_json
from dockerdoctor.sources.specs import ENV_FILE_KEYS, UNITS, file_path, read_first

WELL_KNOWN_ENV_FILES = tuple(file_path(k) for k in ENV_FILE_KEYS)
DEFAULT_DAEMON_JSON = file_path("daemon_json")


# --------------------------------------------------------------------------- docker.service


def find_unit(source: Any, name: str) -> UnitModel | None:
    """Locate a unit and its drop-ins the way systemd does."""
    fragment: str | None = None
    masked = False
    for d in UNIT_DIRS:
        path = f"{d}/{name}"
        target = source.is_symlink_to(path)
        if target == "/dev/null":
            masked = True
            fragment = path
            break
        if source.exists(path):
            fragment = path
            break
    if fragment is None:
        return None
    # Drop-ins: same file name in a higher-priority directory wins; applied in name order.
    dropins: dict[str, str] = {}
    for d in reversed(UNIT_DIRS):
        for entry in source.listdir(f"{d}/{name}.d"):
            if entry.endswith(".conf"):
                dropins[entry] = f"{d}/{name}.d/{entry}"
    files: list[tuple[str, str]] = []
    if not masked:
        files.append((fragment, source.read_text(fragment) or ""))
    for entry in sorted(dropins):
        files.append((dropins[entry], source.read_text(dropins[entry]) or ""))
    model = merge_unit(name, files)
    model.fragment = fragment
    model.masked = masked
    return model


@fact()
def docker_unit(facts: Facts) -> UnitModel:
    require_local_daemon(facts, "docker.service")
    unit = find_unit(facts.source, UNITS["docker_service"])
    if unit is None:
        raise FactUnavailable("no docker.service unit file (docker may not be managed by systemd here)")
    return unit


@fact()
def docker_socket_unit(facts: Facts) -> bool:
    require_local_daemon(facts, "docker.socket")
    return find_unit(facts.source, UNITS["docker_socket"]) is not None


@fact()
def systemd_state(facts: Facts) -> SystemdUnitState:
    """systemd's view of docker.service: D-Bus live, else `systemctl show`, else sos output."""
    require_local_daemon(facts, "docker.service")
    if facts.live:
        from dockerdoctor.facts.systemd_dbus import read_unit_properties

        props = read_unit_properties("docker.service")
        if props is not None:
            return SystemdUnitState("systemd D-Bus (org.freedesktop.systemd1)", props)
        if not facts.source.exists("/run/systemd/system"):
            raise FactUnavailable("systemd is not running on this host (no /run/systemd/system)")
    text = facts.source.command("systemctl_show_docker")
    if not text:
        raise FactUnavailable("systemctl show output for docker.service is not available")
    props = parse_systemctl_show(text)
    if props is None:
        raise FactUnavailable("systemctl show output has no docker.service block")
    return SystemdUnitState(facts.source.command_source("systemctl_show_docker"), props)


# --------------------------------------------------------------------------- environment files


@dataclass
class EnvFileInfo:
    path: str
    parsed: EnvFile
    loaded: bool  # referenced by an EnvironmentFile= of docker.service
    mtime: float | None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text, line)


@fact()
def env_files(facts: Facts) -> dict[str, EnvFileInfo]:
    """Every environment file docker.service loads, plus the well-known ones it might not."""
    require_local_daemon(facts, "docker.service environment")
    unit = facts.optional("docker_unit")
    loaded = {ref.path for ref in unit.environment_files} if unit else set()
    out: dict[str, EnvFileInfo] = {}
    for path in list(dict.fromkeys([*(unit and [r.path for r in unit.environment_files] or []),
                                    *WELL_KNOWN_ENV_FILES])):
        text = facts.source.read_text(path, limit=1024 * 1024)
        if text is None:
            continue
        st = facts.source.stat(path)
        out[path] = EnvFileInfo(path, parse_env_file(text, path), path in loaded, st.mtime if st else None)
    return out


@fact()
def unit_environment(facts: Facts) -> dict[str, EnvAssignment]:
    """The environment ExecStart sees: Environment=, then EnvironmentFiles in order."""
    unit: UnitModel = facts.get("docker_unit")
    files: dict[str, EnvFileInfo] = facts.get("env_files")
    env: dict[str, EnvAssignment] = {}
    for a in unit.environment:
        env[a.name] = a
    for ref in unit.environment_files:
        info = files.get(ref.path)
        if info is None:
            continue
        env.update(info.parsed.as_dict())
    return env


@fact()
def planned_command(facts: Facts) -> ExpandedCommand:
    """The dockerd argv that systemd would run from the unit files on disk now."""
    unit: UnitModel = facts.get("docker_unit")
    if unit.masked:
        raise FactUnavailable("docker.service is masked")
    if not unit.exec_start:
        raise FactUnavailable("docker.service has no ExecStart after its drop-ins")
    env = facts.get("unit_environment")
    return expand_exec(unit.exec_start[-1], env)


# --------------------------------------------------------------------------- daemon.json


@dataclass
class DaemonJson:
    path: str
    via: str  # "default" | "--config-file flag"
    exists: bool
    text: str | None = None
    data: dict[str, Any] | None = None
    error: str | None = None
    error_line: int | None = None
    error_col: int | None = None
    key_lines: dict[str, int] = field(default_factory=dict)
    duplicate_keys: list[str] = field(default_factory=list)
    mtime: float | None = None
    read_path: str = ""  # where it was actually read (may be under /proc/PID/root)
    bom: bool = False  # starts with a UTF-8 byte-order mark (dockerd >= 23.0 strips it; 20.10 refuses it)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """At `line` (``dj.line_of(key)`` for one key)."""
        return Provenance(self.path, text, line)

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key)


def parse_daemon_json(text: str, path: str) -> DaemonJson:
    dj = DaemonJson(path=path, via="", exists=True, text=text)
    if text.startswith("\ufeff"):
        dj.bom = True
        text = text[1:]
    if text.strip() == "":
        dj.error = "the file is empty (dockerd says: EOF)"
        return dj
    dupes: list[str] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for k, v in pairs:
            if k in seen:
                dupes.append(k)
            seen[k] = v
        return seen

    try:
        data = loads_json(text, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        dj.error = exc.msg
        dj.error_line, dj.error_col = exc.lineno, exc.colno
        return dj
    except ValueError as exc:
        dj.error = str(exc)[:200]
        return dj
    if not isinstance(data, dict):
        dj.error = f"the top level is a JSON {type(data).__name__}, not an object"
        return dj
    dj.data = data
    dj.duplicate_keys = dupes
    # One pass over the text (a search per key was quadratic on a daemon.json of 100,000 keys).
    line, pos = 1, 0
    for m in _KEY_AT_LINE_START.finditer(text):
        line += text.count("\n", pos, m.start(1))
        pos = m.start(1)
        raw = m.group(1)
        try:
            key = raw if "\\" not in raw else json.loads(f'"{raw}"')
        except ValueError:
            continue
        if key in data and key not in dj.key_lines:
            dj.key_lines[key] = line
    return dj


_KEY_AT_LINE_START = re.compile(r'^[ \t\r\n]*"((?:[^"\\\n]|\\.)*)"\s*:', re.MULTILINE)
DAEMON_JSON_LIMIT = 4 * 1024 * 1024


@fact()
def daemon_json(facts: Facts) -> DaemonJson:
    """daemon.json as the daemon reads it: the --config-file it was given, else the default path."""
    require_local_daemon(facts, "daemon.json")
    path, via = DEFAULT_DAEMON_JSON, "default"
    proc: DockerdProcess | None = facts.optional("dockerd_process")
    argv_sources: list[ParsedCommandLine] = []
    if proc is not None:
        argv_sources.append(proc.parsed)
    planned = facts.optional("planned_command")
    if planned is not None:
        argv_sources.append(parse_dockerd_argv(planned.argv))
    for parsed in argv_sources:
        cfg = parsed.values("config-file")
        if cfg and cfg[-1].value:
            path, via = cfg[-1].value, "--config-file flag"
            break
    # Live, read it the way the daemon sees it: through /proc/PID/root (its mount namespace). A missing
    # file there is missing for the daemon, whatever this host's own /etc/docker holds.
    read_path = proc.read_path(path) if facts.live and proc is not None else path
    text = facts.source.read_text(read_path, limit=DAEMON_JSON_LIMIT + 1)
    if text is None:
        return DaemonJson(path=path, via=via, exists=False, read_path=read_path)
    if len(text.encode("utf-8", "surrogateescape")) > DAEMON_JSON_LIMIT:
        # Only part of it could be read: saying it is invalid (its cut end does not parse) would be false.
        raise FactUnavailable(f"{path} is larger than {DAEMON_JSON_LIMIT // (1024 * 1024)} MiB, too large to read")
    dj = parse_daemon_json(text, path)
    dj.via = via
    dj.read_path = read_path
    st = facts.source.stat(read_path)
    dj.mtime = st.mtime if st else None
    return dj


# --------------------------------------------------------------------------- registries.conf


@dataclass
class RegistriesConf:
    path: str
    insecure: list[tuple[str, int]]  # (registry, line)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text, line)


@fact()
def registries_conf(facts: Facts) -> RegistriesConf:
    """RHEL docker 1.13 reads insecure registries from /etc/containers/registries.conf (v1 TOML)."""
    require_local_daemon(facts, "registries.conf")
    got = read_first(facts.source, "registries_conf", limit=1024 * 1024)
    if got is None:
        raise FactUnavailable(f"{file_path('registries_conf')} does not exist")
    path, text = got
    out: list[tuple[str, int]] = []
    section = ""
    collecting = False
    for n, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s.startswith("["):
            section = s.strip("[] ")
            collecting = False
            continue
        if section == "registries.insecure" and (s.startswith("registries") or collecting):
            part = s.split("=", 1)[1] if s.startswith("registries") else s
            for item in re.findall(r"['\"]([^'\"]+)['\"]", part):
                out.append((item, n))
            collecting = "]" not in part
    return RegistriesConf(path, out)


# --------------------------------------------------------------------------- effective config


@dataclass(frozen=True)
class ConfigValue:
    value: str
    via: str  # "flag" | "daemon.json" | "registries.conf"
    source: str
    line: int | None
    detail: str = ""  # e.g. "$INSECURE_REGISTRY (/etc/sysconfig/docker:12) via ExecStart in ...:14"

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or self.detail or f"{self.via}: {self.value}",
                          line if line is not None else self.line)

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass
class EffectiveConfig:
    """What dockerd runs with (`running`) and what it would run with after a restart (`planned`)."""

    planned_argv: list[str] | None
    planned: ParsedCommandLine | None
    running: ParsedCommandLine | None
    daemon_json: DaemonJson
    insecure_planned: list[ConfigValue]
    insecure_running: list[ConfigValue] | None
    proxies: dict[str, ConfigValue]
    expanded: ExpandedCommand | None = None


def _unit_runs(facts: Facts, proc: DockerdProcess) -> bool:
    """Live: is this dockerd docker.service's main process (systemd's ExecMainPID)?"""
    state = facts.optional("systemd_state")
    if state is None:
        return False
    return state.get("ExecMainPID") == str(proc.pid)


def _insecure_from_cmdline(parsed: ParsedCommandLine, expanded: ExpandedCommand | None, fallback_source: str
                           ) -> list[ConfigValue]:
    out = []
    for use in parsed.values("insecure-registry"):
        if use.value is None:
            continue
        origin = expanded.origins[use.index] if expanded and use.index < len(expanded.origins) else None
        if origin is not None:
            src = origin.var_path or origin.exec_path
            line = origin.var_line if origin.var_path else origin.exec_line
            out.append(ConfigValue(use.value, "flag", src, line, origin.describe()))
        else:
            out.append(ConfigValue(use.value, "flag", fallback_source, None))
    return out


def _insecure_from_json(dj: DaemonJson) -> list[ConfigValue]:
    if not dj.data:
        return []
    val = dj.data.get("insecure-registries")
    if isinstance(val, list):
        # Only strings: a number, null or object is a type error (DD106), not a registry named "None".
        return [ConfigValue(v, "daemon.json", dj.path, dj.line_of("insecure-registries")) for v in val
                if isinstance(v, str)]
    return []


PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


@fact()
def effective_config(facts: Facts) -> EffectiveConfig:
    dj: DaemonJson = facts.get("daemon_json")
    expanded: ExpandedCommand | None = facts.optional("planned_command")
    proc: DockerdProcess | None = facts.optional("dockerd_process")
    if facts.live and proc is not None and expanded is not None and not _unit_runs(facts, proc):
        # The daemon we inspect was not started by docker.service (a hand-started or test dockerd):
        # its own command line is what it runs with and would run with again.
        expanded = None
    planned = parse_dockerd_argv(expanded.argv) if expanded else (proc.parsed if proc else None)
    running = proc.parsed if proc else None
    if planned is None and running is None and not dj.exists:
        raise FactUnavailable("neither a docker.service unit, a running dockerd nor a daemon.json was found")
    insecure_planned: list[ConfigValue] = []
    if planned is not None:
        src = expanded.origins[0].exec_path if expanded and expanded.origins else "dockerd command line"
        insecure_planned += _insecure_from_cmdline(planned, expanded, src)
    insecure_planned += _insecure_from_json(dj)
    rc: RegistriesConf | None = facts.optional("registries_conf")
    insecure_running: list[ConfigValue] | None = None
    info: DockerInfo | None = facts.optional("docker_info")
    if info is not None:
        insecure_running = [ConfigValue(c, "docker info", info.source, None) for c in info.insecure_cidrs]
        insecure_running += [ConfigValue(n, "docker info", info.source, None) for n in info.insecure_names]
    elif running is not None:
        insecure_running = _insecure_from_cmdline(running, None, proc.source if proc else "") + _insecure_from_json(dj)
    if rc is not None and rc.insecure and expanded is not None:
        # RHEL's docker 1.13: registries.service turns /etc/containers/registries.conf into
        # /run/containers/registries.conf, which the unit loads and expands. sosreports do not collect
        # /run, so when the unit loads that file but it cannot be read, registries.conf is the source.
        unit: UnitModel | None = facts.optional("docker_unit")
        files: dict[str, EnvFileInfo] = facts.optional("env_files") or {}
        run_conf = file_path("run_registries_conf")
        if unit is not None and any(r.path == run_conf for r in unit.environment_files) and run_conf not in files:
            insecure_planned += [ConfigValue(v, "registries.conf", rc.path, line,
                                             f"{rc.path}:{line} via {run_conf} (generated by registries.service)")
                                 for v, line in rc.insecure]
    proxies: dict[str, ConfigValue] = {}
    env: dict[str, EnvAssignment] = facts.optional("unit_environment") or {}
    for name in PROXY_VARS:
        a = env.get(name)
        if a is not None and a.value:
            proxies[name.upper()] = ConfigValue(a.value, "environment", a.path, a.line)
    if dj.data and isinstance(dj.data.get("proxies"), dict):
        for k, v in dj.data["proxies"].items():
            key = {"http-proxy": "HTTP_PROXY", "https-proxy": "HTTPS_PROXY", "no-proxy": "NO_PROXY"}.get(k)
            if key and isinstance(v, str) and v:
                proxies[key] = ConfigValue(v, "daemon.json", dj.path, dj.line_of("proxies"))
    return EffectiveConfig(expanded.argv if expanded else None, planned, running, dj, insecure_planned,
                           insecure_running, proxies, expanded)


# --------------------------------------------------------------------------- insecure-registry semantics


@dataclass(frozen=True)
class InsecureEntryCheck:
    value: str
    normalized: str | None  # what dockerd keeps (scheme stripped), None when dockerd refuses it
    problem: str | None  # why dockerd refuses it or why it is a silent no-op
    fatal: bool  # dockerd refuses to start
    is_cidr: bool = False


_HOST_LABEL = re.compile(r"^([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$")


@functools.lru_cache(maxsize=2**18)
def check_insecure_entry(value: str) -> InsecureEntryCheck:
    """What dockerd 20.10 does with one insecure-registries value (see shared/lab.md §1). Cached: several
    rules ask about every entry of a list that may hold thousands."""
    v = value
    low = v.lower()
    if low.startswith("http://"):
        v = v[7:]
    elif low.startswith("https://"):
        v = v[8:]
    elif "://" in v:
        return InsecureEntryCheck(value, None, "contains a scheme other than http:// or https://", True)
    if "/" in v:  # only a CIDR is a network here ("10.0.0.5:5000" fails ip_network, slowly)
        try:
            ipaddress.ip_network(v, strict=False)
            return InsecureEntryCheck(value, v, None, False, is_cidr=True)
        except ValueError:
            pass
    if any(c in v for c in "[],; '\"") or "/" in v or not v:
        what = (
            "a bracket list" if v.startswith("[") else
            "several hosts in one value" if ("," in v or " " in v) else
            "literal quotes" if ("'" in v or '"' in v) else
            "a path" if "/" in v else "an empty value"
        )
        return InsecureEntryCheck(value, None, f"{what}: dockerd says invalid host and does not start", True)
    host, port = split_host_port(v)
    if port and (not isdigits(port) or not 0 < int(port) < 65536):
        return InsecureEntryCheck(value, None, f"invalid port {port!r}: dockerd does not start", True)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_HOST_LABEL.match(label) for label in host.split(".")):
            return InsecureEntryCheck(value, None, f"invalid host {host!r}: dockerd does not start", True)
    problem = None
    if value != v:
        problem = "has a scheme, which dockerd strips with a warning"
    return InsecureEntryCheck(value, v, problem, False)


def trusted_as_insecure(target: HostPort, entries: list[str]) -> str | None:
    """The entry that makes `target` insecure in dockerd's eyes, or None."""
    name = str(target)
    for entry in entries:
        chk = check_insecure_entry(entry)
        if chk.normalized is None:
            continue
        if chk.is_cidr:
            try:
                if ipaddress.ip_address(target.host) in ipaddress.ip_network(chk.normalized, strict=False):
                    return entry
            except ValueError:
                continue
        elif chk.normalized.lower() == name.lower():
            return entry
    try:
        if ipaddress.ip_address(target.host).is_loopback:
            return "127.0.0.0/8 (always insecure)"
    except ValueError:
        if target.host == "localhost":
            return "127.0.0.0/8 (localhost is always insecure)"
    return None


# Ranges dockerd adds to InsecureRegistryCIDRs by itself: 127.0.0.0/8 always, ::1/128 since engine 28
# (moby/moby#48540). They are never a configured entry, stale or not.
DEFAULT_INSECURE_CIDRS = frozenset({"127.0.0.0/8", "::1/128"})


def predict_registry_config(values: list[str]) -> tuple[set[str], set[str]]:
    """What dockerd will report in /info for these insecure-registries values:
    (InsecureRegistryCIDRs, names of IndexConfigs with Secure=false). 127.0.0.0/8 is left out."""
    cidrs: set[str] = set()
    names: set[str] = set()
    for v in values:
        chk = check_insecure_entry(v)
        if chk.normalized is None:
            continue
        if chk.is_cidr:
            cidrs.add(str(ipaddress.ip_network(chk.normalized, strict=False)))
        else:
            names.add(chk.normalized)
    cidrs -= DEFAULT_INSECURE_CIDRS
    return cidrs, names

