"""`check --format npd` and the node-problem-detector custom-plugin config.

NPD itself is not packaged for Debian, so it does not run here. What is real: the dockerdoctor
binary is run exactly as the config's rule says (path and args), and its exit code and stdout are
judged by NPD's own rules (pkg/custompluginmonitor/plugin/plugin.go: exit 0 OK, 1 NonOK, anything
else Unknown; stdout trimmed, then cut at max_output_length BYTES). The config is checked against
NPD's validation (types/config.go): plugin "custom", Go durations, a rule timeout no longer than the
global one, a default condition for every permanent rule's condition.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fleetkit import FIXTURES, INTEGRATIONS, dd, dd_here

from dockerdoctor.model import Finding, RuleResult, RuleStatus, Severity
from dockerdoctor.report import Report
from dockerdoctor.report.npd import MAX_MESSAGE, message

CONFIG = INTEGRATIONS / "node-problem-detector" / "dockerdoctor-monitor.json"
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
SCENARIOS = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists())


def _seconds(d: str) -> float:
    assert GO_DURATION.match(d), f"not a Go duration: {d!r}"
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)", d))


def npd_status(returncode: int) -> str:
    return {0: "OK", 1: "NonOK"}.get(returncode, "Unknown")


def npd_message(stdout: str, max_len: int) -> str:
    return stdout.strip().encode()[:max_len].decode("utf-8", errors="strict")  # a cut UTF-8 char would raise


def test_config_passes_npds_validation() -> None:
    cfg = json.loads(CONFIG.read_text())
    assert cfg["plugin"] == "custom"
    g = cfg["pluginConfig"]
    global_timeout = _seconds(g["timeout"])
    assert _seconds(g["invoke_interval"]) >= global_timeout, "runs would overlap"
    defaults = {c["type"] for c in cfg["conditions"]}
    for rule in cfg["rules"]:
        assert rule["type"] in ("permanent", "temporary")
        if "timeout" in rule:
            assert _seconds(rule["timeout"]) <= global_timeout
        if rule["type"] == "permanent":
            assert rule["condition"] in defaults
        assert rule["path"].startswith("/") and rule["args"][:3] == ["check", "--format", "npd"]
    # NPD's own default of 5 s is too short for probes (runtimes.md §6): the config must raise it
    assert global_timeout >= 30


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_configured_command_follows_npds_protocol(scenario: str) -> None:
    cfg = json.loads(CONFIG.read_text())
    rule = cfg["rules"][0]
    max_len = cfg["pluginConfig"]["max_output_length"]
    # the rule's command, with the installed path swapped for this checkout and a snapshot to look at
    args = json.loads((FIXTURES / scenario / "expected.json").read_text()).get("args", [])
    argv = [sys.executable, "-m", "dockerdoctor", *rule["args"], "--root", str(FIXTURES / scenario), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=_seconds(rule["timeout"]))
    assert npd_status(r.returncode) in ("OK", "NonOK"), r.stderr
    assert len(r.stdout.strip().splitlines()) == 1
    msg = npd_message(r.stdout, max_len)
    assert msg == r.stdout.strip(), "the message must fit max_output_length untouched"
    assert msg.isascii() and len(msg) <= MAX_MESSAGE
    report = json.loads(dd_here("check", "--root", str(FIXTURES / scenario), "--format", "json", *args).stdout)
    if report["summary"]["errors"]:
        worst = report["findings"][0]  # the JSON report lists the worst first, too
        assert npd_status(r.returncode) == "NonOK"
        assert msg.startswith(f"{worst['id']} error: "), (msg, worst)
    else:
        assert npd_status(r.returncode) == "OK" and msg.startswith("OK: "), msg


def _report(*findings: Finding, fail_on: Severity | None = Severity.ERROR, crashed: int = 0) -> Report:
    results = [RuleResult("DD1", "a", "daemon", RuleStatus.FAILED if findings else RuleStatus.PASSED, list(findings))]
    results += [RuleResult(f"DD9{i}", "c", "engine", RuleStatus.CRASHED, reason="KeyError: 'x' " * 20)
                for i in range(crashed)]
    return Report("0.1.0", "live", "live host", [], results, fail_on)


def test_worst_first_more_counted_and_cut_to_80_ascii_bytes() -> None:
    long_title = "registry.example.com:5000 is not trusted by the daemon — " + "é" * 80
    f_warn = Finding("DD107", Severity.WARNING, "daemon.json changed after the daemon started", "m")
    f_err = Finding("DD101", Severity.ERROR, long_title, "m")
    f_err2 = Finding("DD203", Severity.ERROR, "speaks HTTP", "m")
    rep = _report(f_warn, f_err2, f_err)
    msg = message(rep)
    assert msg.startswith("DD101 error: registry.example.com:5000 is not trusted")
    assert msg.endswith("... (+1 more)") and len(msg.encode()) == len(msg) <= 80 and msg.isascii()
    assert rep.exit_code == 1


def test_only_warnings_is_ok_with_default_fail_on_and_a_problem_with_fail_on_warning() -> None:
    f_warn = Finding("DD107", Severity.WARNING, "daemon.json changed after the daemon started", "m")
    assert message(_report(f_warn)).startswith("OK: ") and _report(f_warn).exit_code == 0
    rep = _report(f_warn, fail_on=Severity.WARNING)
    assert message(rep) == "DD107 warning: daemon.json changed after the daemon started" and rep.exit_code == 1


def test_a_crashed_rule_is_unknown_to_npd() -> None:
    rep = _report(crashed=2)
    assert npd_status(rep.exit_code) == "Unknown"
    msg = message(rep)
    assert msg.startswith("UNKNOWN: rule DD90 crashed") and msg.endswith(" (+1 more)") and len(msg) <= 80


def test_bad_input_is_unknown_to_npd(tmp_path: Path) -> None:
    r = dd("check", "--format", "npd", "--root", str(tmp_path / "missing"))
    assert npd_status(r.returncode) == "Unknown" and "snapshot not found" in r.stderr


def test_ok_counts_rules_in_singular_and_plural() -> None:
    assert message(_report()) == "OK: no problems (1 rule passed, 0 skipped)"
    rep = _report()
    rep.results.append(RuleResult("DD2", "b", "daemon", RuleStatus.PASSED, []))
    assert message(rep) == "OK: no problems (2 rules passed, 0 skipped)"
