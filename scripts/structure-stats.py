#!/usr/bin/env python3
"""Structure numbers for dockerdoctor/ and rules/: rule lengths, long modules, imports that run back up.

    python3 scripts/structure-stats.py            # text
    python3 scripts/structure-stats.py --json     # the same numbers as JSON

Plain `ast` walks over the files as they are; nothing is imported or run.

* rule length: for every function decorated with ``rule(...)``, the *code* lines run from the first
  statement after the docstring to the function's last line; "in finding/Fix" is the share of those
  lines inside calls named ``finding``, ``Fix`` or ``Finding``.
* modules: line counts of every ``.py`` file (``wc -l``), the longest first.
* layers: each top-level part of the package (``model``, ``sources``, ``probe``, ``facts``, ...) is given
  a floor in ``LAYERS``; an import from a lower floor to a higher one "runs back up". Lazy imports
  (inside a function) count too, and are marked.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lower number = lower floor. A module may import from its own floor or below.
LAYERS: dict[str, int] = {
    "errors": 0,
    "model": 0,
    "net": 0,
    "registry": 1,  # serve-registry: an island that only needs errors
    "sources": 1,
    "probe": 2,
    "facts": 3,
    "knowledge": 3,
    "runtimes": 4,
    "engine": 5,
    "rules_support": 5,
    "fixes": 6,
    "rules": 7,
    "report": 7,
    "collect": 7,
    "explain": 8,
    "resolve": 8,
    "cli": 9,
    "__main__": 10,
    "__init__": 0,
}

# Imports that point up on purpose: rule discovery imports the rule packs by name, as plugins.
ALLOWED_UP = {("engine", "dockerdoctor.rules")}


def part_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "rules":
        return "rules"
    first = rel.parts[1]
    return first[:-3] if first.endswith(".py") else first


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "rules":
        parts = ["dockerdoctor", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def files() -> list[Path]:
    out = sorted((ROOT / "dockerdoctor").rglob("*.py")) + sorted((ROOT / "rules").rglob("*.py"))
    return [p for p in out if "__pycache__" not in p.parts]


def _decorator_name(d: ast.expr) -> str:
    if isinstance(d, ast.Call):
        d = d.func
    if isinstance(d, ast.Attribute):
        return d.attr
    if isinstance(d, ast.Name):
        return d.id
    return ""


def _call_name(c: ast.Call) -> str:
    f = c.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def rule_lengths() -> list[dict[str, object]]:
    rows = []
    for path in sorted((ROOT / "rules").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            rule_deco = [d for d in node.decorator_list if _decorator_name(d) == "rule"]
            if not rule_deco:
                continue
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]
            if not body:
                continue
            start, end = body[0].lineno, node.end_lineno or body[-1].lineno
            code = set(range(start, end + 1))
            inside: set[int] = set()
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call) and _call_name(sub) in ("finding", "Fix", "Finding"):
                    inside |= set(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
            d = rule_deco[0]
            rid = ""
            if isinstance(d, ast.Call) and d.args and isinstance(d.args[0], ast.Constant):
                rid = str(d.args[0].value)
            rows.append({
                "id": rid,
                "function": node.name,
                "place": f"{path.relative_to(ROOT)}:{node.lineno}",
                "code": len(code),
                "total": (node.end_lineno or 0) - min([node.lineno, *[x.lineno for x in node.decorator_list]]) + 1,
                "in_finding_or_fix": len(code & inside),
            })
    return rows


def imports_up() -> list[dict[str, object]]:
    out = []
    for path in files():
        me = part_of(path)
        my_floor = LAYERS.get(me)
        if my_floor is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        lazy_nodes = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        lazy_nodes.add(id(sub))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
                if node.module == "dockerdoctor":
                    targets = [f"dockerdoctor.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                parts = t.split(".")
                if parts[0] != "dockerdoctor" or len(parts) < 2:
                    continue
                other = parts[1]
                floor = LAYERS.get(other)
                if other == me or floor is None or (me, ".".join(parts[:2])) in ALLOWED_UP:
                    continue
                if floor > my_floor:
                    out.append({
                        "from": f"{path.relative_to(ROOT)}:{node.lineno}",
                        "from_part": me,
                        "to": t,
                        "lazy": id(node) in lazy_nodes,
                    })
    return out


def module_sizes() -> list[tuple[str, int]]:
    sizes = [(str(p.relative_to(ROOT)), len(p.read_text().splitlines())) for p in files()]
    return sorted(sizes, key=lambda x: -x[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    rules = rule_lengths()
    codes = [int(r["code"]) for r in rules]  # type: ignore[call-overload]
    sizes = module_sizes()
    up = imports_up()
    summary = {
        "rules": len(rules),
        "rule_code_median": statistics.median(codes) if codes else 0,
        "rule_code_max": max(codes) if codes else 0,
        "rules_over_30": sum(c > 30 for c in codes),
        "rules_over_60": sum(c > 60 for c in codes),
        "share_in_finding_or_fix": round(sum(int(r["in_finding_or_fix"]) for r in rules) / max(1, sum(codes)), 3),  # type: ignore[call-overload]
        "modules": len(sizes),
        "modules_over_600": sum(n > 600 for _, n in sizes),
        "lines": sum(n for _, n in sizes),
        "imports_up": len(up),
    }
    if a.json:
        json.dump({"summary": summary, "rules": rules, "modules": sizes, "imports_up": up}, sys.stdout, indent=1)
        print()
        return 0
    print("summary:", ", ".join(f"{k}={v}" for k, v in summary.items()))
    print(f"\nlongest rules (code lines / with docstring / inside finding-Fix calls), top {a.top}:")
    for r in sorted(rules, key=lambda r: -int(r["code"]))[: a.top]:  # type: ignore[call-overload]
        print(f"  {r['code']:4} {r['total']:4} {r['in_finding_or_fix']:4}  {r['id']} {r['function']}  {r['place']}")
    print(f"\nlongest modules, top {a.top}:")
    for name, n in sizes[: a.top]:
        print(f"  {n:5}  {name}")
    print("\nimports that run back up (lower floor -> higher floor):")
    for u in up or [{"from": "none", "to": "", "lazy": False}]:
        print(f"  {u['from']} -> {u['to']}{'  (lazy)' if u['lazy'] else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
