"""`dockerdoctor report FILES_OR_DIRS`: many hosts' JSON reports merged into one fleet view.

Inputs, each a file or a directory searched for `*.json` (recursively, sorted):

* a `check --format json` report (schema 1), as `check -o` or the Ansible module's `output` wrote it;
* an Ansible result holding one (`ansible -t DIR` tree files, a registered result saved as JSON):
  `ansible_facts.dockerdoctor`; an unreachable or failed result without it is a host that could not
  be checked, named by the file (the tree names files by inventory host);
* anything else (another JSON file, a fleet report) is ignored and listed as such.

A host's name is the report's `host.name`, else the file name without `.json` (always the file
name for Ansible results: the inventory name is what the user knows). When two inputs name the same
host, the newer report (`generated`) wins and the other is listed as superseded.

The fleet view (docs/fleet-report-schema.json) has: per host its status; per finding (rule id,
severity, title) the hosts that have it; per root cause (rule id) a count of hosts and findings; per
registry the hosts checked against it and those with findings naming it; and the hosts that could
not be checked, with the reason. Every input is bounded (size, count, nesting) and every string
from it is treated as hostile by the renderers.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerdoctor import __version__
from dockerdoctor.errors import InputError

FLEET_SCHEMA_VERSION = 1
FLEET_KIND = "dockerdoctor-fleet-report"
MAX_INPUT_BYTES = 32 * 1024 * 1024
MAX_INPUTS = 10_000
SEVERITIES = ("error", "warning", "info")
_SEV_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES), 1)}  # info 1, warning 2, error 3


@dataclass
class HostEntry:
    name: str
    source: str
    report: dict[str, Any] | None = None
    reason: str = ""  # why it could not be checked (report is None)
    via: str = "report"  # report | ansible


@dataclass
class Inputs:
    hosts: list[HostEntry] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.json") if q.is_file())
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
        if len(out) > MAX_INPUTS:
            raise InputError(f"more than {MAX_INPUTS} input files; merge fewer at a time")
    return out


def _is_report(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("schema_version") == 1
        and isinstance(doc.get("tool"), dict)
        and doc["tool"].get("name") == "dockerdoctor"
        and isinstance(doc.get("findings"), list)
        and isinstance(doc.get("rules"), list)
    )


def _str(v: Any, limit: int = 2000) -> str:
    return (v if isinstance(v, str) else "" if v is None else str(v))[:limit]


def _stem(path: Path) -> str:
    return path.name[: -len(".json")] if path.name.endswith(".json") else path.name


def classify(doc: Any, path: Path) -> tuple[str, HostEntry | None, str]:
    """('host', entry, '') for a host (checked or not), ('ignored', None, reason) otherwise."""
    if _is_report(doc):
        host = doc.get("host") if isinstance(doc.get("host"), dict) else {}
        return "host", HostEntry(_str(host.get("name"), 253) or _stem(path), str(path), doc), ""
    if isinstance(doc, dict) and isinstance(doc.get("ansible_facts"), dict) and _is_report(
            doc["ansible_facts"].get("dockerdoctor")):
        return "host", HostEntry(_stem(path), str(path), doc["ansible_facts"]["dockerdoctor"], via="ansible"), ""
    if isinstance(doc, dict) and _is_report(doc.get("dockerdoctor")):  # a saved ansible_facts
        return "host", HostEntry(_stem(path), str(path), doc["dockerdoctor"], via="ansible"), ""
    if isinstance(doc, dict) and (doc.get("unreachable") is True or doc.get("failed") is True):
        msg = " ".join(_str(doc.get("msg") or "no message").split())
        what = "unreachable" if doc.get("unreachable") else "failed"
        return "host", HostEntry(_stem(path), str(path), None, f"{what}: {msg}"[:500], via="ansible"), ""
    if isinstance(doc, dict) and doc.get("kind") == FLEET_KIND:
        return "ignored", None, "a fleet report, not a host's report"
    return "ignored", None, "not a dockerdoctor report"


def load(paths: Iterable[Path]) -> Inputs:
    inputs = Inputs()
    for path in _files(paths):
        try:
            if path.stat().st_size > MAX_INPUT_BYTES:
                inputs.hosts.append(HostEntry(_stem(path), str(path), None, "report larger than 32 MiB"))
                continue
            doc = json.loads(path.read_bytes())
        except OSError as exc:
            inputs.hosts.append(HostEntry(_stem(path), str(path), None, f"unreadable: {exc.strerror}"))
            continue
        except (ValueError, RecursionError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            inputs.hosts.append(HostEntry(_stem(path), str(path), None, f"not JSON: {first}"))
            continue
        kind, entry, reason = classify(doc, path)
        if entry is not None:
            inputs.hosts.append(entry)
        else:
            inputs.ignored.append({"source": str(path), "reason": reason})
    return _dedupe(inputs)


def _dedupe(inputs: Inputs) -> Inputs:
    best: dict[str, HostEntry] = {}
    for h in inputs.hosts:
        old = best.get(h.name)
        if old is None:
            best[h.name] = h
            continue
        newer = _generated(h) > _generated(old) or (old.report is None and h.report is not None)
        keep, drop = (h, old) if newer else (old, h)
        best[h.name] = keep
        inputs.ignored.append({"source": drop.source, "reason": f"superseded by {keep.source} for host {h.name}"})
    inputs.hosts = sorted(best.values(), key=lambda h: natural(h.name))
    return inputs


def natural(name: str) -> list[Any]:
    """Sort key that puts host9 before host10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _generated(h: HostEntry) -> str:
    return _str(h.report.get("generated")) if h.report else ""


