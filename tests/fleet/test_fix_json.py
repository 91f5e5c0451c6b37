"""`fix --format json` carries what the Ansible fix module needs: changed, files before/after, backups."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fleetkit import FIXTURES, dd

SCENARIO = "centos7-docker-ce-ignores-sysconfig"


def test_plan_and_apply_name_the_files_their_contents_and_backups(tmp_path: Path) -> None:
    root = tmp_path / "snap"
    shutil.copytree(FIXTURES / SCENARIO, root, symlinks=True)
    before = (root / "etc/sysconfig/docker").read_text()
    plan = json.loads(dd("fix", "--root", str(root), "--registry", "10.0.0.5:5000", "--format", "json").stdout)
    assert plan["changed"] is True and plan["service"] == {"action": "reload", "daemon_reload": False}
    files = {f["path"]: f for f in plan["files"]}
    assert files["/etc/sysconfig/docker"]["before"] == before and files["/etc/sysconfig/docker"]["existed"]
    assert files["/etc/docker/daemon.json"] == {**files["/etc/docker/daemon.json"], "existed": False, "before": None}
    assert json.loads(files["/etc/docker/daemon.json"]["after"]) == {"insecure-registries": ["10.0.0.5:5000"]}
    assert (root / "etc/sysconfig/docker").read_text() == before  # a plan changes nothing

    r = dd("fix", "--root", str(root), "--registry", "10.0.0.5:5000", "--apply", "--yes", "--format", "json",
           "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 0, r.stdout + r.stderr
    done = json.loads(r.stdout)
    assert done["status"] == "applied" and done["changed"] is True
    assert Path(done["backup_dir"], "manifest.json").is_file()
    backups = {b["path"]: b["backup"] for b in done["backups"]}
    assert Path(backups["/etc/sysconfig/docker"]).read_text() == before
    assert backups["/etc/docker/daemon.json"] is None  # it did not exist: nothing to copy
    assert (root / "etc/sysconfig/docker").read_text() == files["/etc/sysconfig/docker"]["after"]

    again = json.loads(dd("fix", "--root", str(root), "--registry", "10.0.0.5:5000", "--apply", "--yes",
                          "--format", "json", "--state-dir", str(tmp_path / "state")).stdout)
    assert again["status"] == "nothing" and again["changed"] is False and again["files"] == []
