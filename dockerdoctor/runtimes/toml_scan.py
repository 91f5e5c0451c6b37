"""TOML as containerd's files need it: tomllib for the values, a light line scan for where each key is.

tomllib keeps no line numbers; ``toml_lines`` finds the line of every table header and key of the same
text, so a Problem can name ``file:line``. Pure: text in, data out.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

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


def error_line(exc: Exception) -> int | None:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
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


def load_toml(text: str, path: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """The parsed document, or None and the Problem that says where it does not parse."""
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        return None, Problem(path, error_line(exc), f"does not parse: {exc}")


def unparsed(obj: Any, bad: Problem | None) -> Any:
    """A config.toml, hosts.toml or nerdctl.toml that does not parse: its error, line and Problem."""
    assert bad is not None
    obj.error = bad.text.removeprefix("does not parse: ")
    obj.error_line = bad.line
    obj.problems.append(bad)
    return obj
