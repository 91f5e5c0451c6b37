"""The text report and the JSON report count the same things (newcomer report A20: DD306, an info-only rule,
was `rules_failed` in JSON while the text counted it nowhere)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.model import RuleStatus, Severity
from dockerdoctor.report import Report, jsonreport, text
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
SUMMARY = re.compile(r"• (?:No issues found!|(\d+) errors?, (\d+) warnings?, (\d+) info) · (\d+) rules? passed"
                     r"(?:, (\d+) with findings)?, (\d+) skipped")


def _report(name: str, registries: list[str] = ()) -> Report:  # type: ignore[assignment]
    facts = Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False,
                                                            registries=[HostPort.parse(r) for r in registries]))
    try:
        results = run_rules(facts)
    finally:
        facts.source.close()
    return Report("t", "snapshot", name, list(registries), results, Severity.ERROR)


def _text_counts(report: Report) -> dict[str, int]:
    (m,) = [SUMMARY.match(ln) for ln in text.render(report, color=False).splitlines() if SUMMARY.match(ln)]
    e, w, i, passed, failed, skipped = (int(x) if x else 0 for x in m.groups())
    return {"errors": e, "warnings": w, "info": i, "rules_passed": passed, "rules_failed": failed,
            "rules_skipped": skipped}


@pytest.mark.parametrize("name", ["centos7-registry-host-selinux-and-firewalld-off",  # DD306 info only
                                  "centos7-docker-ce-ignores-sysconfig", "centos7-yum-docker-healthy"])
def test_text_summary_counts_what_json_counts(name: str) -> None:
    report = _report(name)
    summary = json.loads(jsonreport.render(report))["summary"]
    assert _text_counts(report) == {k: summary[k] for k in _text_counts(report)}
    ran = summary["rules_passed"] + summary["rules_failed"] + summary["rules_skipped"] + summary["rules_crashed"]
    assert ran == len([r for r in report.results if r.status != RuleStatus.NOT_SELECTED])


def test_an_info_only_rule_is_counted_as_a_rule_with_findings_in_both() -> None:
    report = _report("centos7-registry-host-selinux-and-firewalld-off")
    (dd306,) = [r for r in report.results if r.rule_id == "DD306"]
    assert dd306.status == RuleStatus.FAILED and {f.severity for f in dd306.findings} == {Severity.INFO}
    out = text.render(report, color=False)
    assert "[✓] Registry host: firewall, SELinux, ports (2 info," in out
    assert _text_counts(report)["rules_failed"] == 1 and _text_counts(report)["info"] == len(dd306.findings)


def test_one_rule_is_singular() -> None:
    report = _report("centos7-yum-docker-healthy")
    report.results = [r for r in report.results if r.status == RuleStatus.PASSED][:1]
    assert " · 1 rule passed, 0 skipped" in text.render(report, color=False)
