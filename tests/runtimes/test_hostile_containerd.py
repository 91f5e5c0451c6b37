"""Hostile input for the containerd family: one clear answer in bounded time, never a traceback.

Not a speed target (bench/ holds those): a guard against two quadratic scans coming back, each of which ran
past 60 s on these inputs (the table-header regex of toml_lines: 17 s on a 2 KB line; the containerd
patterns of the knowledge base: 35 s on a 224 KB paste)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HANG = 60
DD = [sys.executable, "-m", "dockerdoctor"]


def py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=HANG)


def test_unclosed_table_header_of_a_megabyte() -> None:
    r = py("from dockerdoctor.runtimes.hosts_toml import parse_hosts_toml\n"
           "from dockerdoctor.runtimes.toml_scan import toml_lines\n"
           "from dockerdoctor.runtimes.containerd_config import parse_containerd_config\n"
           "t = '[' + ' ' * 1_000_000 + 'x\\n'\n"
           "toml_lines(t * 3); h = parse_hosts_toml(t, 'h'); c = parse_containerd_config(t, 'c')\n"
           "print(bool(h.error), bool(c.error))")
    assert r.returncode == 0 and r.stdout.split() == ["True", "True"], r.stderr[-500:]


def test_explain_paste_repeating_the_containerd_wrapper() -> None:
    text = "failed to resolve reference " * 32000 + " x509: certificate signed by unknown authorit"
    r = subprocess.run([*DD, "explain", "-", "--format", "json"], input=text, capture_output=True, text=True,
                       timeout=HANG)
    assert r.returncode in (0, 1), r.stderr[-500:]
    json.loads(r.stdout)


def test_snapshot_with_hostile_containerd_files(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "etc/containerd/certs.d/10.0.0.5:5000").mkdir(parents=True)
    (root / "etc/containerd/certs.d/10.0.0.5:5000/hosts.toml").write_text("[" + " " * 500_000 + "\n" + "\x00\x1b[31m")
    (root / "etc/containerd/config.toml").write_text(
        'version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
        '  config_path = "/etc/containerd/certs.d"\n')
    (root / "etc/containerd/conf.d").mkdir()
    (root / "etc/containerd/conf.d/a.toml").write_bytes(b"\xff\xfe not utf-8 [[[")
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "etc/rancher/k3s/registries.yaml").write_text("mirrors: &a [*a, *a]\nconfigs: {{{{\n" + "- " * 100000)
    r = subprocess.run([*DD, "check", "--root", str(root), "--registry", "10.0.0.5:5000", "--select", "DD6",
                        "--format", "json"], capture_output=True, text=True, timeout=HANG)
    assert r.returncode in (0, 1), r.stderr[-800:]
    data = json.loads(r.stdout)
    assert data["summary"]["rules_crashed"] == 0, [x for x in data["rules"] if x["status"] == "crashed"]
    assert "DD601" in {f["id"] for f in data["findings"]}
    assert "\x1b" not in r.stdout