# --------------------------------------------------------------------------- merging


def _rule_titles() -> dict[str, tuple[str, str]]:
    try:
        from dockerdoctor.engine import discover

        return {rid: (spec.name, spec.title) for rid, spec in discover().items()}
    except Exception:  # a broken third-party rule pack must not break a report of reports
        return {}


def _findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in report.get("findings", []):
        if not isinstance(f, dict):
            continue
        sev = f.get("severity") if f.get("severity") in SEVERITIES else "info"
        params: dict[str, Any] = f["params"] if isinstance(f.get("params"), dict) else {}
        out.append({"id": _str(f.get("id"), 20), "severity": sev, "title": _str(f.get("title"), 500),
                    "registry": _str(params.get("registry"), 300) or None})
    return out


def _host_status(report: dict[str, Any] | None, findings: list[dict[str, Any]]) -> tuple[str, str]:
    if report is None:
        return "unchecked", ""
    rules = [r for r in report.get("rules", []) if isinstance(r, dict)]
    looked = [r for r in rules if r.get("status") in ("passed", "failed")]
    if rules and not looked:
        reasons = sorted({_str(r.get("reason"), 200) for r in rules if r.get("reason")})
        return "unchecked", "every rule was skipped" + (f" ({reasons[0]})" if reasons else "")
    sev = {f["severity"] for f in findings}
    for s in SEVERITIES:
        if s in sev:
            return s, ""
    return "ok", ""


