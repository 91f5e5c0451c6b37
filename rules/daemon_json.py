"""daemon.json itself (DD106): JSON that does not parse, a byte-order mark, flag-named, unknown or misspelled
keys, wrong types, and options the engine removed or does not have yet."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import (
    DaemonJson,
)
from dockerdoctor.facts.daemon_json_schema import ADDED_IN, DAEMON_JSON_KEYS, REMOVED_JSON_KEYS
from dockerdoctor.facts.dockerd_cli import (
    flag_table,
    json_key,
)
from dockerdoctor.model import (
    Evidence,
    Finding,
    Fix,
    JsonRemoveKey,
    JsonRenameKey,
    JsonSetKey,
    ReplaceFileContent,
    ServiceAction,
    Severity,
)
from dockerdoctor.safetext import loads_json, short

# ============================================================================ DD106


def _type_ok(kind: str, value: object) -> bool:
    if kind == "list":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == "list-any":
        return isinstance(value, list)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    return True


_KIND_WORDS = {"list": "list of strings", "list-any": "list", "object": "object", "string": "string",
               "bool": "boolean (true or false)", "int": "number"}


def _json_kind(value: object) -> str:
    """A JSON value's type as a reader says it ("a number"), never a Python type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def repair_json(text: str) -> str | None:
    """Best-effort repair of the usual hand-edit mistakes: trailing commas and // comments."""
    fixed = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    fixed = re.sub(r",(\s*[}\]])", r"\1", fixed)
    try:
        data = loads_json(fixed)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return json.dumps(data, indent=2) + "\n"


@rule("DD106", "daemon-json-invalid", category="daemon", severity=Severity.ERROR,
      title="daemon.json is invalid",
      validates_config=True, repair_order=1)
def daemon_json_invalid(daemon_json: DaemonJson, engine_version: tuple[int, int, int] | None = None
                        ) -> Iterator[Finding]:
    """daemon.json does not parse, has an unknown or misspelled key, a value of the wrong type, or
    an option the engine removed. dockerd refuses to start (or, on SIGHUP, keeps its old config).

    Why it happens: hand edits. A trailing comma gives `invalid character '}' looking for
    beginning of object key string`; a string where a list belongs gives `cannot unmarshal string
    into Go struct field Config.insecure-registries of type []string`; a typo gives `the following
    directives don't match any configuration option`. The singular key "insecure-registry" (the
    flag's name) is worse: dockerd accepts it and silently ignores it.

    How to fix: the plan shows the corrected file as a diff; unknown keys are renamed to the key
    they were meant to be, strings become one-element lists.

    Example:
        unable to configure the Docker daemon with file /etc/docker/daemon.json: invalid character '}'
        looking for beginning of object key string
    """
    dj = daemon_json
    if not dj.exists:
        raise Skip(f"{dj.path} does not exist")
    if dj.error:
        yield _json_parse_error(dj)
        return
    if dj.bom and (engine_version is None or engine_version < (23, 0, 0)):
        # moby 23.0 strips a UTF-8 byte-order mark (moby/moby#44777); 20.10 stops at the first byte.
        yield _byte_order_mark(dj, engine_version)
    data = dj.data or {}
    flags = flag_table()
    for key, value in data.items():
        ev = [dj.evidence(f'"{key}": {short(json.dumps(value), 120)}', dj.line_of(key))]
        if key == "insecure-registry" or (key not in DAEMON_JSON_KEYS and key in flags):
            yield _flag_named_key(dj, key, data, ev)
        elif key not in DAEMON_JSON_KEYS:
            yield _unknown_key(key, ev)
        elif not _type_ok(DAEMON_JSON_KEYS[key], value):
            yield _wrong_type(dj, key, value, ev)
        elif engine_version is not None:
            yield from _engine_version_keys(key, engine_version, ev)
    for key in dj.duplicate_keys:
        yield finding("DD106", f'"{key}" appears twice', f'"{key}" appears more than once in {dj.path}; only '
                      "the last one counts.", severity=Severity.WARNING,
                      evidence=[dj.evidence(f'"{key}"', dj.line_of(key))], params={"key": key})


def _byte_order_mark(dj: DaemonJson, engine_version: tuple[int, int, int] | None) -> Finding:
    known = f"engine {'.'.join(map(str, engine_version))}" if engine_version else "the engine version is unknown"
    return finding(
        "DD106", f"{dj.path} starts with an invisible UTF-8 byte-order mark",
        f"{dj.path} begins with the bytes EF BB BF (a UTF-8 byte-order mark, added by some Windows editors). "
        "dockerd before 23.0 refuses such a file (invalid character 'ï' looking for beginning of value) and "
        f"does not start; 23.0 and later ignore the mark ({known}).",
        severity=Severity.ERROR if engine_version else Severity.WARNING,
        evidence=[dj.evidence("bytes 1-3: EF BB BF (byte-order mark)", 1)],
        fix=Fix("Save the file without the byte-order mark",
                (ReplaceFileContent(dj.path, (dj.text or "").removeprefix("\ufeff")),)),
        params={"key": None, "bom": True})


