"""Every snapshot in fixtures/hosts/: the rules in expected.json fire, the others stay silent.

Each scenario runs three ways: as a directory, and packed as .tar.xz and .tar.gz sosreports
(the first scenario only, to keep the suite fast).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.model import RuleStatus, Severity
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
SCENARIOS = sorted(p.parent.name for p in HOSTS.glob("*/expected.json"))


def _prepare(name: str, tmp_path: Path) -> tuple[Path, dict]:
    src = HOSTS / name
    expected = json.loads((src / "expected.json").read_text())
    dst = tmp_path / name
    shutil.copytree(src, dst, symlinks=True)
    for rel, iso in (expected.get("mtimes") or {}).items():
        t = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
        target = dst / rel
        if target.exists():
            os.utime(target, (t, t), follow_symlinks=False)
    return dst, expected


def _options(args: list[str]) -> CheckOptions:
    regs = [HostPort.parse(args[i + 1]) for i, a in enumerate(args) if a in ("--registry", "-r")]
    return CheckOptions(registries=regs, network=False)


def _check(root: Path, expected: dict) -> None:
    source = SnapshotSource(root)
    try:
        results = run_rules(Facts(source, _options(expected.get("args", []))))
    finally:
        source.close()
    crashed = [(r.rule_id, r.reason) for r in results if r.status == RuleStatus.CRASHED]
    assert not crashed, crashed
    fired = {f.rule_id for r in results for f in r.findings if f.severity >= Severity.WARNING}
    fired_any = {f.rule_id for r in results for f in r.findings}
    for rid in expected["fire"]:
        assert rid in fired_any, f"{rid} should fire; fired: {sorted(fired_any)}"
    silent = expected.get("silent", [])
    if silent == "others":
        extra = fired - set(expected["fire"]) - set(expected.get("allow", []))
        assert not extra, f"unexpected findings: {sorted(extra)}"
    else:
        known = {r.rule_id for r in results}
        for rid in silent:
            if rid in known:
                assert rid not in fired, f"{rid} must stay silent"


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str, tmp_path: Path) -> None:
    root, expected = _prepare(name, tmp_path)
    _check(root, expected)


@pytest.mark.parametrize("mode,suffix", [("w:xz", ".tar.xz"), ("w:gz", ".tar.gz")])
def test_scenario_as_tarball(mode: str, suffix: str, tmp_path: Path) -> None:
    name = next(n for n in SCENARIOS if "centos7-docker-ce" in n) if any("centos7-docker-ce" in n for n in SCENARIOS) \
        else SCENARIOS[0]
    root, expected = _prepare(name, tmp_path)
    tar = tmp_path / f"sosreport-{name}{suffix}"
    with tarfile.open(tar, mode) as t:
        t.add(root, arcname=f"sosreport-{name}")
    _check(tar, expected)


def test_there_are_healthy_and_broken_scenarios() -> None:
    expectations = [json.loads((HOSTS / n / "expected.json").read_text()) for n in SCENARIOS]
    assert any(not e["fire"] for e in expectations), "no healthy scenario"
    covered = {rid for e in expectations for rid in e["fire"]}
    for rid in ["DD101", "DD102", "DD103", "DD104", "DD105", "DD106", "DD107", "DD108", "DD109", "DD110", "DD501"]:
        assert rid in covered, f"no scenario where {rid} fires"