def merge(inputs: Inputs) -> dict[str, Any]:
    """The fleet view as a JSON-ready dict (docs/fleet-report-schema.json)."""
    titles = _rule_titles()
    hosts: list[dict[str, Any]] = []
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    causes: dict[str, dict[str, Any]] = {}
    registries: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    reg_findings: dict[str, int] = defaultdict(int)
    reg_hosts: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # registry -> host -> worst, ids
    unchecked: list[dict[str, str]] = []
    for h in inputs.hosts:
        report = h.report
        findings = _findings(report) if report else []
        status, why = _host_status(report, findings)
        summary: dict[str, Any] = report["summary"] if report and isinstance(report.get("summary"), dict) else {}
        regs = sorted({_str(r, 300) for r in (report or {}).get("registries", []) if isinstance(r, str)})
        entry: dict[str, Any] = {
            "name": h.name,
            "source": h.source,
            "via": h.via,
            "status": status,
            "errors": sum(1 for f in findings if f["severity"] == "error"),
            "warnings": sum(1 for f in findings if f["severity"] == "warning"),
            "info": sum(1 for f in findings if f["severity"] == "info"),
            "rules_skipped": int(summary.get("rules_skipped", 0)) if isinstance(summary.get("rules_skipped"), int)
            else 0,
            "registries": regs,
            "findings": sorted({f["id"] for f in findings}),
            "target": _str(((report or {}).get("target") or {}).get("description"), 300) if report else "",
            "generated": _generated(h) or None,
            "reason": h.reason or why or None,
        }
        hosts.append(entry)
        if status == "unchecked":
            unchecked.append({"name": h.name, "source": h.source, "reason": entry["reason"] or "unknown"})
        for reg in regs:
            registries[reg]["checked"].add(h.name)
            reg_hosts[reg].setdefault(h.name, {"name": h.name, "status": "ok", "findings": set()})
        for f in findings:
            key = (f["id"], f["severity"], f["title"])
            g = groups.setdefault(key, {"id": f["id"], "severity": f["severity"], "title": f["title"],
                                        "registry": f["registry"], "hosts": set()})
            g["hosts"].add(h.name)
            c = causes.setdefault(f["id"], {"id": f["id"], "name": titles.get(f["id"], ("", ""))[0],
                                            "title": titles.get(f["id"], ("", f["title"]))[1] or f["title"],
                                            "severity": f["severity"], "hosts": set(), "findings": 0})
            c["hosts"].add(h.name)
            c["findings"] += 1
            if _SEV_RANK[f["severity"]] > _SEV_RANK[c["severity"]]:
                c["severity"] = f["severity"]
            if f["registry"]:
                registries[f["registry"]]["checked"].add(h.name)
                registries[f["registry"]][f["severity"]].add(h.name)
                registries[f["registry"]]["rules"].add(f["id"])
                reg_findings[f["registry"]] += 1
                rh = reg_hosts[f["registry"]].setdefault(h.name, {"name": h.name, "status": "ok", "findings": set()})
                rh["findings"].add(f["id"])
                if rh["status"] == "ok" or _SEV_RANK[f["severity"]] > _SEV_RANK[rh["status"]]:
                    rh["status"] = f["severity"]

    def by_weight(d: dict[str, Any]) -> tuple[int, int, str, str]:
        return (-_SEV_RANK[d["severity"]], -len(d["hosts"]), d["id"], d.get("title", ""))

    findings_out = [{**g, "hosts": sorted(g["hosts"], key=natural), "count": len(g["hosts"])}
                    for g in sorted(groups.values(), key=by_weight)]
    causes_out = [{**c, "hosts": len(c["hosts"]), "host_names": sorted(c["hosts"], key=natural)}
                  for c in sorted(causes.values(), key=by_weight)]
    registries_out = [
        {"registry": reg, "hosts_checked": sorted(r["checked"], key=natural),
         "hosts_with_errors": sorted(r["error"], key=natural),
         "hosts_with_warnings": sorted(r["warning"] - r["error"], key=natural), "findings": reg_findings[reg],
         "rules": sorted(r["rules"]),
         "hosts": [{**v, "findings": sorted(v["findings"])}
                   for _, v in sorted(reg_hosts[reg].items(), key=lambda kv: natural(kv[0]))]}
        for reg, r in sorted(registries.items())
    ]
    count = {s: sum(1 for h in hosts if h["status"] == s) for s in ("ok", *SEVERITIES, "unchecked")}
    return {
        "schema_version": FLEET_SCHEMA_VERSION,
        "kind": FLEET_KIND,
        "tool": {"name": "dockerdoctor", "version": __version__},
        "summary": {
            "hosts": len(hosts),
            "hosts_ok": count["ok"],
            "hosts_with_errors": count["error"],
            "hosts_with_warnings": count["warning"],
            "hosts_with_info": count["info"],
            "hosts_unchecked": count["unchecked"],
            "findings": sum(h["errors"] + h["warnings"] + h["info"] for h in hosts),
            "root_causes": len(causes_out),
        },
        "hosts": hosts,
        "findings": findings_out,
        "root_causes": causes_out,
        "registries": registries_out,
        "unchecked": unchecked,
        "ignored_inputs": inputs.ignored,
    }


def exit_code(fleet: dict[str, Any], fail_on: str | None) -> int:
    """0 when no host has findings at or above fail_on and every host was checked; 1 otherwise."""
    if fail_on is None:
        return 0
    s = fleet["summary"]
    bad = s["hosts_unchecked"] + s["hosts_with_errors"]
    if fail_on in ("warning", "info"):
        bad += s["hosts_with_warnings"]
    if fail_on == "info":
        bad += s["hosts_with_info"]
    return 1 if bad else 0


