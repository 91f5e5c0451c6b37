"""flutter-doctor-style text: one line per category with ✓ ! ✗, findings indented beneath."""

from __future__ import annotations

import os
import re
import sys

from dockerdoctor.engine import CATEGORIES
from dockerdoctor.model import Finding, RuleStatus, Severity
from dockerdoctor.report import Report
from dockerdoctor.safetext import printable

_COLORS = {"red": "31", "yellow": "33", "green": "32", "dim": "2", "bold": "1", "cyan": "36"}


class Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, color: str) -> str:
        if not self.enabled:
            return text
        return f"\033[{_COLORS[color]}m{text}\033[0m"


def color_default(stream: object) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())


P = printable  # every text that came from the inspected host goes through it before the terminal sees it

MARK = {Severity.ERROR: ("✗", "red"), Severity.WARNING: ("!", "yellow"), Severity.INFO: ("i", "cyan")}


def _finding_lines(f: Finding, s: Style, verbose: bool) -> list[str]:
    mark, color = MARK[f.severity]
    ign = " (ignored: shown as a warning)" if f.demoted_from else ""
    out = [f"    {s(mark, color)} {s(P(f.rule_id), 'bold')} {P(f.title)}{s(ign, 'dim')}", f"      {P(f.message)}"]
    for e in f.evidence:
        loc = P(e.location())
        out.append(f"      {s('evidence:', 'dim')} {loc}" + (f"  {P(e.text)}" if e.text else ""))
    if f.fix:
        out.append(f"      {s('fix:', 'green')} {P(f.fix.summary)}")
        for w in f.fix.warnings:
            out.append(f"           {s('note:', 'yellow')} {P(w)}")
        for alt in f.fix.alternatives:
            out.append(f"      {s('or:', 'green')}  {P(alt.summary)}")
            for w in alt.warnings:
                out.append(f"           {s('note:', 'yellow')} {P(w)}")
    return out


_SGR = re.compile(r"\x1b\[[0-9;]*m")


