"""systemd semantics that decide what dockerd is really started with.

Pure parsers: unit files and drop-ins (with `ExecStart=` resets and backslash continuation),
environment files (quotes, comments, and the shell lines systemd ignores), and ExecStart
expansion (`$VAR` splits into words, `${VAR}` stays one word). Every value keeps its file and
line so that a finding can point at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dockerdoctor.model import Provenance
from dockerdoctor.sources.specs import UNIT_DIRS

__all__ = ["UNIT_DIRS"]



@dataclass(frozen=True)
class Directive:
    section: str
    key: str
    value: str
    path: str
    line: int

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text or f"{self.key}={self.value}", line if line is not None else self.line)


def parse_unit_text(text: str, path: str) -> list[Directive]:
    """Parse one unit file or drop-in into ordered directives."""
    out: list[Directive] = []
    section = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        i += 1
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        # Backslash continues the line; comment lines inside a continuation are skipped.
        # Pieces are joined once at the end: rebuilding the string per continuation is quadratic.
        pieces: list[str] = []
        current = stripped
        while current.endswith("\\"):
            pieces.append(current[:-1] + " ")
            while i < len(lines) and lines[i].strip()[:1] in ("#", ";") and lines[i].strip():
                i += 1
            if i >= len(lines):
                current = ""
                break
            current = lines[i].strip()
            i += 1
        pieces.append(current)
        logical = "".join(pieces)
        key, eq, value = logical.partition("=")
        if not eq:
            continue
        out.append(Directive(section, key.strip(), value.strip(), path, lineno))
    return out


@dataclass(frozen=True)
class ExecLine:
    """One ExecStart= value after prefix characters are removed."""

    command: str
    path: str
    line: int
    prefixes: str = ""

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text or f"ExecStart={self.command}", line if line is not None else self.line)

    def words(self) -> list[str]:
        return split_command_line(self.command)


@dataclass(frozen=True)
class EnvFileRef:
    path: str
    optional: bool
    unit_path: str
    line: int

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.unit_path, text or f"EnvironmentFile={'-' if self.optional else ''}{self.path}",
                          line if line is not None else self.line)


@dataclass(frozen=True)
class EnvAssignment:
    name: str
    value: str
    path: str
    line: int

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.path, text or f"{self.name}={self.value}", line if line is not None else self.line)


@dataclass
class UnitModel:
    """A unit merged from its fragment and drop-ins, in systemd's order."""

    name: str
    fragment: str | None
    dropins: list[str] = field(default_factory=list)
    masked: bool = False
    exec_start: list[ExecLine] = field(default_factory=list)
    environment_files: list[EnvFileRef] = field(default_factory=list)
    environment: list[EnvAssignment] = field(default_factory=list)
    directives: list[Directive] = field(default_factory=list)
    exec_reset_at: Directive | None = None

    @property
    def files(self) -> list[str]:
        return ([self.fragment] if self.fragment else []) + self.dropins

    def get(self, key: str, section: str = "Service") -> list[Directive]:
        return [d for d in self.directives if d.key == key and d.section == section]


def merge_unit(name: str, files: list[tuple[str, str]]) -> UnitModel:
    """Merge [(path, text)]: the fragment first, then drop-ins in their final order."""
    model = UnitModel(name=name, fragment=files[0][0] if files else None, dropins=[p for p, _ in files[1:]])
    for path, text in files:
        for d in parse_unit_text(text, path):
            model.directives.append(d)
            if d.section != "Service":
                continue
            if d.key == "ExecStart":
                if d.value == "":
                    model.exec_start = []
                    model.exec_reset_at = d
                else:
                    prefixes = ""
                    cmd = d.value
                    while cmd[:1] in ("-", "@", ":", "+", "!"):
                        prefixes += cmd[0]
                        cmd = cmd[1:]
                    model.exec_start.append(ExecLine(cmd, d.path, d.line, prefixes))
            elif d.key == "EnvironmentFile":
                if d.value == "":
                    model.environment_files = []
                else:
                    for word in split_command_line(d.value) or [d.value]:
                        optional = word.startswith("-")
                        model.environment_files.append(
                            EnvFileRef(word.lstrip("-"), optional, d.path, d.line)
                        )
            elif d.key == "Environment":
                if d.value == "":
                    model.environment = []
                else:
                    for word in split_command_line(d.value):
                        k, eq, v = word.partition("=")
                        if eq:
                            model.environment.append(EnvAssignment(k, v, d.path, d.line))
    return model


