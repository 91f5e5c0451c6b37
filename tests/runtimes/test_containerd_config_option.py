"""`--containerd-config FILE` on check, fix and resolve: the containerd the DD6xx rules judge is the one whose
config.toml is named, in a snapshot as on a live host (the live case, against a real containerd, is
tests/runtimes/test_lab_containerd.py, which passes the same option through CheckOptions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
DD = [sys.executable, "-m", "dockerdoctor"]
REG = "10.0.0.5:5000"
# a second containerd on the node (say, one a test or another runtime started), without config_path
ALT = '# a second containerd\nversion = 2\n\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


def host(tmp_path: Path) -> Path:
    root = tmp_path / "h"
    shutil.copytree(FIXTURES / "kubeadm-containerd16-http-registry-healthy", root, symlinks=True)
    (root / "etc/containerd/alt.toml").write_text(ALT)
    return root


def ids(out: str) -> list[str]:
    return sorted({f["id"] for f in json.loads(out)["findings"]})


def test_check_judges_the_named_containerd(tmp_path: Path) -> None:
    root = host(tmp_path)
    base = ["check", "--root", str(root), "--registry", REG, "--select", "DD6", "--format", "json"]
    assert ids(run(*base).stdout) == []  # the running containerd (ps) has config_path and a right hosts.toml
    named = run(*base, "--containerd-config", "/etc/containerd/alt.toml")
    assert ids(named.stdout) == ["DD602"], named.stdout + named.stderr
    assert "/etc/containerd/alt.toml" in named.stdout


def test_fix_edits_the_named_config_toml(tmp_path: Path) -> None:
    root = host(tmp_path)
    main_before = (root / "etc/containerd/config.toml").read_text()
    r = run("fix", "--root", str(root), "--registry", REG, "--containerd-config", "/etc/containerd/alt.toml",
            "--only", "DD602", "--apply", "--yes", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'config_path = "/etc/containerd/certs.d"' in (root / "etc/containerd/alt.toml").read_text()
    assert (root / "etc/containerd/config.toml").read_text() == main_before
    assert "Services: restart containerd.service" in r.stdout and "Verified" in r.stdout, r.stdout


def test_resolve_takes_it_too(tmp_path: Path) -> None:
    root = host(tmp_path)
    doc = json.loads(run("resolve", f"{REG}/app:1", "--root", str(root), "--containerd-config",
                         "/etc/containerd/alt.toml", "--format", "json").stdout)
    text = json.dumps(doc)
    assert "/etc/containerd/alt.toml" in text
