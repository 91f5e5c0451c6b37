"""node-problem-detector's custom-plugin protocol (`check --format npd`).

NPD runs the command, reads its exit code (0 OK, 1 problem, anything else unknown) and the first
`max_output_length` bytes (default 80) of its trimmed stdout, which becomes the node condition's
message. So the output here is ONE line of at most 80 ASCII bytes (NPD cuts bytes, which would split
a UTF-8 character), the worst finding first, and how many more there are. The exit code is the
report's own: 0 nothing at or above --fail-on, 1 findings at or above it, 3 a rule crashed
(unknown to NPD, as is 2, a usage or input error).
"""

from __future__ import annotations

from dockerdoctor.model import RuleStatus
from dockerdoctor.report import Report

MAX_MESSAGE = 80


def _ascii(text: str) -> str:
    text = " ".join(text.split())
    return text.encode("ascii", "replace").decode("ascii")


def _fit(head: str, tail: str = "", limit: int = MAX_MESSAGE) -> str:
    head, tail = _ascii(head), tail.encode("ascii", "replace").decode("ascii")
    if len(head) + len(tail) <= limit:
        return head + tail
    room = max(limit - len(tail) - 3, 0)
    return (head[:room].rstrip() + "..." + tail)[:limit]


def message(report: Report) -> str:
    """The one-line condition message: worst finding first, at most MAX_MESSAGE ASCII bytes."""
    crashed = [r for r in report.results if r.status == RuleStatus.CRASHED]
    if crashed:
        more = f" (+{len(crashed) - 1} more)" if len(crashed) > 1 else ""
        return _fit(f"UNKNOWN: rule {crashed[0].rule_id} crashed: {crashed[0].reason}", more)
    findings = report.findings  # worst first, then by rule id
    failing = [f for f in findings if report.fail_on is not None and f.severity >= report.fail_on]
    if not failing:
        below = len(findings)
        if below:
            return _fit(f"OK: nothing at or above --fail-on ({below} below it, worst {findings[0].rule_id})")
        skipped = report.status_count(RuleStatus.SKIPPED)
        passed = report.status_count(RuleStatus.PASSED)
        return _fit(f"OK: no problems ({passed} rule{'s' if passed != 1 else ''} passed, {skipped} skipped)")
    worst = failing[0]
    more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
    return _fit(f"{worst.rule_id} {worst.severity.label}: {worst.title}", more)


def render(report: Report) -> str:
    return message(report) + "\n"
