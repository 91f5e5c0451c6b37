"""The knowledge base itself: patterns (real wordings, each with its source), access-log rules,
rule titles and fix templates, loaded from data/errors.yaml (or its compiled JSON twin).

Nothing here knows about the command line; `dockerdoctor.knowledge.events` parses text into
events with it, and `dockerdoctor.knowledge.reason` ranks causes over those events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

NONE = "NONE"  # the "rule" of a pattern whose honest answer is: not a private-registry fault
KB_FILE = "data/errors.yaml"
COMPILED_FILE = "data/errors-compiled.json"
PHRASE_HEAD = 12  # a cut line must still hold this much of the phrase
PHRASE_MIN = 14  # literal runs at least this long can be recognised when a line is cut inside them


@dataclass(frozen=True)
class Pattern:
    id: str
    rule: str
    also: tuple[str, ...]
    weight: float  # specificity: 10 names the cause exactly, 3-5 is a generic wrapper
    source: str  # the regular expression, compiled on first use (most lines never need most patterns)
    seen: str
    examples: tuple[str, ...]
    note: str
    suppresses: tuple[str, ...] = ()
    equally: tuple[str, ...] = ()  # rules the text fits just as well (an ambiguous wording)
    layer: str = ""  # tcp, tls, http, auth, config, engine, registry, host
    phrases: tuple[str, ...] = ()  # long literal runs (lower case), for lines truncated inside them

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.source)

    @property
    def not_private(self) -> bool:
        return self.rule == NONE


@dataclass(frozen=True)
class AccessRule:
    """What one access-log request says: method, path class and status point at a rule."""

    id: str
    rule: str
    weight: float
    methods: tuple[str, ...]  # () = any
    path: str  # regex over the request path (without the query)
    status: tuple[int, ...]
    also: tuple[str, ...]
    seen: str
    note: str
    examples: tuple[str, ...]
    via: str = ""  # "proxy": only a proxy's line means it; "registry": not a proxy's line; "": either

    @property
    def path_regex(self) -> re.Pattern[str]:
        return _compiled(self.path)


@dataclass
class KnowledgeBase:
    patterns: list[Pattern]
    rules: dict[str, dict[str, str]]
    access: list[AccessRule] = field(default_factory=list)
    # prefilter: a line is only matched against patterns whose literal keywords it contains
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)  # pattern id -> keywords (lower case)
    _gate: re.Pattern[str] | None = None  # any keyword at all (compiled on first use: ~20 ms)
    by_id: dict[str, Pattern] = field(default_factory=dict)
    unkeyed: list[Pattern] = field(default_factory=list)  # patterns without keywords: tried on every line
    all_keywords: tuple[str, ...] = ()
    phrase_heads: tuple[str, ...] = ()  # the first PHRASE_HEAD characters of every phrase

    @property
    def gate(self) -> re.Pattern[str] | None:
        if self._gate is None and self.all_keywords:
            self._gate = re.compile(_trie_regex(sorted(self.all_keywords, key=len, reverse=True)))
        return self._gate

    def candidates(self, line: str, gated: bool | None = None) -> list[Pattern]:
        """The patterns worth trying on the line; `gated` says whether the keyword gate already
        passed (True), failed (False) or must be checked here (None)."""
        low = line.lower()
        if gated is False or (gated is None and self.gate is not None and not self.gate.search(low)):
            return self.unkeyed
        return [p for p in self.patterns
                if not self.keywords.get(p.id) or any(k in low for k in self.keywords[p.id])]

    def passes_gate(self, line: str) -> bool:
        return self.gate is None or bool(self.gate.search(line.lower()))

    def scan(self, lines: list[str]) -> tuple[set[int], set[int]]:
        """(lines holding a pattern keyword, lines holding a context marker: an access-log 4xx/5xx,
        a config key, a command, a file name, or the start of a long phrase that a cut line may end
        in), found in one pass over the whole text."""
        text = "\n".join(lines).lower()
        starts, pos = [], 0
        for line in lines:
            starts.append(pos)
            pos += len(line) + 1
        hot: set[int] = set()
        marked: set[int] = set()
        scanner = _scanner(self.all_keywords, self.phrase_heads)
        li, n = 0, len(starts)
        for end, is_kw in scanner.iter(text) if scanner is not None else ():  # ends come in order
            while li + 1 < n and starts[li + 1] <= end:
                li += 1
            (hot if is_kw else marked).add(li)
        if scanner is None:  # no pyahocorasick: the (slower) regex gate per line
            for i, line in enumerate(lines):
                low = line.lower()
                if self.gate is None or self.gate.search(low):
                    hot.add(i)
                if any(m in low for m in MARKERS):
                    marked.add(i)
        return hot, marked


# context markers (lower case): where a line may be an access-log error, a config line, a command
MARKERS = (
    'http/1.1" 4', 'http/1.1" 5', 'http/1.0" 4', 'http/1.0" 5', 'http/2.0" 4', 'http/2.0" 5', 'http/2" 4',
    'http/2" 5', "http/1.1 4", "http/1.1 5", "http/1.0 4", "http/1.0 5", "http.response.status=4",
    "http.response.status=5", "insecure-registr", "docker_opts", "options=", "execstart", "environmentfile",
    "environment=", "insecure =", "insecure=", "location =", "location=", "registry-mirrors", '"hosts"',
    "proxies", "data-root", "other_args", "add_registry", "dockerd_opts", "docker ", "podman ", "skopeo ",
    "buildah ", "nerdctl ", "ctr ", "crictl ", "kubectl ", "k3s ", "curl ", "wget ", "systemctl ", "journalctl ",
    "helm ", "service ", "dockerd ", "docker-compose ", "_proxy=", "_proxy =", "cat /", "==> /", "# /", "less /",
    "vi /", "nano /", "/etc/", "/lib/",
)


@functools.lru_cache(maxsize=4)
def _scanner(keywords: tuple[str, ...], heads: tuple[str, ...] = ()) -> Any:
    """An Aho-Corasick automaton over the keywords, the markers and the phrase heads
    (pyahocorasick), or None."""
    try:
        import ahocorasick  # type: ignore[import-not-found]
    except ImportError:
        return None
    a = ahocorasick.Automaton()
    for m in (*MARKERS, *heads):
        a.add_word(m, False)
    for k in keywords:
        a.add_word(k, True)  # a keyword that is also a marker counts as a keyword
    a.make_automaton()
    return a


@functools.cache
def _compiled(source: str) -> re.Pattern[str]:
    return re.compile(source, re.I)


# ------------------------------------------------------------------------------------------ keywords


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


def _parsed(regex: str) -> Any:
    from re import _parser as P  # type: ignore[attr-defined]

    return P.parse(regex, re.I)


def _keywords(regex: str) -> tuple[str, ...]:
    """Literal strings of which every match contains at least one; () when none can be derived."""
    try:
        from re import _constants as C  # type: ignore[attr-defined]

        parsed = _parsed(regex)
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


def _phrases(regex: str) -> tuple[str, ...]:
    """Every literal run of PHRASE_MIN+ characters anywhere in the regex (lower case)."""
    try:
        from re import _constants as C  # type: ignore[attr-defined]

        parsed = _parsed(regex)
    except Exception:  # noqa: BLE001
        return ()
    out: list[str] = []

    def walk(seq: Any) -> None:
        items = list(seq)
        out.extend(r for r in _literal_runs(items) if len(r) >= PHRASE_MIN)
        for op, av in items:
            if op is C.BRANCH:
                for alt in av[1]:
                    walk(alt)
            elif op is C.SUBPATTERN:
                walk(av[-1])

    walk(parsed)
    return tuple(dict.fromkeys(out))


def derive_keywords(pats: list[Pattern]) -> dict[str, tuple[str, ...]]:
    return {p.id: _keywords(p.source) for p in pats}


def derive_phrases(pats: list[Pattern]) -> dict[str, tuple[str, ...]]:
    return {p.id: _phrases(p.source) for p in pats}


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


# ------------------------------------------------------------------------------------------ loading


def kb_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parse_yaml(text: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    # libyaml's C loader parses the knowledge base in ~15 ms; the pure-Python one takes ~300 ms
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data: dict[str, Any] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return data


def _kb_text() -> str:
    return resources.files("dockerdoctor").joinpath(KB_FILE).read_text(encoding="utf-8")


def _compiled_kb(text: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """errors.yaml as data plus the derived keywords and phrases, from data/errors-compiled.json when
    that was made from this very errors.yaml: importing PyYAML, parsing and deriving (every regex
    parsed) would cost ~80 ms at every start. A test keeps the file current; regenerate it with
    `python -m dockerdoctor.knowledge --compile`. A stale or missing file only costs time."""
    try:
        cached = json.loads(resources.files("dockerdoctor").joinpath(COMPILED_FILE).read_text(encoding="utf-8"))
        if cached.get("sha256") == kb_digest(text):
            return cached["data"], {"keywords": cached["keywords"], "phrases": cached["phrases"]}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        pass
    return _parse_yaml(text), None


def _pattern(p: dict[str, Any], phrases: tuple[str, ...] = ()) -> Pattern:
    return Pattern(
        id=p["id"], rule=p["rule"], also=tuple(p.get("also") or ()), weight=float(p.get("weight", 5)),
        source=p["regex"], seen=p.get("seen", ""), examples=tuple(p.get("examples") or ()),
        note=p.get("note", ""), suppresses=tuple(p.get("suppresses") or ()),
        equally=tuple(p.get("equally") or ()), layer=p.get("layer", ""), phrases=phrases,
    )


def _access_rule(a: dict[str, Any]) -> AccessRule:
    status = a["status"] if isinstance(a["status"], list) else [a["status"]]
    return AccessRule(
        id=a["id"], rule=a["rule"], weight=float(a.get("weight", 5)), methods=tuple(a.get("methods") or ()),
        path=a.get("path", ""), status=tuple(int(s) for s in status), also=tuple(a.get("also") or ()),
        seen=a.get("seen", ""), note=a.get("note", ""), examples=tuple(a.get("examples") or ()),
        via=a.get("via", ""),
    )


@functools.lru_cache(maxsize=1)
def load_kb() -> KnowledgeBase:
    data, derived = _compiled_kb(_kb_text())
    raw = data["patterns"]
    if derived is None:
        bare = [_pattern(p) for p in raw]
        derived = {"keywords": derive_keywords(bare), "phrases": derive_phrases(bare)}
    pats = [_pattern(p, tuple(derived["phrases"].get(p["id"], ()))) for p in raw]
    kb = KnowledgeBase(pats, {k: dict(v) for k, v in (data.get("rules") or {}).items()},
                       [_access_rule(a) for a in data.get("access") or ()])
    kb.keywords = {k: tuple(v) for k, v in derived["keywords"].items()}
    kb.by_id = {p.id: p for p in pats}
    kb.unkeyed = [p for p in pats if not kb.keywords.get(p.id)]
    allkw = sorted({k for ks in kb.keywords.values() for k in ks}, key=len, reverse=True)
    kb.all_keywords = tuple(allkw)
    kb.phrase_heads = tuple(sorted({ph[:PHRASE_HEAD] for p in pats for ph in p.phrases}))
    return kb


def write_compiled_file() -> str:
    from pathlib import Path

    text = _kb_text()
    data = _parse_yaml(text)
    bare = [_pattern(p) for p in data["patterns"]]
    body = {"sha256": kb_digest(text), "generated_from": KB_FILE, "data": data,
            "keywords": {k: list(v) for k, v in derive_keywords(bare).items()},
            "phrases": {k: list(v) for k, v in derive_phrases(bare).items()}}
    out = Path(str(resources.files("dockerdoctor").joinpath(COMPILED_FILE)))
    out.write_text(json.dumps(body, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(out)
