"""Rule registry, discovery, selection and execution.

A rule is a plain function whose parameters name the facts it needs (insights-core style):

    @rule("DD102", "env-file-not-loaded", category="daemon", severity=Severity.ERROR, title="...")
    def env_file_not_loaded(docker_unit, env_files, effective_config=None): ...

A parameter with a default of None is optional: the rule runs without it. When a required fact
is unavailable, the rule is skipped with the fact's reason, never reported as passed.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import pkgutil
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable, InputError, Skip
from dockerdoctor.facts import Facts
from dockerdoctor.model import Evidence, Finding, RuleResult, RuleStatus, Severity

CATEGORIES: dict[str, str] = {
    "engine": "Docker engine",
    "daemon": "Daemon configuration",
    "endpoint": "Registry endpoints",
    "network": "Registry host: firewall, SELinux, ports",
    "registry": "Registry containers",
    "runtime": "Other runtimes: containerd CRI, nerdctl, k3s, dockerd's containerd store",
}


@dataclass
class RuleSpec:
    id: str
    name: str
    title: str
    category: str
    severity: Severity
    func: Callable[..., Any]
    required: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    live_only: bool = False
    validates_config: bool = False  # the fixer runs it on a candidate configuration before writing it
    repair_order: int | None = None  # the fixer applies these repairs first, lowest first

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.func.__doc__ or "")

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "category": self.category,
            "severity": self.severity.label,
            "facts": self.required + self.optional,
            "live_only": self.live_only,
        }


_RULES: dict[str, RuleSpec] = {}


def rule(rule_id: str, name: str, *, category: str, severity: Severity, title: str,
         live_only: bool = False, validates_config: bool = False,
         repair_order: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a rule. `validates_config`: the fixer runs it on a candidate configuration (a new
    error it finds there stops the fix). `repair_order`: a repair of the configuration files
    themselves, applied before the others (lowest first), so later edits meet a parsable file."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        required = [p.name for p in sig.parameters.values() if p.default is inspect.Parameter.empty]
        optional = [p.name for p in sig.parameters.values() if p.default is not inspect.Parameter.empty]
        _RULES[rule_id] = RuleSpec(rule_id, name, title, category, severity, fn, required, optional, live_only,
                                   validates_config, repair_order)
        return fn

    return deco


_discovered = False


def _other_rule_packs_declared() -> bool:
    """Does any installed distribution declare a dockerdoctor.rules entry point besides the core one?
    A scan of the entry_points.txt files on sys.path (a millisecond) spares importing importlib.metadata
    (10-20 ms) on every run when, as usual, there is no third-party pack."""
    import glob
    import os
    import sys

    for base in sys.path:
        if not base or not os.path.isdir(base):
            continue
        for path in glob.glob(os.path.join(glob.escape(base), "*.*-info", "entry_points.txt")):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read(256 * 1024)
            except OSError:
                continue
            section = text.partition("[dockerdoctor.rules]")[2].split("\n[", 1)[0] if "[dockerdoctor.rules]" in text \
                else ""
            values = [line.partition("=")[2].strip() for line in section.splitlines() if "=" in line]
            if any(v != "dockerdoctor.rules" for v in values):
                return True
    return False


def discover() -> dict[str, RuleSpec]:
    """Import the bundled rules and any third-party packs (entry-point group dockerdoctor.rules)."""
    global _discovered
    if not _discovered:
        import dockerdoctor.rules as core

        for mod in pkgutil.iter_modules(core.__path__):
            importlib.import_module(f"dockerdoctor.rules.{mod.name}")
        try:
            if _other_rule_packs_declared():
                from importlib.metadata import entry_points

                for ep in entry_points(group="dockerdoctor.rules"):
                    if ep.value != "dockerdoctor.rules":
                        ep.load()
        except Exception:  # a broken third-party pack must not take the core down
            pass
        check_rule_parameters(_RULES.values())
        _discovered = True
    return dict(sorted(_RULES.items()))


def check_rule_parameters(specs: Iterable[RuleSpec]) -> None:
    """Every parameter of a bundled rule names a fact: a misspelt one fails here (and in CI), not as a
    CRASHED rule on a user's host. A third-party pack's rule with an unknown one stays, and is reported
    as crashed when it runs."""
    from dockerdoctor.facts import known_facts

    known = set(known_facts())
    for spec in specs:
        if not spec.func.__module__.startswith("dockerdoctor.rules"):
            continue
        unknown = [p for p in spec.required + spec.optional if p not in known]
        if unknown:
            raise ValueError(f"rule {spec.id} ({spec.func.__module__}.{spec.func.__name__}) names no fact "
                             f"{', '.join(map(repr, unknown))}; known facts: {', '.join(sorted(known))}")


def resolve_selection(patterns: Iterable[str], known: Iterable[str]) -> set[str]:
    """Ids, prefixes such as DD1, or `all`; case-insensitive. Unknown patterns are an input error."""
    known = list(known)
    out: set[str] = set()
    for raw in patterns:
        for pat in (p.strip().upper() for p in raw.split(",")):
            if not pat:
                continue
            if pat == "ALL":
                out.update(known)
                continue
            match = {k for k in known if k.upper().startswith(pat)}
            if not match:
                raise InputError(f"no rule matches {pat!r} (see `dockerdoctor rules`)")
            out.update(match)
    return out


_BASIS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("dockerdoctor_rule_basis", default=None)


def passed_on(text: str) -> None:
    """Called by a rule while it runs: one fact its verdict rests on ("10.0.0.5:5000 probed live: HTTPS").
    A passed rule shows these under -v, so a reader sees what was looked at, not only a tick."""
    basis = _BASIS.get()
    if basis is not None and text not in basis and len(basis) < 20:
        basis.append(text)


def basis_count() -> int:
    """How many facts the running rule has recorded with passed_on (0 outside a rule)."""
    basis = _BASIS.get()
    return len(basis) if basis is not None else 0


def run_rules(facts: Facts, select: set[str] | None = None, ignore: set[str] | None = None) -> list[RuleResult]:
    rules = discover()
    results: list[RuleResult] = []
    for rid, spec in rules.items():
        if select is not None and rid not in select:
            results.append(RuleResult(rid, spec.name, spec.category, RuleStatus.NOT_SELECTED))
            continue
        results.append(_run_one(spec, facts, ignore or set()))
    _rehome(results)
    return results


def run_rule(rule_id: str, facts: Facts, ignore: set[str] | None = None) -> RuleResult:
    """One rule's result, as run_rules gets it, before findings under another rule's id move to that rule."""
    return _run_one(discover()[rule_id], facts, ignore or set())


def _rehome(results: list[RuleResult]) -> None:
    """A rule may report a finding under another rule's id (DD213 reports deletes-disabled as DD406).
    It belongs to that rule's result, so it shows under that rule's category, and it is dropped when
    that rule was not selected (`--select DD2` must not let a DD406 through)."""
    by_id = {r.rule_id: r for r in results}
    for r in results:
        foreign = [f for f in r.findings if f.rule_id != r.rule_id]
        if not foreign:
            continue
        r.findings = [f for f in r.findings if f.rule_id == r.rule_id]
        if not r.findings and r.status == RuleStatus.FAILED:
            r.status = RuleStatus.PASSED
        for f in foreign:
            home = by_id.get(f.rule_id)
            if home is None or home.status in (RuleStatus.NOT_SELECTED, RuleStatus.CRASHED):
                continue
            home.findings.append(f)
            if home.status in (RuleStatus.PASSED, RuleStatus.SKIPPED):
                home.status, home.reason = RuleStatus.FAILED, ""


def _run_one(spec: RuleSpec, facts: Facts, ignore: set[str]) -> RuleResult:
    res = RuleResult(spec.id, spec.name, spec.category, RuleStatus.PASSED)
    start = time.perf_counter()
    token = _BASIS.set(res.basis)
    try:
        if spec.live_only and not facts.live:
            raise Skip("only checkable on a live host")
        kwargs: dict[str, Any] = {}
        for name in spec.required:
            kwargs[name] = facts.get(name)
        for name in spec.optional:
            kwargs[name] = facts.optional(name)
        produced = spec.func(**kwargs)
        findings: list[Finding] = list(produced or [])
        for f in findings:
            f.rule_id = f.rule_id or spec.id
            _bound(f)
            if spec.id in ignore and f.severity == Severity.ERROR:
                f.demoted_from = f.severity
                f.severity = Severity.WARNING
        res.findings = findings
        res.status = RuleStatus.FAILED if findings else RuleStatus.PASSED
    except (FactUnavailable, Skip) as exc:
        res.status, res.reason = RuleStatus.SKIPPED, exc.reason
    except Exception as exc:  # a rule bug must not hide the other rules' findings
        res.status = RuleStatus.CRASHED
        res.reason = f"{exc.__class__.__name__}: {exc}"
        res.findings = []
        res.traceback = traceback.format_exc()
    finally:
        _BASIS.reset(token)
    res.seconds = time.perf_counter() - start
    return res


MAX_MESSAGE = 4000
MAX_EVIDENCE = 25
MAX_EVIDENCE_TEXT = 1000
MAX_PARAM_ITEMS = 100


def _bound(f: Finding) -> None:
    """Keep one finding readable whatever the input: a daemon.json of 200,000 entries must not make a
    200,000-line report."""
    if len(f.message) > MAX_MESSAGE:
        f.message = f.message[: MAX_MESSAGE - 1] + "…"
    if len(f.evidence) > MAX_EVIDENCE:
        more = len(f.evidence) - MAX_EVIDENCE + 1
        f.evidence = f.evidence[: MAX_EVIDENCE - 1] + [Evidence("…", f"{more} more pieces of evidence not shown")]
    for key, value in list(f.params.items()):
        if isinstance(value, list) and len(value) > MAX_PARAM_ITEMS:
            f.params[key] = value[:MAX_PARAM_ITEMS]
            f.params[f"{key}_total"] = len(value)  # how many there were
    if any(len(e.text) > MAX_EVIDENCE_TEXT for e in f.evidence):
        f.evidence = [Evidence(e.source, e.text[: MAX_EVIDENCE_TEXT - 1] + "…", e.line)
                      if len(e.text) > MAX_EVIDENCE_TEXT else e for e in f.evidence]


def finding(spec_id: str, title: str, message: str, **kw: Any) -> Finding:
    """Build a Finding with the rule's default severity (override with severity=...)."""
    spec = _RULES[spec_id]
    severity = kw.pop("severity", spec.severity)
    return Finding(spec_id, severity, title, message, **kw)


def config_validation_rules() -> set[str]:
    """The rules that judge a candidate configuration (`validates_config=True`)."""
    return {rid for rid, spec in discover().items() if spec.validates_config}


def repair_rank(rule_id: str) -> int:
    """Where a rule's repair goes in a fix run: its `repair_order`, else after all of those."""
    spec = discover().get(rule_id)
    if spec is not None and spec.repair_order is not None:
        return spec.repair_order
    return 1_000
