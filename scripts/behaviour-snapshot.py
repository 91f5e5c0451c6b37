#!/usr/bin/env python3
"""What dockerdoctor says about every fixture host, written to a folder, to compare before and after a change.

    python3 scripts/behaviour-snapshot.py OUT              # write OUT/<fixture>.<kind>
    python3 scripts/behaviour-snapshot.py OUT --diff REF   # write OUT, then diff it against REF (exit 1 on a change)
    python3 scripts/behaviour-snapshot.py --python .venv/bin/python OUT

For every fixtures/hosts/<name>/expected.json the host is copied to a temp dir, expected.json's mtimes are
applied (as tests/test_fixtures_hosts.py does), and these run with expected.json's args:

* ``check --root DIR -f json``   -> <name>.json
* ``check --root DIR``           -> <name>.txt
* ``check --root DIR -v``        -> <name>.v.txt
* ``fix --root DIR`` (dry run), only where the args name a registry -> <name>.fix.txt

Each file holds the exit code and stdout+stderr. What changes from run to run is masked: the temp
root's path, the JSON report's ``generated`` and ``seconds``, and millisecond timings in the text.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ROOT / "fixtures" / "hosts"

_MASKS = [
    (re.compile(r'"generated": "[^"]*"'), '"generated": "<T>"'),
    (re.compile(r'"seconds": [0-9.e+-]+'), '"seconds": <S>'),
    (re.compile(r"\(\d+ ms\)"), "(<N> ms)"),
    (re.compile(r"\b\d+(\.\d+)? ?ms\b"), "<N> ms"),
]


def _prepare(name: str, tmp: Path) -> tuple[Path, dict]:
    expected = json.loads((HOSTS / name / "expected.json").read_text())
    dst = tmp / name
    shutil.copytree(HOSTS / name, dst, symlinks=True)
    (dst / "expected.json").unlink()
    for rel, iso in (expected.get("mtimes") or {}).items():
        t = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
        target = dst / rel
        if target.exists():
            os.utime(target, (t, t), follow_symlinks=False)
    return dst, expected


def _run(python: str, argv: list[str], root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT", "NO_COLOR", "CI")}
    env["COLUMNS"] = "120"
    p = subprocess.run([python, "-m", "dockerdoctor", *argv], capture_output=True, text=True, env=env,
                       cwd=root.parent, timeout=300)
    out = f"exit {p.returncode}\n--- stdout\n{p.stdout}--- stderr\n{p.stderr}"
    out = out.replace(str(root), "<ROOT>")
    for rx, repl in _MASKS:
        out = rx.sub(repl, out)
    return out


def snapshot(out: Path, python: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.parent.name for p in HOSTS.glob("*/expected.json"))
    written = 0
    with tempfile.TemporaryDirectory(prefix="dd-snap-") as tmpd:
        for name in names:
            root, expected = _prepare(name, Path(tmpd))
            args = [str(a) for a in expected.get("args", [])]
            runs = {
                "json": ["check", "--root", str(root), *args, "-f", "json", "--no-color"],
                "txt": ["check", "--root", str(root), *args, "--no-color"],
                "v.txt": ["check", "--root", str(root), *args, "-v", "--no-color"],
            }
            if any(a in ("--registry", "-r") for a in args):
                fix_args = [a for i, a in enumerate(args)
                            if a in ("--registry", "-r") or (i and args[i - 1] in ("--registry", "-r"))]
                runs["fix.txt"] = ["fix", "--root", str(root), *fix_args]
            for kind, argv in runs.items():
                (out / f"{name}.{kind}").write_text(_run(python, argv, root))
                written += 1
    print(f"{len(names)} fixtures, {written} files in {out}")
    return written


def diff(out: Path, ref: Path) -> int:
    mine = {p.name for p in out.iterdir()}
    theirs = {p.name for p in ref.iterdir()}
    changed = 0
    for name in sorted(mine | theirs):
        a = (ref / name).read_text().splitlines(keepends=True) if name in theirs else []
        b = (out / name).read_text().splitlines(keepends=True) if name in mine else []
        if a != b:
            changed += 1
            sys.stdout.writelines(difflib.unified_diff(a, b, f"{ref.name}/{name}", f"{out.name}/{name}"))
    print(f"{len(mine | theirs)} files compared, {changed} differ" if changed else
          f"{len(mine | theirs)} files compared, identical")
    return 1 if changed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--diff", type=Path, metavar="REF", help="a folder written earlier by this script")
    ap.add_argument("--python", default=sys.executable,
                    help="the interpreter whose dockerdoctor runs (default: this one)")
    ns = ap.parse_args()
    snapshot(ns.out, os.path.abspath(ns.python) if os.sep in ns.python else ns.python)
    return diff(ns.out, ns.diff) if ns.diff else 0


if __name__ == "__main__":
    sys.exit(main())
