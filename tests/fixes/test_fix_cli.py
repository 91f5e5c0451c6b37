"""`dockerdoctor fix` as a user sees it: confirmation, one-line errors with exit 2, backups listing,
rollback, and a run killed between its backups and its writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from snap import docker_ce_host

DD = [sys.executable, "-m", "dockerdoctor"]
REG = "10.0.0.5:5000"
JOURNAL_PATH = "sos_commands/docker/journalctl_--no-pager_--unit_docker"
JOURNAL = {
    JOURNAL_PATH: f'level=info msg="Attempting next endpoint for push after error: Get \\"https://{REG}/v2/\\": '
    'http: server gave HTTP response to HTTPS client"\n'
}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DD, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **(env or {})},
    )


def host(tmp_path: Path) -> Path:
    return docker_ce_host(tmp_path / "h", daemon_json='{\n  "debug": true\n}\n', insecure_running=(), extra=JOURNAL)


def test_apply_without_yes_and_without_a_terminal_changes_nothing(tmp_path: Path) -> None:
    root = host(tmp_path)
    before = (root / "etc/docker/daemon.json").read_bytes()
    r = run("fix", "--root", str(root), "--registry", REG, "--apply", "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "dockerdoctor: error: refusing to change this host without confirmation: add --yes"
    ]
    assert (root / "etc/docker/daemon.json").read_bytes() == before


def test_bad_ca_and_unknown_run_are_one_line_errors(tmp_path: Path) -> None:
    root = host(tmp_path)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello\n")
    for args in (
        ["--ca", str(tmp_path / "missing.crt")],
        ["--ca", str(not_pem)],
        ["--rollback", "20990101T000000Z-dead"],
    ):
        r = run("fix", "--root", str(root), "--registry", REG, "--state-dir", str(tmp_path / "s"), *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("dockerdoctor: error: ")


def test_crash_after_backup_is_detected_and_rolled_back(tmp_path: Path) -> None:
    root = host(tmp_path)
    dj = root / "etc/docker/daemon.json"
    original = dj.read_bytes()
    state = str(tmp_path / "s")
    common = ["--root", str(root), "--registry", REG, "--state-dir", state]
    r = run("fix", *common, "--apply", "--yes", env={"DOCKERDOCTOR_FAULT": "after-write"})
    assert r.returncode == 86  # killed between the write and the end of the transaction
    assert dj.read_bytes() != original
    listing = run("fix", "--list-backups", "--state-dir", state)
    run_id, status = listing.stdout.split()[:2]
    assert status == "writing"
    again = run("fix", *common, "--apply", "--yes")
    assert again.returncode == 2
    assert f"dockerdoctor fix --rollback {run_id}" in again.stderr
    assert dj.read_bytes() != original  # nothing was done on top of the interrupted run
    dry = run("fix", *common)
    assert f"warning: run {run_id} stopped after its backups" in dry.stdout
    undo = run("fix", "--rollback", "--yes", *common[:2], "--state-dir", state)  # no RUN-ID: the last run
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert dj.read_bytes() == original
    assert run("fix", "--list-backups", "--state-dir", state).stdout.split()[1] == "rolled-back"
    # and now the fix goes through
    ok = run("fix", *common, "--apply", "--yes")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_apply_refuses_a_tarball_root(tmp_path: Path) -> None:
    tar = tmp_path / "s.tar.gz"
    subprocess.run(["tar", "-czf", str(tar), "-C", str(host(tmp_path)), "."], check=True)
    r = run("fix", "--root", str(tar), "--apply", "--yes", "--state-dir", str(tmp_path / "s"))
    assert r.returncode == 2 and "not a tarball" in r.stderr


def test_state_dir_that_cannot_be_created_is_a_one_line_error(tmp_path: Path) -> None:
    root = host(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("fix", "--root", str(root), "--registry", REG, "--apply", "--yes", "--state-dir", str(blocker / "s"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "state directory" in r.stderr
    assert os.path.exists(root / "etc/docker/daemon.json")


def test_apply_with_json_output_is_one_json_document(tmp_path: Path) -> None:
    import json

    root = host(tmp_path)
    r = run(
        "fix",
        "--root",
        str(root),
        "--registry",
        REG,
        "--apply",
        "--yes",
        "--format",
        "json",
        "--state-dir",
        str(tmp_path / "s"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "applied" and out["run_id"] and any("wrote" in x for x in out["log"])
    assert "Backed up" in r.stderr
    again = json.loads(
        run(
            "fix",
            "--root",
            str(root),
            "--registry",
            REG,
            "--apply",
            "--yes",
            "--format",
            "json",
            "--state-dir",
            str(tmp_path / "s"),
        ).stdout
    )
    assert again["status"] == "nothing"


@pytest.mark.real("script")
def test_on_a_terminal_the_interrupted_run_is_offered_for_rollback(tmp_path: Path) -> None:
    import shutil

    import pytest

    if not shutil.which("script"):
        pytest.skip("util-linux `script` (a pseudo-terminal) is not installed")
    root = host(tmp_path)
    dj = root / "etc/docker/daemon.json"
    original = dj.read_bytes()
    common = ["--root", str(root), "--registry", REG, "--state-dir", str(tmp_path / "s")]
    assert run("fix", *common, "--apply", "--yes", env={"DOCKERDOCTOR_FAULT": "after-write"}).returncode == 86
    cmd = " ".join([*DD, "fix", *common, "--apply"])
    r = subprocess.run(
        ["script", "-qec", cmd, "/dev/null"],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert "was interrupted after its backups. Roll it back now?" in r.stdout, r.stdout
    assert r.returncode == 0, r.stdout
    assert dj.read_bytes() == original
