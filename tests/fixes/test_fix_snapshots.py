"""fix --apply on copies of the fixtures/hosts snapshots (no systemd here): exact file results, and
`check --root` on the result is clean for the rule that was fixed. Service actions are listed as
"not run (snapshot)"; commands are never run against the machine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
DD = [sys.executable, "-m", "dockerdoctor"]
REG = "10.0.0.5:5000"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DD, *args], capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    )


def copy(name: str, tmp_path: Path) -> Path:
    src = FIXTURES / name
    if not src.is_dir():
        pytest.skip(f"fixture {name} is not there")
    dst = tmp_path / name
    shutil.copytree(src, dst, symlinks=True)
    return dst


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def apply(root: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "fix",
        "--root",
        str(root),
        "--registry",
        REG,
        "--apply",
        "--yes",
        "--state-dir",
        str(tmp_path / "state"),
        *extra,
    )


def clean_for(root: Path, rule: str) -> None:
    r = run("check", "--root", str(root), "--registry", REG, "--select", rule, "--format", "json")
    report = json.loads(r.stdout)
    assert [f["id"] for f in report["findings"] if f["id"] == rule] == [], r.stdout


CASES = {
    # name: (rule, relative path, exact content after the fix)
    "docker-ce-daemon-json-trailing-comma": (
        "DD106",
        "etc/docker/daemon.json",
        '{\n  "insecure-registries": [\n    "10.0.0.5:5000"\n  ]\n}\n',
    ),
    # edited in place: only the changed value (or key) differs, the one-line value stays on one line
    "docker-ce-daemon-json-insecure-registries-string": (
        "DD106",
        "etc/docker/daemon.json",
        '{\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n',
    ),
    "docker-ce-daemon-json-singular-insecure-registry-key": (
        "DD106",
        "etc/docker/daemon.json",
        '{\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n',
    ),
    "centos7-dropin-execstart-drops-insecure-registry": (
        "DD103",
        "etc/systemd/system/docker.service.d/20-expand-vars.conf",
        "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd-current --add-runtime "
        "docker-runc=/usr/libexec/docker/docker-runc-current --default-runtime=docker-runc --exec-opt "
        "native.cgroupdriver=systemd --userland-proxy-path=/usr/libexec/docker/docker-proxy-current "
        "--init-path=/usr/libexec/docker/docker-init-current --seccomp-profile=/etc/docker/seccomp.json "
        "-H unix:///var/run/docker.sock -H tcp://127.0.0.1:2375 $OPTIONS $DOCKER_STORAGE_OPTIONS "
        "$DOCKER_NETWORK_OPTIONS $INSECURE_REGISTRY\n",
    ),
    "docker-ce-http-proxy-catches-registry": (
        "DD110",
        "etc/systemd/system/docker.service.d/http-proxy.conf",
        "[Service]\n"
        'Environment="HTTP_PROXY=http://proxy.corp.example.com:3128"\n'
        'Environment="HTTPS_PROXY=http://proxy.corp.example.com:3128"\n'
        'Environment="NO_PROXY=localhost,127.0.0.1,.corp.example.com,10.0.0.5"\n',
    ),
    "debian12-docker.io-hosts-flag-and-daemon-json": (
        "DD104",
        "etc/systemd/system/docker.service.d/10-no-conflict.conf",
        None,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_snapshot_fix_exact_result_and_clean_check(name: str, tmp_path: Path) -> None:
    rule, rel, want = CASES[name]
    root = copy(name, tmp_path)
    before = files(root)
    r = apply(root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(rf"Verified: [^\n]*{rule}", r.stdout), r.stdout
    assert "not run (snapshot)" in r.stdout
    after = files(root)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert rel in changed
    if want is not None:
        assert after[rel].decode() == want
    clean_for(root, rule)
    # idempotent, then undo: byte-identical
    again = apply(root, tmp_path)
    assert again.returncode == 0 and "Backed up" not in again.stdout, again.stdout
    undo = run("fix", "--rollback", "last", "--yes", "--root", str(root), "--state-dir", str(tmp_path / "state"))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert files(root) == before


def test_plain_http_registry_gets_the_insecure_alternative_with_its_warning(tmp_path: Path) -> None:
    root = copy("docker-ce-http-registry-not-trusted", tmp_path)
    original = json.loads((root / "etc/docker/daemon.json").read_text())
    plan = run("fix", "--root", str(root), "--registry", REG)
    assert "CIS Docker Benchmark 2.4" in plan.stdout and "no --ca was given" in plan.stdout
    assert "Services: reload dockerd (SIGHUP" in plan.stdout
    r = apply(root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((root / "etc/docker/daemon.json").read_text())
    assert list(data)[: len(original)] == list(original)  # other keys kept, in order
    assert data["insecure-registries"] == [REG]
    clean_for(root, "DD101")


def test_ignored_sysconfig_registry_is_moved_into_daemon_json(tmp_path: Path) -> None:
    """centos7-docker-ce-ignores-sysconfig: INSECURE_REGISTRY moves into daemon.json (and is emptied in
    the ignored file); the old OPTIONS (with Red Hat-only flags) are advice only and never loaded
    blindly. Only SIGHUP is needed: the env file is not loaded by docker.service."""
    root = copy("centos7-docker-ce-ignores-sysconfig", tmp_path)
    r = apply(root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads((root / "etc/docker/daemon.json").read_text()) == {"insecure-registries": [REG]}
    sysconfig = (root / "etc/sysconfig/docker").read_text()
    assert "INSECURE_REGISTRY=''" in sysconfig
    assert "OPTIONS='--selinux-enabled --log-driver=journald --signature-verification=false'" in sysconfig
    clean_for(root, "DD101")
    report = json.loads(run("check", "--root", str(root), "--registry", REG, "--select", "DD102",
                            "--format", "json").stdout)
    assert [(f["id"], f["severity"], f["params"]["variable"]) for f in report["findings"]] == [
        ("DD102", "warning", "OPTIONS")]


@pytest.mark.parametrize(
    "name, rule, dropin",
    [
        ("docker-ce-insecure-registry-flag-and-daemon-json", "DD104", "zz-10-no-conflict.conf"),
        ("docker-ce-execstart-docker-daemon", "DD109", "zz-10-exec.conf"),
    ],
)
def test_new_dropin_sorts_after_the_hosts_own(name: str, rule: str, dropin: str, tmp_path: Path) -> None:
    """The host has override.conf / docker.conf; a fix's 10-*.conf would sort before it and never take
    effect, so the engine names it to come last. check --root is then clean for the rule."""
    root = copy(name, tmp_path)
    plan = run("fix", "--root", str(root), "--registry", REG)
    assert f"docker.service.d/{dropin}" in plan.stdout
    r = apply(root, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "etc/systemd/system/docker.service.d" / dropin).is_file()
    clean_for(root, rule)