def _json_parse_error(dj: DaemonJson) -> Finding:
    repaired = repair_json(dj.text or "")
    fix = (Fix("Replace it with the repaired file", (ReplaceFileContent(dj.path, repaired),))
           if repaired else Fix("Correct the JSON" + (f" at line {dj.error_line}, column {dj.error_col}"
                                                      if dj.error_line else "")))
    snippet = ""
    if dj.text and dj.error_line:
        lines = dj.text.splitlines()
        if 0 < dj.error_line <= len(lines):
            snippet = lines[dj.error_line - 1]
    return finding("DD106", f"{dj.path} does not parse",
                   f"{dj.path} is not valid JSON: {dj.error}" +
                   (f" (line {dj.error_line}, column {dj.error_col})" if dj.error_line else "") +
                   "; dockerd will not start with it.",
                   evidence=[dj.evidence(short(snippet, 200) or (dj.error or ""), dj.error_line)], fix=fix)


def _flag_named_key(dj: DaemonJson, key: str, data: dict[str, object], ev: list[Evidence]) -> Finding:
    target = json_key(key)
    return finding(
        "DD106", f'"{key}" is silently ignored',
        f'"{key}" is the flag\'s name, not a daemon.json key: dockerd accepts it and ignores it. '
        f'The key is "{target}".',
        severity=Severity.WARNING if target not in ("insecure-registries",) else Severity.ERROR,
        evidence=ev,
        fix=Fix(f'Rename "{key}" to "{target}"',
                (JsonRenameKey(dj.path, key, target) if target not in data
                 else JsonRemoveKey(dj.path, key), ServiceAction("reload"))),
        params={"key": key},
    )


def _unknown_key(key: str, ev: list[Evidence]) -> Finding:
    path = ev[0].source
    guess = difflib.get_close_matches(key, list(DAEMON_JSON_KEYS), n=1, cutoff=0.75)
    return finding(
        "DD106", f'unknown key "{key}"',
        f'"{key}" is not a daemon.json option; dockerd refuses to start: "the following directives '
        f'don\'t match any configuration option: {key}".' + (f' Did you mean "{guess[0]}"?' if guess else ""),
        evidence=ev,
        fix=Fix(f'Rename "{key}" to "{guess[0]}"', (JsonRenameKey(path, key, guess[0]),))
        if guess else Fix(f'Remove "{key}"', (JsonRemoveKey(path, key),)),
        params={"key": key},
    )


def _wrong_type(dj: DaemonJson, key: str, value: object, ev: list[Evidence]) -> Finding:
    kind = DAEMON_JSON_KEYS[key]
    new: object | None = None
    if kind == "list" and isinstance(value, str):
        new, how = [value], f'Make "{key}" a list'
    elif kind == "list" and isinstance(value, list):
        new, how = [v for v in value if isinstance(v, str)], f'Keep only the strings in "{key}"'
    else:
        how = f'Give "{key}" a JSON {_KIND_WORDS.get(kind, kind)}, or remove it'
    if isinstance(value, list):
        bad = next((i for i, v in enumerate(value) if not isinstance(v, str)), 0)
        what = f"element {bad + 1} is {_json_kind(value[bad])}"
    else:
        what = f"it is {_json_kind(value)}"
    return finding(
        "DD106", f'"{key}" has the wrong type',
        f'"{key}" must be a JSON {_KIND_WORDS.get(kind, kind)}, but {what}; '
        f"dockerd refuses to start (json: cannot unmarshal).",
        evidence=ev,
        fix=Fix(how, (JsonSetKey(dj.path, key, new),)) if new is not None
        else Fix(how, (JsonRemoveKey(dj.path, key),)),
        params={"key": key},
    )


def _engine_version_keys(key: str, engine_version: tuple[int, int, int], ev: list[Evidence]) -> Iterator[Finding]:
    removed = REMOVED_JSON_KEYS.get(key)
    if removed and engine_version[:2] >= removed[0]:
        yield finding(
            "DD106", f'"{key}" was removed in engine {removed[0][0]}.{removed[0][1]}',
            f'"{key}" no longer exists in engine {".".join(map(str, engine_version))}; use {removed[1]}.',
            evidence=ev, params={"key": key},
        )
    added = ADDED_IN.get(key)
    if added and engine_version[:2] < added:
        yield finding(
            "DD106", f'"{key}" needs engine {added[0]}.{added[1]} or newer',
            f'engine {".".join(map(str, engine_version))} does not know "{key}" and refuses to start.',
            evidence=ev, params={"key": key},
        )
