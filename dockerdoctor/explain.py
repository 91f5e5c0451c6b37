"""`dockerdoctor explain "<error text>"`: what an error message means, from a knowledge base of
real wordings (dockerdoctor/data/errors.yaml) that docker, dockerd, the CNCF registry, the old
python registry, firewalld, SELinux's audit log and systemd have printed across versions.

The text is matched line by line. Each matching pattern scores its rule (and, lower, the rules it
names as "also possible"); the answer is the ranked rules with the parameters pulled out of the
text (registry, host, port, file) and the fix written for them. A text that matches nothing gets
an honest "no known cause" and the closest guesses, marked as guesses.

The offline DD2xx rules use `scan_lines` on the docker journal, so the same knowledge decides.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from dockerdoctor.facts import HostPort

SCHEMA_VERSION = 1
ALSO_FACTOR = 0.45  # an "also possible" rule scores this share of the pattern's weight
GUESS_MIN = 0.35  # similarity below which a guess is not worth showing


@dataclass(frozen=True)
class Pattern:
    id: str
    rule: str
    also: tuple[str, ...]
    weight: float
    source: str  # the regular expression, compiled on first use (most lines never need most patterns)
    seen: str
    examples: tuple[str, ...]
    note: str
    suppresses: tuple[str, ...] = ()
    equally: tuple[str, ...] = ()  # rules the text fits just as well (an ambiguous wording)

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.source)


@dataclass
class KnowledgeBase:
    patterns: list[Pattern]
    rules: dict[str, dict[str, str]]
    # prefilter: a line is only matched against patterns whose literal keywords it contains
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pattern id -> keywords (lower case)
    gate: re.Pattern[str] | None = None  # any keyword at all

    def candidates(self, line: str) -> list[Pattern]:
        low = line.lower()
        if self.gate is not None and not self.gate.search(low):
            return [p for p in self.patterns if not self.keywords.get(p.id)]
        return [p for p in self.patterns
                if not self.keywords.get(p.id) or any(k in low for k in self.keywords[p.id])]


@functools.cache
def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source, re.I)


def _literal_runs(items: Any) -> list[str]:
    """Runs of literal characters in a parsed regex sequence (lower case)."""
    from re import _constants as C  # type: ignore[attr-defined]

    runs, cur = [], ""
    for op, av in items:
        if op is C.LITERAL:
            cur += chr(av).lower()
        else:
            runs.append(cur)
            cur = ""
    runs.append(cur)
    return [r for r in runs if r]


def _keywords(regex: str) -> tuple[str, ...]:
    """Literal strings of which every match contains at least one; () when none can be derived."""
    try:
        from re import _constants as C  # type: ignore[attr-defined]
        from re import _parser as P  # type: ignore[attr-defined]

        parsed = P.parse(regex, re.I)
    except Exception:  # noqa: BLE001 - no prefilter for this pattern then
        return ()

    def branch(av: Any) -> tuple[str, ...] | None:
        out: list[str] = []
        for alt in av[1]:
            got = of(alt)
            if not got:
                return None
            out.extend(got)
        return tuple(out)

    def of(seq: Any) -> tuple[str, ...] | None:
        items = list(seq)
        best = max(_literal_runs(items), key=len, default="")
        if len(best) >= 4:
            return (best,)
        for op, av in items:  # a group every match must pass through, all of whose branches have keywords
            got = branch(av) if op is C.BRANCH else of(av[-1]) if op is C.SUBPATTERN else None
            if got:
                return got
        return (best,) if len(best) >= 3 else None

    return of(parsed) or ()


@dataclass
class Hit:
    pattern: Pattern
    line_no: int
    line: str
    params: dict[str, Any]


@dataclass
class RuleMatch:
    rule_id: str
    score: float
    hits: list[Hit] = field(default_factory=list)  # hits where this rule is the primary cause
    also_hits: list[Hit] = field(default_factory=list)  # hits that name it as also possible
    params: dict[str, Any] = field(default_factory=dict)
    guess: bool = False

    @property
    def primary(self) -> bool:
        return bool(self.hits)


# ------------------------------------------------------------------------------------------ loading


@functools.lru_cache(maxsize=1)
def load_kb() -> KnowledgeBase:
    text = resources.files("dockerdoctor").joinpath("data/errors.yaml").read_text(encoding="utf-8")
    data, keywords = _compiled_kb(text)
    pats = []
    for p in data["patterns"]:
        pats.append(Pattern(
            id=p["id"], rule=p["rule"], also=tuple(p.get("also") or ()), weight=float(p.get("weight", 5)),
            source=p["regex"], seen=p.get("seen", ""), examples=tuple(p.get("examples") or ()),
            note=p.get("note", ""), suppresses=tuple(p.get("suppresses") or ()),
            equally=tuple(p.get("equally") or ()),
        ))
    kb = KnowledgeBase(pats, {k: dict(v) for k, v in (data.get("rules") or {}).items()})
    kb.keywords = keywords if keywords is not None else derive_keywords(pats)
    allkw = sorted({k for ks in kb.keywords.values() for k in ks}, key=len, reverse=True)
    kb.gate = re.compile(_trie_regex(allkw)) if allkw else None
    return kb


def _parse_yaml(text: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    # libyaml's C loader parses the knowledge base in ~15 ms; the pure-Python one takes ~300 ms
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return data


COMPILED_FILE = "data/errors-compiled.json"


def derive_keywords(pats: list[Pattern]) -> dict[str, tuple[str, ...]]:
    return {p.id: _keywords(p.source) for p in pats}


def kb_digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _compiled_kb(text: str) -> tuple[dict[str, Any], dict[str, tuple[str, ...]] | None]:
    """errors.yaml as data plus the prefilter keywords, from data/errors-compiled.json when that was
    made from this very errors.yaml: importing PyYAML, parsing and deriving the keywords (every regex
    parsed) would cost ~80 ms at every start. A test keeps the file current; regenerate it with
    `python -m dockerdoctor.explain --compile`. A stale or missing file only costs time."""
    import json

    try:
        cached = json.loads(resources.files("dockerdoctor").joinpath(COMPILED_FILE).read_text(encoding="utf-8"))
        if cached.get("sha256") == kb_digest(text):
            return cached["data"], {k: tuple(v) for k, v in cached["keywords"].items()}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return _parse_yaml(text), None


def write_compiled_file() -> str:
    import json
    from pathlib import Path

    text = resources.files("dockerdoctor").joinpath("data/errors.yaml").read_text(encoding="utf-8")
    data = _parse_yaml(text)
    pats = [Pattern(id=p["id"], rule=p["rule"], also=(), weight=0.0, source=p["regex"], seen="", examples=(),
                    note="") for p in data["patterns"]]
    body = {"sha256": kb_digest(text), "generated_from": "data/errors.yaml", "data": data,
            "keywords": {k: list(v) for k, v in derive_keywords(pats).items()}}
    out = Path(str(resources.files("dockerdoctor").joinpath(COMPILED_FILE)))
    out.write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(out)


def _trie_regex(words: list[str]) -> str:
    """One regex for many literals, shaped as a trie so that the engine dispatches on characters
    instead of trying every alternative at every position (about 20x faster here)."""
    trie: dict[str, Any] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        if "" in node and len(node) == 1:
            return ""
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


# ------------------------------------------------------------------------------------------ parameters

_URL = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*)"
                  r"(?::(?P<port>\d{1,5}))?(?P<path>/[^\s\"\\']*)?")
_ADDR_RES = [
    re.compile(r"pinging container registry (?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"The push refers to (?:a )?repository \[(?P<host>[\w.\-]+):(?P<port>\d+)/"),
    re.compile(r"--insecure-registry[ =](?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"certs\.d/(?P<host>[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"dial tcp (?P<host>\[[^\]]+\]|[\w.\-]+):(?P<port>\d+)"),
    re.compile(r"listen tcp4? (?P<host>[\w.\-]*):(?P<port>\d+)"),
]
_FILE_RES = [
    re.compile(r"with file (?P<file>/[^:\s]+):"),
    re.compile(r"No such file or directory: '(?P<file>[^']+)'"),
    re.compile(r"open (?P<file>/[^:\s\"]+):"),
]
_DOCKER_HUB = {"registry-1.docker.io", "index.docker.io", "auth.docker.io", "docker.io"}


def extract_params(line: str) -> dict[str, Any]:
    """host, port, registry and file named in one line of text."""
    out: dict[str, Any] = {}
    best = None
    for m in _URL.finditer(line):
        path = m.group("path") or ""
        host = m.group("host").strip("[]").lower()
        if host.startswith("%2f"):  # a unix socket in a URL
            continue
        score = 2 if re.match(r"/v[12]/", path) else 1
        if best is None or score > best[0]:
            best = (score, host, m.group("port"), m.group("scheme"))
    if best is not None and best[1] not in _DOCKER_HUB:
        out["host"] = best[1]
        if best[2]:
            out["port"] = int(best[2])
        out["scheme"] = best[3]
    if "port" not in out:
        for rx in _ADDR_RES:
            am = rx.search(line)
            if am is None:
                continue
            m = am
            if m and m.group("host") and m.group("host").lower() not in _DOCKER_HUB:
                host = m.group("host").strip("[]").lower()
                if "host" in out and out["host"] != host and rx.pattern.startswith("dial"):
                    continue  # the name resolved to an address; keep the name
                out.setdefault("host", host)
                out["port"] = int(m.group("port"))
                break
    if out.get("host") and out.get("port"):
        out["registry"] = str(HostPort(out["host"], out["port"]))
    for rx in _FILE_RES:
        fm = rx.search(line)
        if fm:
            out["file"] = fm.group("file")
            break
    return out


def _group_params(m: re.Match[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.groupdict().items():
        if v:
            out.setdefault(re.sub(r"\d+$", "", k), v)
    return out


# ------------------------------------------------------------------------------------------ matching


def iter_hits(lines: Iterable[str], kb: KnowledgeBase | None = None) -> Iterator[Hit]:
    kb = kb or load_kb()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        found = [(p, m) for p in kb.candidates(line) if (m := p.regex.search(line))]
        if not found:
            continue
        suppressed = {s for p, _ in found for s in p.suppresses}
        params = None
        for p, m in found:
            if p.id in suppressed:
                continue
            if params is None:
                params = extract_params(line)
            gp = _group_params(m)
            merged = {**params, **{k: v for k, v in gp.items() if k not in ("host", "port") or k not in params}}
            yield Hit(p, i, line, merged)


def recent_hits(lines: list[str], per_key: int = 3) -> list[Hit]:
    """Hits in a long log, in file order, keeping only the last `per_key` of each (pattern, host,
    port): memory stays bounded when a journal repeats one error 50 000 times."""
    kb = load_kb()
    counts: dict[tuple[str, Any, Any], int] = {}
    out: list[Hit] = []
    for idx in range(len(lines) - 1, -1, -1):
        for hit in iter_hits((lines[idx],), kb):
            key = (hit.pattern.id, hit.params.get("host"), hit.params.get("port"))
            if counts.get(key, 0) >= per_key:
                continue
            counts[key] = counts.get(key, 0) + 1
            hit.line_no = idx + 1
            out.append(hit)
    out.reverse()
    return out


def match_text(text: str, kb: KnowledgeBase | None = None) -> list[RuleMatch]:
    """The rules that fit the text, best first."""
    kb = kb or load_kb()
    by_rule: dict[str, RuleMatch] = {}
    contrib: dict[str, list[float]] = {}
    for hit in iter_hits(text.splitlines(), kb):
        p = hit.pattern
        for rid in (p.rule, *p.equally):
            rm = by_rule.setdefault(rid, RuleMatch(rid, 0.0))
            rm.hits.append(hit)
            contrib.setdefault(rid, []).append(p.weight)
        for other in p.also:
            ro = by_rule.setdefault(other, RuleMatch(other, 0.0))
            ro.also_hits.append(hit)
            contrib.setdefault(other, []).append(p.weight * ALSO_FACTOR)
    context: dict[str, Any] = {}
    if by_rule:  # a registry named on another line (e.g. "The push refers to repository [HOST:PORT/x]")
        for line in text.splitlines():
            ctx = extract_params(line)
            if ctx.get("registry"):
                context = {k: ctx[k] for k in ("registry", "host", "port") if k in ctx}
                break
    for rid, rm in by_rule.items():
        ws = sorted(contrib[rid], reverse=True)
        rm.score = round(ws[0] + 0.05 * sum(ws[1:]), 2)
        for h in rm.hits + rm.also_hits:
            for k, v in h.params.items():
                rm.params.setdefault(k, v)
        if "registry" not in rm.params and context and rm.params.get("host") in (None, context["host"]):
            rm.params.update(context)
    return sorted(by_rule.values(), key=lambda r: (-r.score, not r.primary, r.rule_id))


def best_rules(text: str) -> set[str]:
    """The rules with the best score for the text (several when a wording is ambiguous)."""
    ms = match_text(text)
    if not ms:
        return set()
    return {m.rule_id for m in ms if m.score == ms[0].score and m.primary}


def guesses(text: str, kb: KnowledgeBase | None = None, limit: int = 3) -> list[tuple[str, float, str]]:
    """(rule, similarity, closest example) for a text nothing matched."""
    kb = kb or load_kb()
    words = _words(text)
    if not words:
        return []
    best: dict[str, tuple[float, str]] = {}
    for p in kb.patterns:
        for ex in p.examples:
            ew = _words(ex)
            if not ew:
                continue
            jac = len(words & ew) / len(words | ew)
            seq = difflib.SequenceMatcher(None, text.lower()[:400], ex.lower()[:400]).ratio()
            sim = round(max(jac, seq * 0.9), 2)
            if sim > best.get(p.rule, (0.0, ""))[0]:
                best[p.rule] = (sim, ex)
    ranked = sorted(((r, s, ex) for r, (s, ex) in best.items() if s >= GUESS_MIN), key=lambda t: -t[1])
    return ranked[:limit]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9_]{2,}", text.lower()) if w not in _STOP}


_STOP = {"the", "and", "for", "get", "http", "https", "error", "response", "from", "daemon", "with", "not",
         "level", "msg", "time", "this", "that", "you", "your"}


# ------------------------------------------------------------------------------------------ for rules


def scan_lines(lines: Iterable[str], rule_id: str, addr: HostPort | None = None
               ) -> Iterator[tuple[int, str, Hit]]:
    """(line number, line, hit) for lines whose primary rule is rule_id and that name addr."""
    yield from filter_hits(iter_hits(lines), rule_id, addr)


def filter_hits(hits: Iterable[Hit], rule_id: str, addr: HostPort | None = None
                ) -> Iterator[tuple[int, str, Hit]]:
    """The hits (from iter_hits, possibly cached) whose primary rule is rule_id and that name addr."""
    want_host = addr.host.lower() if addr else None
    want_port = addr.port if addr else None
    kb = load_kb()
    rx_ids = {p.id for p in kb.patterns if p.rule == rule_id or rule_id in p.equally}
    if not rx_ids:
        return
    for hit in hits:
        if hit.pattern.id not in rx_ids:
            continue
        if want_host is not None:
            if hit.params.get("host") != want_host:
                continue
            if want_port is not None and hit.params.get("port") not in (None, want_port):
                continue
        yield hit.line_no, hit.line, hit


# ------------------------------------------------------------------------------------------ rendering


def _rule_meta(rule_id: str, kb: KnowledgeBase) -> dict[str, str]:
    meta = {"name": "", "title": kb.rules.get(rule_id, {}).get("title", ""), "known_rule": "no"}
    try:
        from dockerdoctor.engine import _RULES

        spec = _RULES.get(rule_id)
        if spec is not None:
            meta.update(name=spec.name, title=spec.title, known_rule="yes")
    except ImportError:  # pragma: no cover
        pass
    return meta


_PLACEHOLDER = {"registry": "HOST:PORT", "host": "HOST", "port": "PORT", "file": "FILE"}


def render_fix(rule_id: str, params: dict[str, Any], kb: KnowledgeBase | None = None) -> str:
    kb = kb or load_kb()
    template = kb.rules.get(rule_id, {}).get("fix", "")
    values = {**_PLACEHOLDER, **{k: str(v) for k, v in params.items()}}
    if "file" not in params and rule_id in ("DD104", "DD106"):
        values["file"] = "/etc/docker/daemon.json"
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), " ".join(template.split()))


def explain_result(text: str) -> dict[str, Any]:
    kb = load_kb()
    try:
        from dockerdoctor.engine import discover

        discover()
    except Exception:  # noqa: BLE001 - titles then come from the knowledge base
        pass
    matches = match_text(text, kb)
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "known": bool(matches), "matches": [], "guesses": []}
    for rm in matches:
        meta = _rule_meta(rm.rule_id, kb)
        params = {k: v for k, v in rm.params.items() if k in ("registry", "host", "port", "file", "scheme",
                                                               "helper", "comm", "tcontext", "perm", "directive",
                                                               "value", "flag", "socket", "proxy")}
        out["matches"].append({
            "rule": rm.rule_id, "name": meta["name"], "title": meta["title"], "score": rm.score,
            "role": "cause" if rm.primary else "also possible",
            "params": params, "fix": render_fix(rm.rule_id, params, kb),
            "evidence": [{"line": h.line_no, "text": h.line.strip()[:300], "pattern": h.pattern.id,
                          "seen": h.pattern.seen, "note": h.pattern.note} for h in (rm.hits or rm.also_hits)[:3]],
        })
    if not matches:
        for rid, sim, ex in guesses(text, kb):
            meta = _rule_meta(rid, kb)
            out["guesses"].append({"rule": rid, "name": meta["name"], "title": meta["title"], "similarity": sim,
                                   "closest_known_text": ex, "fix": render_fix(rid, {}, kb), "guess": True})
    return out


def render_text(res: dict[str, Any]) -> str:
    lines: list[str] = []
    if res["known"]:
        n = len(res["matches"])
        lines.append(f"{n} known cause{'s' if n != 1 else ''} fit{'s' if n == 1 else ''} this text (best first):")
        for i, m in enumerate(res["matches"], 1):
            name = f" {m['name']}" if m["name"] else ""
            lines.append(f"\n{i}. {m['rule']}{name}: {m['title']}  [{m['role']}, score {m['score']:g}]")
            for ev in m["evidence"]:
                lines.append(f"   matched line {ev['line']}: {ev['text'][:160]}")
                if ev["note"]:
                    lines.append(f"   means: {ev['note']}")
                if ev["seen"]:
                    lines.append(f"   seen: {ev['seen']}")
            if m["params"]:
                lines.append("   parameters: " + ", ".join(f"{k}={v}" for k, v in m["params"].items()))
            lines.append(f"   fix: {m['fix']}")
        top = res["matches"][0]
        reg = top["params"].get("registry")
        lines.append(f"\nMore: dockerdoctor explain {top['rule']}"
                     + (f"; probe it: dockerdoctor check --registry {reg}" if reg else ""))
    else:
        lines.append("No known cause: this text matches nothing in the knowledge base.")
        if res["guesses"]:
            lines.append("Closest guesses (NOT matches; similarity of wording only):")
            for g in res["guesses"]:
                name = f" {g['name']}" if g["name"] else ""
                lines.append(f"  guess: {g['rule']}{name}: {g['title']}  (similarity {g['similarity']:.2f})")
                lines.append(f"         closest known text: {g['closest_known_text'][:140]}")
        lines.append("If this came from a push or pull, `dockerdoctor check --registry HOST:PORT` probes the "
                     "registry layer by layer.")
    return "\n".join(lines) + "\n"


def explain_text(text: str, fmt: str = "text") -> int:
    """CLI entry point. Exit 0 when a known cause fits, 1 when none does, 2 for empty input."""
    import sys

    if not text.strip():
        sys.stderr.write("dockerdoctor: error: no text to explain (pass the message, or - to read stdin)\n")
        return 2
    res = explain_result(text)
    if fmt == "json":
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(res))
    return 0 if res["known"] else 1


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--compile"]:
        print(write_compiled_file())
