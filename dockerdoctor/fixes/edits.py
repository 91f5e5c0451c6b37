"""Pure file edits: given a file's current text, the text after one fix operation.

The plan (dry run) and the apply engine share these, so what `fix` shows is exactly what
`fix --apply` writes. JSON edits keep every other key and the key order; env-file edits change
one assignment in place and keep comments and every other line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dockerdoctor.errors import DoctorError
from dockerdoctor.model import (
    EnvFileSet,
    JsonListAdd,
    JsonRemoveKey,
    JsonRenameKey,
    JsonSetKey,
    Operation,
    ReplaceFileContent,
)

FILE_OPS = (JsonSetKey, JsonListAdd, JsonRemoveKey, JsonRenameKey, ReplaceFileContent, EnvFileSet)


class UneditableFile(DoctorError):
    """The file cannot be edited safely (for example daemon.json does not parse)."""


def _detect_indent(text: str) -> int | str:
    m = re.search(r"^([ \t]+)\"", text, re.MULTILINE)
    if not m:
        return 2
    ws = m.group(1)
    return "\t" if ws.startswith("\t") else len(ws)


def _load_json(current: str | None, path: str) -> tuple[dict[str, Any], int | str]:
    if current is None or current.strip() == "":
        return {}, 2
    try:
        data = json.loads(current)
    except ValueError as exc:
        raise UneditableFile(f"{path} does not parse ({exc}); fix DD106 first") from None
    if not isinstance(data, dict):
        raise UneditableFile(f"{path}: the top level is not a JSON object")
    return data, _detect_indent(current)


def _dump_json(data: dict[str, Any], indent: int | str) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"  # "café" stays café, not caf\u00e9


# --------------------------------------------------------------------------- daemon.json edited in place

_WS = re.compile(r"[ \t\r\n]*")


@dataclass(frozen=True)
class _Member:
    key: str
    key_start: int
    key_end: int
    value_start: int
    value_end: int


def _members(text: str) -> tuple[list[_Member], int, int] | None:
    """The top-level members of a JSON object with their text spans, the '{' and '}' offsets; None when
    the text is not a plain object (duplicate keys included)."""
    from json.decoder import scanstring  # type: ignore[attr-defined]

    dec = json.JSONDecoder()
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[pos:pos + 1] != "{":
        return None
    open_at, pos = pos, pos + 1
    out: list[_Member] = []
    try:
        while True:
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos:pos + 1] == "}" and not out:
                return out, open_at, pos
            if text[pos:pos + 1] != '"':
                return None
            key, key_end = scanstring(text, pos + 1)
            colon = _WS.match(text, key_end).end()  # type: ignore[union-attr]
            if text[colon:colon + 1] != ":":
                return None
            vstart = _WS.match(text, colon + 1).end()  # type: ignore[union-attr]
            _value, vend = dec.raw_decode(text, vstart)
            out.append(_Member(key, pos, key_end, vstart, vend))
            pos = _WS.match(text, vend).end()  # type: ignore[union-attr]
            if text[pos:pos + 1] == ",":
                pos += 1
                continue
            if text[pos:pos + 1] == "}":
                break
            return None
    except (ValueError, IndexError):
        return None
    if len({m.key for m in out}) != len(out):
        return None
    return out, open_at, pos


def _line_indent(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    return text[start:at] if not text[start:at].strip() else ""


def _render(value: Any, multiline: bool, base: str, indent: int | str, compact: bool) -> str:
    if multiline and isinstance(value, (list, dict)) and value:
        return json.dumps(value, indent=indent, ensure_ascii=False).replace("\n", "\n" + base)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":") if compact else (", ", ": "))


def _edit_in_place(text: str, before: dict[str, Any], after: dict[str, Any], op: Operation) -> str | None:
    """`text` changed only where `after` differs from `before`: a compact file stays compact, other keys,
    their order, spacing and non-ASCII text stay as they were. None when the change is not one this
    can make in place (then the caller writes the whole object)."""
    parsed = _members(text)
    if parsed is None:
        return None
    members, open_at, close_at = parsed
    indent = _detect_indent(text)
    compact = ": " not in text and ", " not in text and "\n" not in text[open_at:close_at]
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    renamed: set[str] = set()
    if isinstance(op, JsonRenameKey) and op.old in before and op.new not in before:
        m = next(m for m in members if m.key == op.old)
        edits.append((m.key_start, m.key_end, json.dumps(op.new, ensure_ascii=False)))
        renamed = {op.old, op.new}
    removed = [k for k in before if k not in after and k not in renamed]
    added = [k for k in after if k not in before and k not in renamed]
    changed = [k for k in before if k in after and before[k] != after[k] and k not in renamed]
    if (removed and added) or len(removed) > 1:
        return None
    for m in members:
        if m.key in changed:
            multiline = "\n" in text[m.value_start:m.value_end]
            edits.append((m.value_start, m.value_end,
                          _render(after[m.key], multiline, _line_indent(text, m.key_start), indent, compact)))
    if removed:
        i = next(i for i, m in enumerate(members) if m.key == removed[0])
        if i + 1 < len(members):
            edits.append((members[i].key_start, members[i + 1].key_start, ""))
        elif i > 0:
            edits.append((members[i - 1].value_end, members[i].value_end, ""))
        else:  # the only member: an empty object, on as many lines as before
            edits.append((open_at + 1, close_at, "\n" if "\n" in text[open_at:close_at] else ""))
    if added:
        multiline = "\n" in text[open_at:close_at]
        step = indent if isinstance(indent, str) else " " * indent
        base = _line_indent(text, members[-1].key_start) if members else step
        sep = ":" if compact else ": "
        parts = [json.dumps(k, ensure_ascii=False) + sep + _render(after[k], multiline, base, indent, compact)
                 for k in added]
        if multiline:
            joined = "".join(f",\n{base}{p}" for p in parts)
            edits.append((members[-1].value_end, members[-1].value_end, joined) if members
                         else (open_at + 1, open_at + 1, joined[1:]))
        else:
            joined = ("," if compact else ", ").join(parts)
            edits.append((members[-1].value_end, members[-1].value_end, ("," if compact else ", ") + joined)
                         if members else (open_at + 1, open_at + 1, joined))
    out = text
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:start] + new + out[end:]
    try:
        if json.loads(out) != after:
            return None  # the in-place edit would not say what the fix means: write the object instead
    except ValueError:
        return None
    return out


def apply_edit(op: Operation, current: str | None) -> str:
    """The new content of op's file. `current` is None when the file does not exist."""
    if isinstance(op, ReplaceFileContent):
        return op.content
    if isinstance(op, (JsonSetKey, JsonListAdd, JsonRemoveKey, JsonRenameKey)):
        data, indent = _load_json(current, op.path)
        if isinstance(op, JsonSetKey):
            data[op.key] = op.value
        elif isinstance(op, JsonListAdd):
            existing = data.get(op.key)
            if existing is None:
                data[op.key] = [op.item]
            elif isinstance(existing, list):
                if op.item not in existing:
                    existing.append(op.item)
            elif isinstance(existing, str):
                data[op.key] = [existing] + ([op.item] if op.item != existing else [])
            else:
                raise UneditableFile(f"{op.path}: {op.key} is not a list")
        elif isinstance(op, JsonRemoveKey):
            data.pop(op.key, None)
        elif isinstance(op, JsonRenameKey):
            if op.old in data:
                value = data.pop(op.old)
                if op.new in data and isinstance(data[op.new], list):
                    for v in value if isinstance(value, list) else [value]:
                        if v not in data[op.new]:
                            data[op.new].append(v)
                else:
                    data[op.new] = value
        if current is not None:
            before = _load_json(current, op.path)[0]
            if before == data:
                return current  # nothing to change: keep the bytes as they are
            edited = _edit_in_place(current, before, data, op)
            if edited is not None:
                return edited
        return _dump_json(data, indent)
    if isinstance(op, EnvFileSet):
        if _is_unit_file(op.path):
            return _unit_env_set(current or "", op)
        return _env_set(current or "", op)
    raise TypeError(f"not a file operation: {op!r}")