# --------------------------------------------------------------------------- environment files

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class EnvFile:
    path: str
    assignments: list[EnvAssignment] = field(default_factory=list)
    ignored: list[tuple[int, str]] = field(default_factory=list)  # lines systemd skips

    def get(self, name: str) -> EnvAssignment | None:
        found = None
        for a in self.assignments:
            if a.name == name:
                found = a
        return found

    def as_dict(self) -> dict[str, EnvAssignment]:
        out: dict[str, EnvAssignment] = {}
        for a in self.assignments:
            out[a.name] = a
        return out


def parse_env_file(text: str, path: str) -> EnvFile:
    """Parse an EnvironmentFile the way systemd does.

    `KEY=VALUE` per line; `#` and `;` start comments; single quotes are literal; double quotes
    allow backslash escapes; a trailing backslash continues the line. Anything that is not an
    assignment (for example the `if [ -z "${DOCKER_CERT_PATH}" ]; then` of CentOS 7's stock
    /etc/sysconfig/docker) is ignored by systemd, and recorded here as ignored.
    """
    env = EnvFile(path)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = i
        raw = lines[i]
        i += 1
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        name, eq, rest = stripped.partition("=")
        name = name.strip()
        if not eq or not _ENV_NAME.match(name):
            env.ignored.append((start + 1, raw))
            continue
        value, consumed = _parse_env_value(rest, lines, i)
        i = consumed
        env.assignments.append(EnvAssignment(name, value, path, start + 1))
    return env


def _parse_env_value(rest: str, lines: list[str], nxt: int) -> tuple[str, int]:
    out: list[str] = []
    quote: str | None = None
    buf = rest.lstrip()
    pos = 0
    pending_ws = ""
    while True:
        while pos < len(buf):
            ch = buf[pos]
            if quote == "'":
                if ch == "'":
                    quote = None
                else:
                    out.append(ch)
                pos += 1
                continue
            if quote == '"':
                if ch == '"':
                    quote = None
                elif ch == "\\" and pos + 1 < len(buf) and buf[pos + 1] in '"\\`$':
                    out.append(buf[pos + 1])
                    pos += 1
                elif ch == "\\" and pos + 1 == len(buf):
                    break  # continuation inside quotes
                else:
                    out.append(ch)
                pos += 1
                continue
            if ch in "'\"":
                out.append(pending_ws)
                pending_ws = ""
                quote = ch
            elif ch == "\\":
                if pos + 1 == len(buf):
                    break  # continuation
                out.append(pending_ws)
                pending_ws = ""
                out.append(buf[pos + 1])
                pos += 1
            elif ch in " \t":
                pending_ws += ch
            elif ch == "#" and not out and not pending_ws:
                return "", nxt
            else:
                out.append(pending_ws)
                pending_ws = ""
                out.append(ch)
            pos += 1
        if pos < len(buf) and nxt < len(lines):
            # backslash at end of line: continue with the next physical line
            buf = lines[nxt]
            nxt += 1
            pos = 0
            if quote is None:
                buf = buf.lstrip()
            continue
        if quote is not None and nxt < len(lines):
            out.append("\n")
            buf = lines[nxt]
            nxt += 1
            pos = 0
            continue
        break
    return "".join(out), nxt


# --------------------------------------------------------------------------- ExecStart expansion


_WORD_PIECE = re.compile(
    r'(?P<ws>[ \t\r\n]+)|"(?P<dq>(?:[^"\\]|\\.)*)"|\'(?P<sq>[^\']*)\'|\\(?P<esc>.)|(?P<plain>[^ \t\r\n"\'\\]+)'
    r"|(?P<bad>.)",
    re.S,
)
_DQ_ESCAPE = re.compile(r'\\(["\\])')


