"""`fix --root DIR --apply` for DD602-DD607 on copies of the fixtures: the files written (only inside the
snapshot), the service actions named but not run, and `check --root` clean afterwards for the rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
DD = [sys.executable, "-m", "dockerdoctor"]
REG = "10.0.0.5:5000"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name,rule,changed,service", [
    ("kubeadm-containerd16-http-registry-no-hosts-toml", "DD604",
     {"etc/containerd/certs.d/10.0.0.5:5000/hosts.toml"}, None),
    ("kubeadm-containerd16-hosts-toml-no-config-path", "DD602", {"etc/containerd/config.toml"}, "containerd.service"),
    ("kubeadm-containerd16-config-path-and-mirrors", "DD603",
     {"etc/containerd/config.toml", "etc/containerd/certs.d/10.0.0.5:5000/hosts.toml"}, "containerd.service"),
    ("k3s-registries-yaml-configs-under-mirrors", "DD607", {"etc/rancher/k3s/registries.yaml"}, "k3s.service"),
    ("docker-ce-containerd-store-insecure-registries-only", "DD606",
     {"etc/docker/certs.d/10.0.0.5:5000/hosts.toml"}, None),
])
def test_fix_apply_on_snapshot(name: str, rule: str, changed: set[str], service: str | None, tmp_path: Path) -> None:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    before = files(root)
    args = ["--root", str(root), "--registry", REG]
    r = run("fix", *args, "--apply", "--yes", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 0, r.stdout + r.stderr
    after = files(root)
    diff = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert diff == changed, (diff, r.stdout)
    if service:
        assert f"systemctl restart {service}" in r.stdout, r.stdout  # shown; a snapshot runs no service
        # the summary says so too (it said "no reload or restart needed" while a restart was planned)
        assert f"Services: restart {service} (not run on a snapshot" in r.stdout, r.stdout
        assert "no reload or restart needed" not in r.stdout, r.stdout
        assert f"not run (snapshot): restart {service}" in r.stdout, r.stdout
    else:
        assert "Services: no reload or restart needed" in r.stdout, r.stdout
    assert f"[{rule}]" in r.stdout, r.stdout
    report = json.loads(run("check", *args, "--select", "DD6", "--format", "json").stdout)
    assert [f["id"] for f in report["findings"]] == [], report["findings"]
    for rel in changed:
        text = after[rel].decode()
        if rel.endswith(".toml"):
            tomllib.loads(text)  # valid TOML
        if rel.endswith("config.toml"):
            # everything but the registry section kept as it was
            assert 'sandbox_image = "registry.k8s.io/pause:3.6"' in text and "SystemdCgroup = true" in text


def test_fix_json_names_the_other_services(tmp_path: Path) -> None:
    root = tmp_path / "h"
    shutil.copytree(FIXTURES / "kubeadm-containerd16-hosts-toml-no-config-path", root, symlinks=True)
    plan = json.loads(run("fix", "--root", str(root), "--registry", REG, "--format", "json").stdout)
    assert plan["other_services"] == [{"action": "restart", "unit": "containerd.service"}], plan.get("other_services")
    assert plan["service"] == {"action": None, "daemon_reload": False}


def test_healthy_check_never_imports_the_editing_libraries() -> None:
    """tomlkit and ruamel.yaml load only when a fix edits such a file, not on every `check`."""
    code = ("import sys; from dockerdoctor.__main__ import main\n"
            "sys.argv = ['dockerdoctor', 'check', '--root', sys.argv[1], '--registry', '10.0.0.5:5000']\n"
            "try:\n main()\n"
            "except SystemExit: pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('tomlkit', 'ruamel')))")
    for name in ("kubeadm-containerd16-http-registry-healthy", "k3s-registries-yaml-http-healthy"):
        r = subprocess.run([sys.executable, "-c", code, str(FIXTURES / name)], capture_output=True, text=True,
                           timeout=120)
        assert "LOADED []" in r.stdout, (name, r.stdout[-300:], r.stderr[-500:])


def test_the_same_findings_from_a_sosreport_tarball(tmp_path: Path) -> None:
    """A sosreport of the node (sos's top directory, version.txt, .tar.xz) gives what the directory gives."""
    import tarfile

    name = "kubeadm-containerd16-http-registry-no-hosts-toml"
    top = tmp_path / "sosreport-node1-2024-03-04-abcdefg"
    shutil.copytree(FIXTURES / name, top, symlinks=True)
    (top / "expected.json").unlink()
    (top / "version.txt").write_text("sosreport: 4.5.6\n")
    tar = tmp_path / f"{top.name}.tar.xz"
    with tarfile.open(tar, "w:xz") as t:
        t.add(top, arcname=top.name)

    def ids(path: Path) -> list[tuple[str, str]]:
        out = run("check", "--root", str(path), "--registry", REG, "--select", "DD6", "--format", "json")
        return sorted((f["id"], f["title"]) for f in json.loads(out.stdout)["findings"])

    got = ids(tar)
    assert [i for i, _ in got] == ["DD604", "DD605"] and got == ids(FIXTURES / name)


def test_live_plan_summary_names_the_containerd_restart() -> None:
    from dockerdoctor.fixes.choose import Choice
    from dockerdoctor.fixes.plan import Plan, PlanStep
    from dockerdoctor.fixes.prepare import Prepared, PreparedStep
    from dockerdoctor.model import Finding, Fix, ReplaceFileContent, ServiceAction, Severity
    from dockerdoctor.report.plan import plan_lines

    ops = (ReplaceFileContent("/etc/containerd/config.toml", "x", 0o644),
           ServiceAction("restart", "containerd.service"))
    fix = Fix("Set config_path", ops, warnings=("config.toml is read at start",))
    choice = Choice(Finding("DD602", Severity.WARNING, "t", "m"), fix)
    changes: dict = {"/etc/containerd/config.toml": object()}
    prepared = Prepared([PreparedStep(choice, changes=1)], changes, [], None, False, [], [], True, False,
                        [("restart", "containerd.service")])
    plan = Plan([PlanStep(choice.finding, fix)], [])
    lines = list(plan_lines(plan, [choice], prepared, [choice.finding], [], dry_run=False))
    assert "Services: restart containerd.service" in lines, lines
    assert "  because [DD602] restart containerd.service: config.toml is read at start" in lines, lines
    assert not any("no reload or restart needed" in ln for ln in lines)