_ASSIGN = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _quote(value: str, style: str) -> str:
    if style == "'" and "'" not in value:
        return f"'{value}'"
    if style == '"' or (style == "'" and "'" in value):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if re.search(r"[\s'\"\\#;$]", value):
        return "'" + value + "'" if "'" not in value else '"' + value.replace('"', '\\"') + '"'
    return value


def _env_set(text: str, op: EnvFileSet) -> str:
    from dockerdoctor.facts.systemd import parse_env_file

    lines = text.splitlines(keepends=True)
    parsed = parse_env_file(text, op.path)
    current = parsed.get(op.name)
    if current is None:
        value = op.value
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + f"{op.name}={_quote(value, chr(39))}\n"
    new_value = (current.value + " " + op.value).strip() if op.append else op.value
    if op.append and op.value in current.value.split():
        return text
    idx = current.line - 1
    m = _ASSIGN.match(lines[idx].rstrip("\n"))
    raw = m.group(3) if m else ""
    style = raw[:1] if raw[:1] in ("'", '"') else ""
    indent = m.group(1) if m else ""
    end = "\n" if lines[idx].endswith("\n") else ""
    # A continued assignment spans several physical lines: replace them all.
    span = 1
    while idx + span - 1 < len(lines) and lines[idx + span - 1].rstrip("\n").endswith("\\"):
        span += 1
    lines[idx: idx + span] = [f"{indent}{op.name}={_quote(new_value, style)}{end or chr(10)}"]
    return "".join(lines)


def _is_unit_file(path: str) -> bool:
    return "/systemd/" in path and path.endswith((".conf", ".service"))


_UNIT_ENV = re.compile(r"^(\s*Environment\s*=\s*)(.*)$")


def _unit_env_set(text: str, op: EnvFileSet) -> str:
    """NAME=VALUE in a unit or drop-in: systemd reads `Environment="NAME=value" "OTHER=x"` lines, not
    shell assignments. The last assignment of NAME wins in systemd, so that one is edited in place;
    without one, an Environment= line is added to [Service]."""
    import shlex

    lines = text.splitlines(keepends=True)
    hit: tuple[int, list[str], int] | None = None
    for i, line in enumerate(lines):
        m = _UNIT_ENV.match(line.rstrip("\n"))
        if not m:
            continue
        try:
            words = shlex.split(m.group(2))
        except ValueError:
            continue
        for j, w in enumerate(words):
            if w.split("=", 1)[0] == op.name and "=" in w:
                hit = (i, words, j)
    if hit is None:
        new_line = f'Environment="{op.name}={op.value}"\n'
        for i, line in enumerate(lines):
            if line.strip() == "[Service]":
                lines.insert(i + 1, new_line)
                return "".join(lines)
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + "[Service]\n" + new_line
    i, words, j = hit
    current = words[j].split("=", 1)[1]
    if op.append:
        if op.value in current.split():
            return text
        value = (current + " " + op.value).strip()
    else:
        value = op.value
    if value == current:
        return text
    words[j] = f"{op.name}={value}"
    prefix = _UNIT_ENV.match(lines[i].rstrip("\n")).group(1)  # type: ignore[union-attr]
    end = "\n" if lines[i].endswith("\n") else ""
    lines[i] = prefix + " ".join('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in words) + end
    return "".join(lines)
