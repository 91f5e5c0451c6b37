"""The repair plan as text and as JSON (`dockerdoctor fix`, with or without --format json)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dockerdoctor.model import Finding, ServiceAction
from dockerdoctor.report import SCHEMA_VERSION

if TYPE_CHECKING:
    from dockerdoctor.fixes.apply import Choice, Prepared
    from dockerdoctor.fixes.backup import RunRecord
    from dockerdoctor.fixes.plan import Plan

SERVICE_WORDS = {"reload": "reload dockerd (SIGHUP; containers keep running)", "restart": "restart dockerd",
                 "start": "start dockerd"}


def plan_lines(plan: Plan, choices: Sequence[Choice], prepared: Prepared | None, findings: Sequence[Finding],
               unfinished: Sequence[RunRecord], dry_run: bool) -> Iterator[str]:
    """The plan as a person reads it: numbered steps with their diffs and commands, then services."""
    for rec in unfinished:
        yield (f"warning: run {rec.run_id} stopped after its backups ({rec.status}); "
               f"`dockerdoctor fix --rollback {rec.run_id}` restores the files it may have changed")
    manual = [c for c in choices if c.fix is None]
    if not plan.steps and not manual:
        yield ("Nothing to fix: no finding has an automatic fix." if not findings else
               "No finding has an automatic fix; `dockerdoctor check` shows what to do by hand.")
        return
    for n, step in enumerate(plan.steps, 1):
        yield f"Step {n}: [{step.finding.rule_id}] {step.fix.summary}"
        yield f"  because: {step.finding.title}"
        for note in step.notes:
            yield f"  choice: {note}"
        for w in step.fix.warnings:
            yield f"  WARNING: {w}"
        for d in step.diffs:
            yield ""
            yield "  " + d.rstrip("\n").replace("\n", "\n  ")
        for cmd in step.commands:
            yield f"  $ {cmd}"
        for e in step.problems:
            yield f"  cannot plan: {e}"
        for alt in step.fix.alternatives:
            yield f"  alternative: {alt.summary}"
            for w in alt.warnings:
                yield f"    note: {w}"
        yield ""
    for c in manual:
        yield f"Not automatic: [{c.finding.rule_id}] {c.finding.title}"
        for note in c.notes:
            yield f"  {note}"
        yield ""
    if prepared is not None:
        others = [f"{action} {unit}" for action, unit in prepared.other_services]
        if prepared.action or prepared.daemon_reload or others:
            what = ", then ".join(a for a in (("daemon-reload" if prepared.daemon_reload else ""),
                                              SERVICE_WORDS.get(prepared.action or "", ""), *others) if a)
            yield f"Services: {what}" + (" (not run on a snapshot: do it on the host)" if prepared.offline else "")
            for r in prepared.reasons + _other_reasons(prepared):
                yield f"  because {r}"
        elif prepared.changes:
            yield "Services: no reload or restart needed"
        for w in prepared.warnings:
            yield f"WARNING: {w}"
    elif plan.services:
        yield "Services: " + "; ".join(plan.services)
    if dry_run:
        yield "This is a dry run: nothing was changed. Add --apply to carry it out."


def _other_reasons(prepared: Prepared) -> list[str]:
    """Which steps ask for each service action outside docker.service (containerd, k3s), and why."""
    asked: dict[tuple[str, str, str], list[str]] = {}
    for s in prepared.applicable:
        fix = s.choice.fix
        if fix is None:
            continue
        for op in fix.operations:
            if isinstance(op, ServiceAction) and (op.action, op.unit) in prepared.other_services:
                ids = asked.setdefault((op.action, op.unit, fix.warnings[0] if fix.warnings else ""), [])
                if s.finding.rule_id not in ids:
                    ids.append(s.finding.rule_id)
    return [f"[{', '.join(ids)}] {action} {unit}" + (f": {why}" if why else "")
            for (action, unit, why), ids in asked.items()]


def plan_json(plan: Plan, choices: Sequence[Choice], prepared: Prepared | None) -> dict[str, Any]:
    """The plan as `fix --format json` prints it (docs: the Ansible fix module reads it)."""
    from dockerdoctor.report.fixjson import plan_fields

    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "steps": [
            {"id": s.finding.rule_id, "title": s.finding.title, "fix": s.fix.to_dict(), "diffs": s.diffs,
             "commands": s.commands, "errors": s.errors}
            for s in plan.steps
        ],
        "manual": [{"id": c.finding.rule_id, "title": c.finding.title, "notes": c.notes}
                   for c in choices if c.fix is None],
        "services": plan.services,
    }
    out.update(plan_fields(prepared))  # changed, files (before/after), service: for the Ansible fix module
    return out
