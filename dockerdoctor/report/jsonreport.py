"""JSON report, schema_version 1 (docs/report-schema.json). Fields are only ever added."""

from __future__ import annotations

import json
from typing import Any

from dockerdoctor.model import RuleStatus, Severity
from dockerdoctor.report import SCHEMA_VERSION, Report


def to_dict(report: Report) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "dockerdoctor", "version": report.version},
        "target": {"kind": report.target_kind, "description": report.target},
        "host": {"name": report.host},
        "generated": report.generated or None,
        "registries": report.registries,
        **({"daemon": report.daemon} if report.daemon else {}),
        **({"probed_from": report.probed_from} if report.probed_from else {}),
        "fail_on": report.fail_on.label if report.fail_on else "never",
        "exit_code": report.exit_code,
        "summary": {
            "errors": report.count(Severity.ERROR),
            "warnings": report.count(Severity.WARNING),
            "info": report.count(Severity.INFO),
            "rules_passed": report.status_count(RuleStatus.PASSED),
            "rules_failed": report.status_count(RuleStatus.FAILED),
            "rules_skipped": report.status_count(RuleStatus.SKIPPED),
            "rules_crashed": report.status_count(RuleStatus.CRASHED),
            "rules_not_selected": report.status_count(RuleStatus.NOT_SELECTED),
        },
        "findings": [f.to_dict() for f in report.findings],
        "rules": [
            {
                "id": r.rule_id,
                "name": r.name,
                "category": r.category,
                "status": r.status.value,
                "reason": r.reason or None,
                "basis": r.basis,
                "findings": len(r.findings),
                "seconds": round(r.seconds, 4),
            }
            for r in report.results
        ],
        "seconds": round(report.seconds, 4),
    }


def render(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2, default=str) + "\n"
