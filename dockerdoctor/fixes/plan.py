"""The dry-run plan: every fix rendered as unified diffs and exact commands."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from dockerdoctor.fixes.edits import FILE_OPS, UneditableFile, apply_edit
from dockerdoctor.model import Finding, Fix, Operation, RunCommand, ServiceAction
from dockerdoctor.sources.base import Source

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
    errors: list[str] = field(default_factory=list)


@dataclass
class Plan:
    steps: list[PlanStep]
    services: list[str]  # "systemctl reload docker.service" ...


def build_plan(findings: list[Finding], source: Source) -> Plan:
    originals: dict[str, str | None] = {}
    current: dict[str, str | None] = {}
    steps: list[PlanStep] = []
    services: list[str] = []
    for f in findings:
        if f.fix is None or not f.fix.operations:
            continue
        step = PlanStep(f, f.fix)
        for op in f.fix.operations:
            _plan_op(op, step, source, originals, current, services)
        steps.append(step)
    return Plan(steps, services)


def _plan_op(op: Operation, step: PlanStep, source: Source, originals: dict[str, str | None],
             current: dict[str, str | None], services: list[str]) -> None:
    if isinstance(op, FILE_OPS):
        path = op.path
        if path not in originals:
            originals[path] = source.read_text(path)
            current[path] = originals[path]
        before = current[path]
        try:
            after = apply_edit(op, before)
        except UneditableFile as exc:
            step.errors.append(str(exc))
            return
        current[path] = after
        if before == after:
            return
        diff = difflib.unified_diff(
            (before or "").splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=f"a{path}" if before is not None else "/dev/null", tofile=f"b{path}",
        )
        text = "".join(line if line.endswith("\n") else line + "\n" for line in diff)
        step.diffs.append(text)
    elif isinstance(op, RunCommand):
        # Say which commands --apply runs: two `docker run` lines with no word on which one runs misled.
        mark = "shown only, --apply does not run it" if shown_only(op) else "--apply runs this"
        step.commands.append(op.shell() + f"    # [{mark}]" + (f" {op.description}" if op.description else ""))
    elif isinstance(op, ServiceAction):
        cmd = op.shell()
        step.commands.append(cmd)
        if cmd not in services:
            services.append(cmd)
