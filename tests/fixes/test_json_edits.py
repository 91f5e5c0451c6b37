"""daemon.json edits change only what they must: a compact file stays compact, `café` stays café, other
keys keep their lines, and the result always parses to what the fix means (else the object is rewritten)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dockerdoctor.fixes.edits import apply_edit
from dockerdoctor.model import JsonListAdd, JsonRemoveKey, JsonRenameKey, JsonSetKey

P = "/etc/docker/daemon.json"


def test_compact_stays_compact_and_non_ascii_stays() -> None:
    text = '{"debug":true,"labels":["café"]}\n'
    out = apply_edit(JsonListAdd(P, "insecure-registries", "10.0.0.5:5000"), text)
    assert out == '{"debug":true,"labels":["café"],"insecure-registries":["10.0.0.5:5000"]}\n'


def test_only_the_lines_of_the_change_differ() -> None:
    text = ('{\n  "debug": true,\n  "labels": ["café", "b"],\n  "insecure-registries": [\n    "a:1"\n  ],\n'
            '  "log-opts": {"max-size": "10m"}\n}\n')
    out = apply_edit(JsonListAdd(P, "insecure-registries", "10.0.0.5:5000"), text)
    assert out == text.replace('    "a:1"\n', '    "a:1",\n    "10.0.0.5:5000"\n')
    renamed = apply_edit(JsonRenameKey(P, "debug", "dbg"), text)
    assert renamed == text.replace('"debug"', '"dbg"')
    removed = apply_edit(JsonRemoveKey(P, "labels"), text)
    assert removed == text.replace('  "labels": ["café", "b"],\n', "")


json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)
values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                          max_size=3), max_leaves=8)
keys = st.sampled_from(["debug", "insecure-registries", "labels", "café", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=4), st.sampled_from([None, 2, 4, "\t"]), keys, values,
       st.sampled_from(["set", "add", "remove", "rename"]))
def test_any_edit_means_what_the_fix_says(data: dict, indent, key: str, value, kind: str) -> None:
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    op = {"set": JsonSetKey(P, key, value), "add": JsonListAdd(P, key, "10.0.0.5:5000"),
          "remove": JsonRemoveKey(P, key), "rename": JsonRenameKey(P, key, "renamed")}[kind]
    expected = dict(data)
    if kind == "set":
        expected[key] = value
    elif kind == "add":
        cur = expected.get(key)
        if cur is not None and not isinstance(cur, (list, str)):
            return  # not a list: the edit refuses (UneditableFile)
        expected[key] = ([cur] if isinstance(cur, str) else list(cur or []))
        if "10.0.0.5:5000" not in expected[key]:
            expected[key].append("10.0.0.5:5000")
    elif kind == "remove":
        expected.pop(key, None)
    elif key in expected:
        v = expected.pop(key)
        expected["renamed"] = v if not isinstance(expected.get("renamed"), list) else expected["renamed"]
    out = apply_edit(op, text)
    if kind != "rename" or "renamed" not in data:
        assert json.loads(out) == expected
    if indent is None and kind in ("set", "remove") and json.loads(out) != data:
        assert "\n" not in out.rstrip("\n")  # a one-line file stays one line
