"""A fix --root run stays inside its snapshot: it reads and writes through links chroot-style, keeps its
backups beside the snapshot, prints the exact Undo command, and its rollback touches no daemon."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
DD = [sys.executable, "-m", "dockerdoctor"]


def dd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=120)


def _escaping_snapshot(tmp_path: Path) -> tuple[Path, Path]:
    snap = tmp_path / "s"
    shutil.copytree(HOSTS / "docker-ce-http-registry-not-trusted", snap, symlinks=True)
    shutil.rmtree(snap / "etc/docker")
    (snap / "expected.json").unlink()
    out = tmp_path / "out"
    out.mkdir()
    (out / "daemon.json").write_text('{"debug": true}\n')
    (snap / "etc/docker").symlink_to(out)  # an absolute link out of the snapshot
    return snap, out


def _digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()}


def test_a_directory_link_does_not_lead_a_fix_out_of_the_snapshot(tmp_path: Path) -> None:
    snap, out = _escaping_snapshot(tmp_path)
    before = _digest(out)
    plan = dd("fix", "--root", str(snap), "--registry", "10.0.0.5:5000", "--insecure")
    assert '"debug": true' not in plan.stdout  # the dry run did not read the file outside
    r = dd("fix", "--root", str(snap), "--registry", "10.0.0.5:5000", "--insecure", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _digest(out) == before
    written = snap / str(out).lstrip("/") / "daemon.json"  # where the link leads inside the snapshot
    assert json.loads(written.read_text())["insecure-registries"] == ["10.0.0.5:5000"]
    backups = Path(str(snap) + ".dockerdoctor") / "backups"
    assert backups.is_dir() and len(list(backups.iterdir())) == 1  # beside the snapshot, not /var/lib


def test_the_undo_hint_is_the_exact_command_and_rollback_touches_no_daemon(tmp_path: Path) -> None:
    snap = tmp_path / "copy"
    shutil.copytree(HOSTS / "centos7-docker-ce-ignores-sysconfig", snap, symlinks=True)
    original = _digest(snap / "etc")
    state = tmp_path / "state5"
    r = dd("fix", "--apply", "--yes", "--root", str(snap), "--state-dir", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    hint = r.stdout.rsplit("Undo with `", 1)[1].split("`", 1)[0]
    assert f"--root {snap}" in hint and f"--state-dir {state}" in hint
    listing = dd("fix", "--list-backups", "--state-dir", str(state)).stdout
    assert f"[snapshot {snap}]" in listing
    # without --root, and with a daemon socket that exists nowhere: still only the snapshot's files
    undo = dd(*hint.split()[1:], "--yes", "-H", f"unix://{tmp_path}/none.sock")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert "no daemon is reloaded" in undo.stdout and "not running" not in undo.stderr
    assert _digest(snap / "etc") == original
    assert "rolled-back" in dd("fix", "--list-backups", "--state-dir", str(state)).stdout