def wrap_line(line: str, width: int) -> list[str]:
    """`line` broken at spaces to fit `width` visible columns (colour codes take none); continuation
    lines keep the line's indentation plus two. A word longer than the width (a path) is never cut."""
    visible = _SGR.sub("", line)
    if len(visible) <= width:
        return [line]
    lead = len(visible) - len(visible.lstrip(" "))
    sub = " " * min(lead + 2, max(width // 2, 0))
    out: list[str] = []
    cur, cur_len, has_word = " " * lead, lead, False
    for word in line.lstrip(" ").split(" "):
        n = len(_SGR.sub("", word))
        if has_word and n and cur_len + 1 + n > width:
            out.append(cur.rstrip(" "))
            cur, cur_len, has_word = sub + word, len(sub) + n, True
            continue
        if has_word:
            cur, cur_len = cur + " ", cur_len + 1
        cur, cur_len, has_word = cur + word, cur_len + n, has_word or bool(n)
    out.append(cur.rstrip(" "))
    return out


def render(report: Report, verbose: bool = False, color: bool | None = None, width: int | None = None) -> str:
    s = Style(color_default(sys.stdout) if color is None else color)
    lines = []
    head = f"dockerdoctor {report.version} · {P(report.target)}"
    if report.registries:
        head += " · registries: " + P(", ".join(report.registries))
    lines.append(s(head, "bold"))
    if report.daemon:
        d = report.daemon
        pid = f", pid {d['pid']}" if d.get("pid") else ""
        lines.append(P(f"daemon: {d.get('host')} ({d.get('chosen_by')}){pid}"))
    if report.probed_from:
        lines.append(P(f"probes ran from {report.probed_from.get('description')}"))
    lines.append("")
    by_cat: dict[str, list] = {c: [] for c in CATEGORIES}
    for r in report.results:
        by_cat.setdefault(r.category, []).append(r)
    for cat, title in CATEGORIES.items():
        results = [r for r in by_cat.get(cat, []) if r.status != RuleStatus.NOT_SELECTED]
        if not results:
            continue
        findings = sorted((f for r in results for f in r.findings), key=lambda f: (-f.severity, f.rule_id))
        ran = [r for r in results if r.status in (RuleStatus.PASSED, RuleStatus.FAILED)]
        crashed = [r for r in results if r.status == RuleStatus.CRASHED]
        skipped = [r for r in results if r.status == RuleStatus.SKIPPED]
        worst = max((f.severity for f in findings), default=None)
        if crashed or worst == Severity.ERROR:
            mark = s("[✗]", "red")
        elif worst == Severity.WARNING:
            mark = s("[!]", "yellow")
        elif not ran:
            mark = s("[-]", "dim")
        else:
            mark = s("[✓]", "green")
        counts = []
        for sev, word in ((Severity.ERROR, "error"), (Severity.WARNING, "warning"), (Severity.INFO, "info")):
            n = sum(1 for f in findings if f.severity == sev)
            if n:
                counts.append(f"{n} {word}{'s' if n > 1 and sev != Severity.INFO else ''}")
        if skipped:
            counts.append(f"{len(skipped)} skipped")
        if not ran and not crashed:
            counts = [f"not checked: {P(skipped[0].reason)}" if len(skipped) == 1 else f"{len(skipped)} skipped"]
        lines.append(f"{mark} {title}" + (s(f" ({', '.join(counts)})", "dim") if counts else ""))
        for f in findings:
            lines.extend(_finding_lines(f, s, verbose))
        for r in crashed:
            lines.append(f"    {s('✗', 'red')} {r.rule_id} crashed: {P(r.reason)} (internal error; --debug shows more)")
        if verbose:
            for r in results:
                if r.status == RuleStatus.PASSED:
                    lines.append(f"    {s('✓', 'green')} {r.rule_id} {r.name}")
                    for basis in r.basis:  # what it looked at (engine.passed_on)
                        lines.append(f"        {s(P(basis), 'dim')}")
                elif r.status == RuleStatus.SKIPPED:
                    lines.append(f"    {s('-', 'dim')} {r.rule_id} {r.name}: {s('not checked: ' + P(r.reason), 'dim')}")
    lines.append("")
    e, w, i = report.count(Severity.ERROR), report.count(Severity.WARNING), report.count(Severity.INFO)
    passed = report.status_count(RuleStatus.PASSED)
    skipped_n = report.status_count(RuleStatus.SKIPPED)
    crashed_n = len(report.crashed)
    if e or w or i or crashed_n:
        summary = f"• {e} error{'s' if e != 1 else ''}, {w} warning{'s' if w != 1 else ''}, {i} info"
    else:
        summary = "• No issues found!"
    if crashed_n:
        # a crashed rule looked at nothing: the report is incomplete, never clean
        summary += s(f", {crashed_n} rule{'s' if crashed_n != 1 else ''} crashed (report incomplete)", "red")
    # the same rule counts as JSON's summary (rules_passed, rules_failed, rules_skipped): every rule that ran is
    # counted, an info-only rule too
    failed_n = report.status_count(RuleStatus.FAILED)
    summary += f" · {passed} rule{'s' if passed != 1 else ''} passed"
    summary += f", {failed_n} with findings" if failed_n else ""
    summary += f", {skipped_n} skipped ({report.seconds * 1000:.0f} ms)"
    lines.append(summary)
    fixable = any(f.fix is not None for f in report.findings)
    if not verbose and (skipped_n or fixable):
        hint = "Run with -v to see passed and skipped rules" if skipped_n else ""
        if fixable:  # only when there is something to repair
            hint += ("; " if hint else "") + "`dockerdoctor fix` shows the repair plan"
        lines.append(s(f"  {hint}.", "dim"))
    for note in report.notes:
        lines.append(s(f"  {P(note)}", "dim"))
    if width and width >= 20:
        lines = [part for line in lines for part in wrap_line(line, width)]
    return "\n".join(lines) + "\n"
