"""The dry-run plan: every fix rendered as unified diffs and exact commands.

The plan is a view of `fixes.apply.prepare`'s result, the same new file contents that `--apply`
writes: the diffs are computed once, while preparing, so what `fix` shows is what `fix --apply` does.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockerdoctor.model import Finding, Fix, Operation, RunCommand, ServiceAction

if TYPE_CHECKING:
    from dockerdoctor.fixes.apply import Prepared

# Commands a fix shows for information; running them repairs nothing.
READ_ONLY_COMMANDS = (
    "journalctl",
    "cat",
    "ls",
    "docker logs",
    "docker inspect",
    "docker info",
    "docker ps",
    "systemctl status",
)


def shown_only(op: RunCommand) -> bool:
    """A command the plan shows but `fix --apply` never runs: advice for the registry host, an
    alternative ("or run one ..."), or a read-only diagnostic."""
    if op.description.startswith(("on the registry host", "or ")):
        return True
    line = " ".join(op.argv)
    return any(line == c or line.startswith(c + " ") for c in READ_ONLY_COMMANDS)


@dataclass
class PlanStep:
    finding: Finding
    fix: Fix
    diffs: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # edits that cannot be made (the JSON plan's "errors")
    notes: list[str] = field(default_factory=list)  # why this fix was chosen
    problems: list[str] = field(default_factory=list)  # every reason the step cannot run here


@dataclass
class Plan:
    steps: list[PlanStep]
    services: list[str]  # "systemctl reload docker.service" ...


def unified_diff(path: str, before: str | None, after: str) -> str:
    """The change of one file, as `diff -u` shows it (a new file comes from /dev/null)."""
    diff = difflib.unified_diff(
        (before or "").splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"a{path}" if before is not None else "/dev/null", tofile=f"b{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


def command_line(op: Operation) -> str | None:
    """How the plan shows a command or service operation (None for a file edit)."""
    if isinstance(op, RunCommand):
        # Say which commands --apply runs: two `docker run` lines with no word on which one runs misled.
        mark = "shown only, --apply does not run it" if shown_only(op) else "--apply runs this"
        return op.shell() + f"    # [{mark}]" + (f" {op.description}" if op.description else "")
    if isinstance(op, ServiceAction):
        return op.shell()
    return None


def plan_of(prepared: Prepared) -> Plan:
    """The plan of every prepared step whose chosen fix has operations."""
    steps: list[PlanStep] = []
    services: list[str] = []
    for ps in prepared.steps:
        fix = ps.choice.fix
        if fix is None or not fix.operations:
            continue
        finding = dataclasses.replace(ps.finding, fix=fix)
        commands = [c for c in (command_line(op) for op in fix.operations) if c is not None]
        for op in fix.operations:
            if isinstance(op, ServiceAction) and op.shell() not in services:
                services.append(op.shell())
        steps.append(PlanStep(finding, fix, list(ps.diffs), commands, list(ps.edit_errors), list(ps.choice.notes),
                              list(ps.errors)))
    return Plan(steps, services)