def render_json(fleet: dict[str, Any]) -> str:
    return json.dumps(fleet, indent=2) + "\n"


# --------------------------------------------------------------------------- text


def _safe(text: Any) -> str:
    """One printable line: terminal escapes and other control characters from an input are dropped."""
    return "".join(c for c in " ".join(_str(text).split()) if c.isprintable())


def _wrap(text: str, width: int, indent: str, more: str | None = None) -> list[str]:
    """`text` wrapped to `width`: the first line after `indent`, the others after `more` (indent + 4)."""
    import textwrap

    return textwrap.wrap(text, width=max(width, 40), initial_indent=indent,
                         subsequent_indent=indent + "    " if more is None else more,
                         break_on_hyphens=False, break_long_words=False) or [indent]


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(_safe(n) for n in names[:limit])
    return shown + (f", … (+{len(names) - limit})" if len(names) > limit else "")


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


MARK = {"error": "✗", "warning": "!", "info": "i", "ok": "✓", "unchecked": "?"}


def render_text(fleet: dict[str, Any], width: int | None = None) -> str:
    if width is None:
        width = int(os.environ.get("COLUMNS") or 0) or __import__("shutil").get_terminal_size((100, 24)).columns
    s = fleet["summary"]
    out = _wrap(f"dockerdoctor fleet report · {_n(s['hosts'], 'host')}: {s['hosts_ok']} ok, "
                f"{s['hosts_with_errors']} with errors, {s['hosts_with_warnings']} with warnings, "
                f"{s['hosts_unchecked']} could not be checked · {_n(s['findings'], 'finding')}, "
                f"{_n(s['root_causes'], 'root cause')}", width, "", "  ") + [""]
    if fleet["root_causes"]:
        out.append("Root causes")
        for c in fleet["root_causes"]:
            head = f"{MARK[c['severity']]} {_safe(c['id'])} {_safe(c['title'])}"
            out += _wrap(f"{head} · {_n(c['hosts'], 'host')}, {_n(c['findings'], 'finding')}", width, "  ")
        out.append("")
        out.append("Findings")
        for f in fleet["findings"]:
            out += _wrap(f"{MARK[f['severity']]} {_safe(f['id'])} {_safe(f['title'])}", width, "  ")
            out += _wrap(f"hosts ({f['count']}): {_names(f['hosts'])}", width, "      ", "        ")
        out.append("")
    if fleet["registries"]:
        out.append("Registries")
        for r in fleet["registries"]:
            n = len(r["hosts_checked"])
            line = f"{_safe(r['registry'])}: {_n(n, 'host')}"
            if r["hosts_with_errors"]:
                line += f", errors on {_names(r['hosts_with_errors'])}"
            if r["hosts_with_warnings"]:
                line += f", warnings on {_names(r['hosts_with_warnings'])}"
            if not r["hosts_with_errors"] and not r["hosts_with_warnings"]:
                line += ", no findings"
            out += _wrap(line, width, "  ")
        out.append("")
    out.append("Hosts")
    name_w = min(max((len(_safe(h["name"])) for h in fleet["hosts"]), default=4), 48)
    for h in fleet["hosts"]:
        counts = f"{_n(h['errors'], 'error')}, {_n(h['warnings'], 'warning')}" if h["status"] != "unchecked" else \
            _safe(h["reason"] or "")
        ids = (" · " + " ".join(h["findings"])) if h["findings"] else ""
        out += _wrap(f"{MARK[h['status']]} {_safe(h['name']):<{name_w}}  {counts}{ids}", width, "  ",
                     " " * (name_w + 6))
    if fleet["unchecked"]:
        out.append("")
        out.append("Could not be checked")
        for u in fleet["unchecked"]:
            out += _wrap(f"? {_safe(u['name'])}: {_safe(u['reason'])} ({_safe(u['source'])})", width, "  ")
    if fleet["ignored_inputs"]:
        out.append("")
        out.append(f"Ignored inputs ({len(fleet['ignored_inputs'])})")
        for i in fleet["ignored_inputs"][:20]:
            out += _wrap(f"{_safe(i['source'])}: {_safe(i['reason'])}", width, "  ")
    return "\n".join(out) + "\n"
