"""`check --format prometheus` and `--textfile-dir`: the exposition node_exporter reads, checked by the real
promtool and scraped from a real node_exporter; the example alerts under `promtool test rules`."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fleetkit import FIXTURES, INTEGRATIONS, dd, dd_here, need

from dockerdoctor.model import Finding, RuleResult, RuleStatus, Severity
from dockerdoctor.report import Report
from dockerdoctor.report.prometheus import METRICS, render, write_textfile

UNTRUSTED = FIXTURES / "docker-ce-http-registry-not-trusted"
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def _report(*findings: Finding, crashed: bool = False) -> Report:
    status = RuleStatus.FAILED if findings else RuleStatus.PASSED
    results = [RuleResult("DD101", "registry-not-trusted", "daemon", status, list(findings)),
               RuleResult("DD301", "firewalld-port-closed", "network", RuleStatus.SKIPPED, reason="no firewalld"),
               RuleResult("DD999", "x", "engine", RuleStatus.NOT_SELECTED)]
    if crashed:
        results.append(RuleResult("DD402", "y", "registry", RuleStatus.CRASHED, reason="boom"))
    return Report("0.1.0", "live", "live host", ["10.0.0.5:5000"], results, Severity.ERROR, seconds=0.25)


def _samples(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line without a timestamp: {line!r}"
        out.append((m.group(1), m.group(2) or "", m.group(3)))
    return out


def test_metric_set_is_the_documented_one() -> None:
    text = render(_report())
    names = {n for n, _, _ in _samples(text)}
    assert names == set(METRICS) - {"dockerdoctor_finding"}  # no finding: no finding series, the rest always
    doc = (Path(__file__).parents[2] / "docs" / "prometheus.md").read_text()
    for name in METRICS:
        assert f"# TYPE {name} gauge" in text and f"# HELP {name} " in text
        assert f"`{name}" in doc, f"{name} is not documented in docs/prometheus.md"


def test_same_id_severity_registry_is_one_series_counting_them_and_labels_are_escaped() -> None:
    f = Finding("DD101", Severity.ERROR, "t", "m", params={"registry": '10.0.0.5:5000'})
    hostile = Finding("DD101", Severity.ERROR, "t", "m", params={"registry": 'a"b\\c\nd'})
    text = render(_report(f, f, hostile), now=1700000000.5)
    samples = _samples(text)
    assert len(samples) == len(set((n, labels) for n, labels, _ in samples)), "duplicate series"
    assert ("dockerdoctor_finding", '{id="DD101",registry="10.0.0.5:5000",severity="error"}', "2") in samples
    assert ("dockerdoctor_finding", '{id="DD101",registry="a\\"b\\\\c\\nd",severity="error"}', "1") in samples
    assert ("dockerdoctor_findings", '{severity="error"}', "3") in samples
    assert ("dockerdoctor_findings", '{severity="info"}', "0") in samples
    assert ("dockerdoctor_last_run_timestamp_seconds", "", "1700000000.5") in samples
    assert ("dockerdoctor_run_duration_seconds", "", "0.25") in samples
    # selected rules only, one status each
    assert ("dockerdoctor_rule_status", '{id="DD301",status="skipped"}', "1") in samples
    assert not [s for s in samples if "DD999" in s[1]]


def test_textfile_write_is_atomic_and_readable_by_node_exporter(tmp_path: Path) -> None:
    (tmp_path / "dockerdoctor.prom").write_text("old\n")
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(os.path.basename(src))
        assert Path(dst).read_text() == "old\n", "the target changed before the rename"
        real_replace(src, dst)

    os.replace = spy  # type: ignore[assignment]
    try:
        target = write_textfile(_report(), tmp_path, now=1.0)
    finally:
        os.replace = real_replace
    assert seen and not seen[0].endswith(".prom"), "node_exporter reads *.prom: the temp name must not match"
    assert target == tmp_path / "dockerdoctor.prom"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dockerdoctor.prom"]


def test_textfile_dir_missing_is_one_line_and_exit_2(tmp_path: Path) -> None:
    r = dd("check", "--root", str(UNTRUSTED), "--textfile-dir", str(tmp_path / "nope"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "not a directory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists()))
def test_promtool_check_metrics_passes_on_every_fixture(fixture: str) -> None:
    need("promtool")
    # in this process (the textfile run as a process is tested above): promtool is what this one is about
    r = dd_here("check", "--root", str(FIXTURES / fixture), "--format", "prometheus", "--fail-on", "never")
    assert r.returncode == 0, r.stderr
    p = subprocess.run(["promtool", "check", "metrics"], input=r.stdout, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_example_alert_rules_pass_promtool_test_rules() -> None:
    need("promtool")
    d = INTEGRATIONS / "prometheus"
    r = subprocess.run(["promtool", "check", "rules", "dockerdoctor-alerts.yml"], cwd=d, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["promtool", "test", "rules", "dockerdoctor-alerts.test.yml"], cwd=d, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_alerts_use_only_metrics_that_exist() -> None:
    import yaml

    rules = yaml.safe_load((INTEGRATIONS / "prometheus" / "dockerdoctor-alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        for name in re.findall(r"\b(dockerdoctor_[a-z_]+)", rule["expr"]):
            assert name in METRICS, f"{rule['alert']} uses {name}, which dockerdoctor does not export"


def test_systemd_units_verify_offline(tmp_path: Path) -> None:
    need("systemd-analyze")
    src = INTEGRATIONS / "systemd"
    exe = shutil.which("dockerdoctor") or str(Path(sys.executable).with_name("dockerdoctor"))
    text = (src / "dockerdoctor-textfile.service").read_text()
    assert "/opt/dockerdoctor/bin/dockerdoctor check --fail-on never" in text and "--textfile-dir" in text
    (tmp_path / "dockerdoctor-textfile.service").write_text(text.replace("/opt/dockerdoctor/bin/dockerdoctor", exe))
    shutil.copy(src / "dockerdoctor-textfile.timer", tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", "dockerdoctor-textfile.service",
                        "dockerdoctor-textfile.timer"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    # verify exits 0 even on warnings: it must print nothing about our files
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "dockerdoctor-textfile" in ln]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_node_exporter_serves_the_textfile_and_it_passes_promtool(tmp_path: Path) -> None:
    need("prometheus-node-exporter", "promtool")
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    r = dd("check", "--root", str(UNTRUSTED), "--fail-on", "never", "--textfile-dir", str(textdir),
           "--format", "json", "--output", str(tmp_path / "report.json"))
    assert r.returncode == 0, r.stderr
    assert [p.name for p in textdir.iterdir()] == ["dockerdoctor.prom"]
    port = _free_loopback_port()
    proc = subprocess.Popen(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         "--collector.textfile", f"--collector.textfile.directory={textdir}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "node_exporter.log", "wb"))
    try:
        body = ""
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "node_exporter.log").read_text()
                time.sleep(0.1)
        assert body, "node_exporter did not answer on loopback"
    finally:
        proc.terminate()
        proc.wait(10)
    assert "node_textfile_scrape_error 0" in body, body[-2000:]
    assert f'node_textfile_mtime_seconds{{file="{textdir}/dockerdoctor.prom"}}' in body
    assert re.search(r'^dockerdoctor_finding\{id="DD101",registry="[^"]+",severity="error"\} 1$', body, re.M), body
    assert re.search(r'^dockerdoctor_rule_status\{id="DD101",status="failed"\} 1$', body, re.M)
    assert re.search(r'^dockerdoctor_build_info\{version="[^"]+"\} 1$', body, re.M)
    ours = "\n".join(ln for ln in body.splitlines() if "dockerdoctor_" in ln) + "\n"
    p = subprocess.run(["promtool", "check", "metrics"], input=ours, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
