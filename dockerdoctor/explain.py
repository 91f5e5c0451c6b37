"""`dockerdoctor explain "<error text>"`: what a pasted error (with its context) means.

The knowledge lives in `dockerdoctor.knowledge` (patterns with their sources, the parser into
events, the reasoning over them); this module is the command: it reads the input (the END of a
long stdin, where the newest journal lines are), asks the knowledge base, and prints the answer
with the lines it used, or JSON (docs/explain-schema.json). Terminal escapes and control bytes in
the input never reach the terminal raw.

The names older code imports from here (load_kb, match_text, scan_lines, filter_hits,
recent_hits, extract_params, ...) stay available.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from typing import IO, Any

from dockerdoctor.knowledge.base import (  # noqa: F401 - re-exported for older imports
    COMPILED_FILE,
    NONE,
    KnowledgeBase,
    Pattern,
    _parse_yaml,
    derive_keywords,
    kb_digest,
    load_kb,
    write_compiled_file,
)
from dockerdoctor.knowledge.events import (  # noqa: F401 - re-exported
    Event,
    Hit,
    clean,
    extract_params,
    filter_hits,
    iter_hits,
    parse,
    printable,
    recent_hits,
    scan_lines,
)
from dockerdoctor.knowledge.reason import ALSO_FACTOR, Diagnosis, RuleMatch, diagnose  # noqa: F401

SCHEMA_VERSION = 2
GUESS_MIN = 0.35  # similarity below which a guess is not worth showing
STDIN_LIMIT = 1024 * 1024  # the tail of stdin that is read: the newest lines of a journal


def match_text(text: str, kb: KnowledgeBase | None = None) -> list[RuleMatch]:
    """The rules that fit the text, best first."""
    return diagnose(text, kb).matches


def best_rules(text: str) -> set[str]:
    """The rules with the best score for the text (several when a wording is ambiguous); empty when
    the honest answer is "no known cause"."""
    d = diagnose(text)
    if not d.known or not d.matches:
        return set()
    top = d.matches[0].score
    return {m.rule_id for m in d.matches if m.score == top and m.primary}


def guesses(text: str, kb: KnowledgeBase | None = None, limit: int = 3) -> list[tuple[str, float, str]]:
    """(rule, similarity, closest example) for a text nothing matched."""
    kb = kb or load_kb()
    text = text[-4000:]
    words = _words(text)
    if not words:
        return []
    best: dict[str, tuple[float, str]] = {}
    head = text.lower()[:400]
    pending = []
    for p in kb.patterns:
        if p.not_private:
            continue
        for ex in p.examples:
            ew = _words(ex)
            if not ew:
                continue
            jac = len(words & ew) / len(words | ew)
            sm = difflib.SequenceMatcher(None, head, ex.lower()[:400])
            pending.append((max(jac, sm.quick_ratio() * 0.9), jac, sm, p.rule, ex))
    # quick_ratio bounds ratio from above: the quadratic ratio() only for the few that could win
    pending.sort(key=lambda t: -t[0])
    for bound, jac, sm, rule, ex in pending[:6]:
        if bound < GUESS_MIN:
            break
        sim = round(max(jac, sm.ratio() * 0.9), 2)
        if sim > best.get(rule, (0.0, ""))[0]:
            best[rule] = (sim, ex)
    ranked = sorted(((r, s, ex) for r, (s, ex) in best.items() if s >= GUESS_MIN), key=lambda t: -t[1])
    return ranked[:limit]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9_]{2,}", text.lower()) if w not in _STOP}


_STOP = {"the", "and", "for", "get", "http", "https", "error", "response", "from", "daemon", "with", "not",
         "level", "msg", "time", "this", "that", "you", "your"}


# ------------------------------------------------------------------------------------------ rendering


def _rule_meta(rule_id: str, kb: KnowledgeBase) -> dict[str, str]:
    meta = {"name": "", "title": kb.rules.get(rule_id, {}).get("title", ""), "known_rule": "no"}
    from dockerdoctor.engine import discover  # here: the knowledge base itself stands without the rules

    spec = discover().get(rule_id)
    if spec is not None:
        meta.update(name=spec.name, title=spec.title, known_rule="yes")
    return meta


_PLACEHOLDER = {"registry": "HOST:PORT", "host": "HOST", "port": "PORT", "file": "FILE"}
_PARAM_KEYS = ("registry", "host", "port", "file", "scheme", "helper", "comm", "tcontext", "perm", "directive",
               "value", "flag", "socket", "proxy", "method", "path", "status")


def render_fix(rule_id: str, params: dict[str, Any], kb: KnowledgeBase | None = None) -> str:
    kb = kb or load_kb()
    template = kb.rules.get(rule_id, {}).get("fix", "")
    values = {**_PLACEHOLDER, **{k: str(v) for k, v in params.items()}}
    if "file" not in params and rule_id in ("DD104", "DD106"):
        values["file"] = "/etc/docker/daemon.json"
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), " ".join(template.split()))


def _evidence(h: Hit) -> dict[str, Any]:
    return {"line": h.line_no, "line_end": h.line_end or h.line_no, "text": h.line.strip()[:300],
            "pattern": h.pattern.id, "seen": h.pattern.seen, "note": h.pattern.note, "truncated": h.truncated}


def explain_result(text: str, *, dropped_bytes: int = 0) -> dict[str, Any]:
    kb = load_kb()
    try:
        from dockerdoctor.engine import discover

        discover()
    except Exception:  # noqa: BLE001 - titles then come from the knowledge base
        pass
    d = diagnose(text, kb)
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "verdict": d.verdict, "known": d.known,
        "input": {"lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
                  "bytes": len(text.encode("utf-8", "replace")), "dropped_bytes": dropped_bytes},
        "matches": [], "not_private": [], "events": [], "guesses": [],
    }
    used: set[int] = set()
    if d.known:
        for i, rm in enumerate(d.matches):
            meta = _rule_meta(rm.rule_id, kb)
            params = {k: v for k, v in rm.params.items() if k in _PARAM_KEYS}
            ev = [_evidence(h) for h in (rm.hits or rm.also_hits)[:3]]
            ctx = [{"line": e.line_no, "line_end": e.line_end, "kind": e.kind, "text": e.text.strip()[:300],
                    "file": e.file} for e in rm.context[:3]]
            out["matches"].append({
                "rule": rm.rule_id, "name": meta["name"], "title": meta["title"], "score": rm.score,
                "role": "cause" if rm.primary else "also possible",
                "confidence": "cause" if (i == 0 and d.verdict == "cause") else "possible",
                "params": params, "fix": render_fix(rm.rule_id, params, kb),
                "evidence": ev, "context": ctx, "reason": rm.reason,
            })
            if i < 3:
                used.update(int(x["line"]) for x in ev)
                used.update(int(str(x["line"])) for x in ctx)
    for h in d.not_private[:5]:
        out["not_private"].append(_evidence(h))
        used.add(h.line_no)
    for e in d.events:
        if e.line_no in used or (e.kind in ("access", "config", "command") and len(out["events"]) < 50):
            out["events"].append({**e.as_dict(), "used": e.line_no in used, "text": e.text.strip()[:200]})
    if not d.known and not d.not_private:
        for rid, sim, ex in guesses(text, kb):
            meta = _rule_meta(rid, kb)
            out["guesses"].append({"rule": rid, "name": meta["name"], "title": meta["title"], "similarity": sim,
                                   "closest_known_text": ex, "fix": render_fix(rid, {}, kb), "guess": True})
    return out


def _not_private_lines(events: list[dict[str, Any]]) -> list[str]:
    """The pasted lines that name a fault outside private registries, and what each means."""
    out = []
    for ev in events:
        out.append(f"  {_line_ref(ev)}: {printable(ev['text'][:160])}")
        if ev["note"]:
            out.append(f"  means: {ev['note']}")
    return out


def _line_ref(e: dict[str, Any]) -> str:
    a, b = e["line"], e.get("line_end") or e["line"]
    return f"line {a}" if a == b else f"lines {a}-{b}"


def render_text(res: dict[str, Any]) -> str:
    lines: list[str] = []
    if res["input"].get("dropped_bytes"):
        lines.append(f"(input over {STDIN_LIMIT // 1024} KiB: read its last {STDIN_LIMIT // 1024} KiB, dropped the "
                     f"first {res['input']['dropped_bytes']} bytes)")
    if res["known"]:
        n = len(res["matches"])
        head = "Cause" if res["verdict"] == "cause" else "Possible causes"
        lines.append(f"{head}: {n} known rule{'s' if n != 1 else ''} fit{'s' if n == 1 else ''} this text "
                     "(best first):")
        for i, m in enumerate(res["matches"], 1):
            name = f" {m['name']}" if m["name"] else ""
            label = ("cause" if m["confidence"] == "cause" else "possible cause") if m["role"] == "cause" \
                else "also possible"
            lines.append(f"\n{i}. {m['rule']}{name}: {m['title']}  [{label}, score {m['score']:g}]")
            if m["reason"]:
                lines.append(f"   because: {m['reason']}")
            for c in m["context"]:
                where = f" ({c['file']})" if c.get("file") else ""
                lines.append(f"   context {_line_ref(c)}{where}: {printable(c['text'][:160])}")
            shown = {e["pattern"] for mm in res["matches"][: i - 1] for e in mm["evidence"]}
            for ev in m["evidence"]:
                cut = " (cut short)" if ev.get("truncated") else ""
                lines.append(f"   matched {_line_ref(ev)}{cut}: {printable(ev['text'][:160])}")
                if ev["pattern"] in shown:
                    continue  # its note and source were shown above
                if ev["note"]:
                    lines.append(f"   means: {ev['note']}")
                if ev["seen"]:
                    lines.append(f"   seen: {ev['seen']}")
            if m["params"]:
                lines.append("   parameters: " + printable(", ".join(f"{k}={v}" for k, v in m["params"].items())))
            lines.append(f"   fix: {printable(m['fix'])}")
        if res["not_private"]:
            lines.append("\nAlso in the text, not a private-registry fault:")
            lines += _not_private_lines(res["not_private"])
        top = res["matches"][0]
        reg = top["params"].get("registry")
        lines.append(f"\nMore: dockerdoctor explain {top['rule']}"
                     + (f"; probe it: dockerdoctor check --registry {printable(str(reg))}" if reg else ""))
    else:
        if res["not_private"]:
            lines.append("No known cause: this is not a private-registry fault.")
            lines += _not_private_lines(res["not_private"])
        else:
            lines.append("No known cause: this text matches nothing in the knowledge base.")
        if res["guesses"]:
            lines.append("Closest guesses (NOT matches; similarity of wording only):")
            for g in res["guesses"]:
                name = f" {g['name']}" if g["name"] else ""
                lines.append(f"  guess: {g['rule']}{name}: {g['title']}  (similarity {g['similarity']:.2f})")
                lines.append(f"         closest known text: {printable(g['closest_known_text'][:140])}")
        if not res["not_private"]:
            lines.append("If this came from a push or pull, `dockerdoctor check --registry HOST:PORT` probes the "
                         "registry layer by layer.")
    return "\n".join(lines) + "\n"


def read_tail(stream: IO[bytes], limit: int = STDIN_LIMIT) -> tuple[str, int]:
    """The last `limit` bytes of a stream (memory stays bounded), decoded, starting at a line
    boundary when something was dropped; and how many bytes were dropped."""
    buf = bytearray()
    dropped = 0
    while True:
        chunk = stream.read(256 * 1024)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            cut = len(buf) - limit
            dropped += cut
            del buf[:cut]
    if dropped:
        nl = buf.find(b"\n")
        if 0 <= nl < len(buf) - 1:
            dropped += nl + 1
            del buf[: nl + 1]
    return bytes(buf).decode("utf-8", "replace"), dropped


def explain_text(text: str, fmt: str = "text", *, dropped_bytes: int = 0) -> int:
    """CLI entry point. Exit 0 when a known cause fits, 1 when none does, 2 for empty input."""
    if not clean(text).strip():
        sys.stderr.write("dockerdoctor: error: no text to explain (pass the message, or - to read stdin)\n")
        return 2
    res = explain_result(text, dropped_bytes=dropped_bytes)
    if fmt == "json":
        sys.stdout.write(json.dumps(res, indent=2) + "\n")  # JSON escapes every control byte
    else:
        sys.stdout.write(render_text(res))
    return 0 if res["known"] else 1


def explain_stdin(fmt: str = "text") -> int:
    text, dropped = read_tail(sys.stdin.buffer)
    if dropped:
        sys.stderr.write(f"dockerdoctor: note: input over {STDIN_LIMIT // 1024} KiB; explained its last "
                         f"{STDIN_LIMIT // 1024} KiB (the newest lines), dropped the first {dropped} bytes\n")
    return explain_text(text, fmt, dropped_bytes=dropped)


if __name__ == "__main__":
    if sys.argv[1:] == ["--compile"]:
        print(write_compiled_file())
