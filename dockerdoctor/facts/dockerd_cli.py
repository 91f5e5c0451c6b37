"""dockerd's command line: which flags exist, which take a value, and how they map to daemon.json.

The flag table is `dockerd --help` of the real dockerd 20.10.24 (data/dockerd-20.10-flags.tsv).
The parser follows pflag, which dockerd uses: `--name=value`, `--name value`, `-H value`,
`-Hvalue`, bool flags with an optional `=true|false`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources

# Flags whose daemon.json key differs from the flag name (dockerd's config struct tags).
FLAG_TO_JSON_KEY: dict[str, str] = {
    "insecure-registry": "insecure-registries",
    "registry-mirror": "registry-mirrors",
    "host": "hosts",
    "label": "labels",
    "storage-opt": "storage-opts",
    "exec-opt": "exec-opts",
    "log-opt": "log-opts",
    "dns-opt": "dns-opts",
    "default-ulimit": "default-ulimits",
    "authorization-plugin": "authorization-plugins",
    "add-runtime": "runtimes",
    "default-address-pool": "default-address-pools",
    "node-generic-resource": "node-generic-resources",
    "tlscacert": "tlscacert",
    "graph": "graph",
}

@dataclass(frozen=True)
class RemovedFlag:
    flag: str
    removed_in: tuple[int, int]
    replacement: str


REMOVED_FLAGS: dict[str, RemovedFlag] = {
    f.flag: f
    for f in (
        RemovedFlag("disable-legacy-registry", (19, 3), "nothing: v1 registries are no longer supported"),
        RemovedFlag("api-enable-cors", (17, 9), "--api-cors-header"),
        RemovedFlag("graph", (23, 0), "--data-root"),
        RemovedFlag("cluster-store", (23, 0), "swarm mode"),
        RemovedFlag("cluster-advertise", (23, 0), "swarm mode"),
        RemovedFlag("cluster-store-opt", (23, 0), "swarm mode"),
        RemovedFlag("exec-driver", (1, 13), "nothing: runc is the only driver"),
    )
}

# Flags of Red Hat's docker 1.13 fork (projectatomic/docker). Upstream dockerd does not know them.
RHEL_FORK_FLAGS = {"add-registry", "block-registry", "signature-verification"}

# The short flags dockerd 20.10 has, plus `-g` (graph) and `-d` of old engines.
_EXTRA_SHORTS = {"g": "graph"}


@functools.lru_cache(maxsize=1)
def flag_table() -> dict[str, str]:
    """flag name -> type ('bool', 'string', 'list', 'int', ...)."""
    text = resources.files("dockerdoctor").joinpath("data/dockerd-20.10-flags.tsv").read_text()
    table: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _short, kind = line.split("\t")
        table[name] = kind
    # Known to older engines or forks; value-taking so that parsing stays aligned.
    for name in ("graph", "cluster-store", "cluster-advertise", "cluster-store-opt", "exec-driver"):
        table.setdefault(name, "string")
    for name in ("add-registry", "block-registry"):
        table.setdefault(name, "list")
    for name in ("disable-legacy-registry", "api-enable-cors", "signature-verification"):
        table.setdefault(name, "bool")
    return table


@functools.lru_cache(maxsize=1)
def short_table() -> dict[str, str]:
    text = resources.files("dockerdoctor").joinpath("data/dockerd-20.10-flags.tsv").read_text()
    shorts = dict(_EXTRA_SHORTS)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, short, _kind = line.split("\t")
        if short:
            shorts[short] = name
    return shorts


def json_key(flag: str) -> str:
    return FLAG_TO_JSON_KEY.get(flag, flag)


@dataclass
class FlagUse:
    name: str  # long name without dashes, or the raw text for unknown flags
    value: str | None
    index: int  # argv index of the flag
    raw: str
    known: bool = True


@dataclass
class ParsedCommandLine:
    program: str
    mode: str  # "dockerd" | "docker daemon" | "docker -d" | "other"
    flags: list[FlagUse] = field(default_factory=list)
    unknown: list[FlagUse] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[FlagUse]:
        return [f for f in self.flags if f.name == name]


_BOOL_VALUES = {"true", "false", "1", "0", "t", "f", "TRUE", "FALSE", "True", "False"}


def parse_dockerd_argv(argv: list[str]) -> ParsedCommandLine:
    """Parse a dockerd argv (argv[0] included) the way pflag would."""
    if not argv:
        return ParsedCommandLine(program="", mode="other")
    program = argv[0]
    base = program.rsplit("/", 1)[-1]
    start = 1
    mode = "dockerd"
    if base in ("docker", "docker-current", "docker-latest"):
        if len(argv) > 1 and argv[1] == "daemon":
            mode, start = "docker daemon", 2
        elif "-d" in argv[1:] or "--daemon" in argv[1:]:
            mode = "docker -d"
        else:
            mode = "other"
    elif not base.startswith("dockerd"):
        mode = "other"
    result = ParsedCommandLine(program=program, mode=mode)
    table, shorts = flag_table(), short_table()
    i = start
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            result.positional.extend(argv[i + 1 :])
            break
        if arg.startswith("--"):
            body = arg[2:]
            name, eq, value = body.partition("=")
            if name not in table:
                use = FlagUse(name=name, value=value if eq else None, index=i, raw=arg, known=False)
                result.unknown.append(use)
                i += 1
                continue
            kind = table[name]
            if kind == "bool":
                if eq and value not in _BOOL_VALUES:
                    result.errors.append(f"invalid argument {value!r} for --{name}")
                result.flags.append(FlagUse(name, value if eq else "true", i, arg))
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    result.errors.append(f"flag needs an argument: --{name}")
                    result.flags.append(FlagUse(name, None, i, arg))
                    break
                value = argv[i + 1]
                result.flags.append(FlagUse(name, value, i, f"{arg} {value}"))
                i += 2
                continue
            result.flags.append(FlagUse(name, value, i, arg))
            i += 1
            continue
        if arg.startswith("-") and len(arg) > 1:
            short, rest = arg[1], arg[2:]
            if short == "d" and mode == "docker -d":
                i += 1
                continue
            name_or_none = shorts.get(short)
            if name_or_none is None:
                result.unknown.append(FlagUse(arg[1:], None, i, arg, known=False))
                i += 1
                continue
            name = name_or_none
            if table.get(name) == "bool":
                result.flags.append(FlagUse(name, rest.lstrip("=") or "true", i, arg))
                i += 1
                continue
            if rest:
                result.flags.append(FlagUse(name, rest.lstrip("="), i, arg))
                i += 1
                continue
            if i + 1 >= len(argv):
                result.errors.append(f"flag needs an argument: -{short}")
                break
            result.flags.append(FlagUse(name, argv[i + 1], i, f"{arg} {argv[i + 1]}"))
            i += 2
            continue
        result.positional.append(arg)
        i += 1
    return result


_VERSION_RE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
