"""JUnit XML: one testcase per rule, so CI systems show each check."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dockerdoctor.model import RuleStatus, Severity
from dockerdoctor.report import Report
from dockerdoctor.safetext import xml_safe


def render(report: Report) -> str:
    suite = ET.Element("testsuite", name="dockerdoctor", time=f"{report.seconds:.3f}")
    if report.generated:  # JUnit's timestamp is ISO 8601 without a zone; ours is UTC
        suite.set("timestamp", report.generated.removesuffix("Z"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in report.results:
        if r.status == RuleStatus.NOT_SELECTED:
            continue
        counts["tests"] += 1
        case = ET.SubElement(suite, "testcase", classname=f"dockerdoctor.{r.category}",
                             name=f"{r.rule_id} {r.name}", time=f"{r.seconds:.4f}")
        if r.status == RuleStatus.SKIPPED:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=r.reason)
        elif r.status == RuleStatus.CRASHED:
            counts["errors"] += 1
            ET.SubElement(case, "error", message=r.reason)
        elif r.findings:
            failing = [f for f in r.findings if report.fail_on is not None and f.severity >= report.fail_on]
            text = "\n\n".join(
                f"[{f.severity.label}] {f.title}\n{f.message}\n" +
                "\n".join(f"  {e.location()}: {e.text}" for e in f.evidence) +
                (f"\nfix: {f.fix.summary}" if f.fix else "")
                for f in r.findings
            )
            if failing:
                counts["failures"] += 1
                worst = max(f.severity for f in r.findings)
                el = ET.SubElement(case, "failure", message=r.findings[0].title, type=worst.label)
                el.text = text
            else:
                out = ET.SubElement(case, "system-out")
                out.text = text
    for k, v in counts.items():
        suite.set(k, str(v))
    # Findings quote snapshot files: a \x01 or a lone surrogate would make the document unparsable.
    for el in suite.iter():
        if el.text:
            el.text = xml_safe(el.text)
        for name, value in el.attrib.items():
            el.set(name, xml_safe(value))
    _ = Severity
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