def split_command_line(text: str) -> list[str]:
    """Split a unit's command line into words (quotes and backslashes as systemd treats them).

    The same words as POSIX shlex with whitespace_split, in linear time (shlex grows each token a
    character at a time: 13 s for a 1 MB Environment= value). An unterminated quote or a trailing
    backslash gives the plain whitespace split, as before."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    for m in _WORD_PIECE.finditer(text):
        kind = m.lastgroup or "bad"
        if kind == "ws":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            continue
        if kind == "bad":
            return text.split()
        in_word = True
        value = m.group(kind)
        cur.append(_DQ_ESCAPE.sub(r"\1", value) if kind == "dq" else value)
    if in_word:
        words.append("".join(cur))
    return words


@dataclass(frozen=True)
class ArgOrigin:
    """Where one argv word came from: the ExecStart line, and the variable that produced it."""

    exec_path: str
    exec_line: int
    variable: str | None = None
    braced: bool = False
    var_path: str | None = None
    var_line: int | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """The variable's assignment when the word came from one, else the ExecStart line."""
        if self.var_path:
            return Provenance(self.var_path, text or self.describe(), line if line is not None else self.var_line)
        return Provenance(self.exec_path, text or self.describe(), line if line is not None else self.exec_line)

    def describe(self) -> str:
        where = f"ExecStart in {self.exec_path}:{self.exec_line}"
        if self.variable:
            ref = f"${{{self.variable}}}" if self.braced else f"${self.variable}"
            src = f" ({self.var_path}:{self.var_line})" if self.var_path else ""
            return f"{ref}{src} via {where}"
        return where


@dataclass
class ExpandedCommand:
    argv: list[str]
    origins: list[ArgOrigin]
    referenced: dict[str, bool]  # variable name -> braced?
    unset_references: list[str]


_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BARE_WORD = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def expand_exec(line: ExecLine, env: dict[str, EnvAssignment]) -> ExpandedCommand:
    """Expand variables in an ExecStart line: `$VAR` as a whole word splits; `${VAR}` does not."""
    argv: list[str] = []
    origins: list[ArgOrigin] = []
    referenced: dict[str, bool] = {}
    unset: list[str] = []
    for word in split_command_line(line.command.replace("$$", "\0")):
        m = _BARE_WORD.match(word)
        if m:
            name = m.group(1)
            referenced.setdefault(name, False)
            assignment = env.get(name)
            if assignment is None:
                unset.append(name)
                continue
            for part in split_command_line(assignment.value):
                argv.append(part)
                origins.append(
                    ArgOrigin(line.path, line.line, name, False, assignment.path, assignment.line)
                )
            continue
        names = _BRACED.findall(word)
        origin = ArgOrigin(line.path, line.line)
        for name in names:
            referenced[name] = True
            assignment = env.get(name)
            if assignment is None:
                unset.append(name)
            else:
                origin = ArgOrigin(line.path, line.line, name, True, assignment.path, assignment.line)

        def _sub(m: re.Match[str]) -> str:
            a = env.get(m.group(1))
            return a.value if a else ""

        expanded = _BRACED.sub(_sub, word).replace("\0", "$")
        if names and expanded == "" and word == f"${{{names[0]}}}":
            # systemd drops a word that expands to nothing
            continue
        argv.append(expanded)
        origins.append(origin)
    return ExpandedCommand(argv, origins, referenced, unset)


# --------------------------------------------------------------------------- `systemctl show`


@dataclass
class SystemdUnitState:
    """systemd's own view of a unit (D-Bus properties or `systemctl show`)."""

    source: str
    properties: dict[str, str]

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    def get(self, key: str) -> str | None:
        return self.properties.get(key)

    @property
    def active_state(self) -> str | None:
        return self.properties.get("ActiveState")

    @property
    def need_daemon_reload(self) -> bool | None:
        v = self.properties.get("NeedDaemonReload")
        return None if v is None else v == "yes"

    @property
    def environment_files(self) -> list[tuple[str, bool]]:
        out = []
        # systemd >= 22x prints EnvironmentFiles=; systemd 219 (RHEL/CentOS 7) prints EnvironmentFile=
        text = self.properties.get("EnvironmentFiles") or self.properties.get("EnvironmentFile", "")
        for m in re.finditer(r"(\S+) \(ignore_errors=(yes|no)\)", text):
            out.append((m.group(1), m.group(2) == "yes"))
        return out

    @property
    def exec_start_argv(self) -> list[list[str]]:
        out = []
        for m in re.finditer(r"argv\[\]=([^;]*);", self.properties.get("ExecStart", "")):
            out.append(split_command_line(m.group(1).strip()))
        return out

    @property
    def dropin_paths(self) -> list[str]:
        return self.properties.get("DropInPaths", "").split()


def parse_systemctl_show(text: str, unit: str = "docker.service") -> dict[str, str] | None:
    """Find one unit's block in `systemctl show` output (blocks separated by blank lines)."""
    block: dict[str, str] = {}
    found: dict[str, str] | None = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if block.get("Id") == unit or unit in block.get("Names", "").split():
                found = block
                break
            block = {}
            continue
        k, eq, v = line.partition("=")
        if eq and k not in block:
            block[k] = v
    return found
