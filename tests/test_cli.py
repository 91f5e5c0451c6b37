"""The command line as a user and a CI pipeline see it: reports, selection, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from snap import docker_ce_host, make_snapshot

DD = [sys.executable, "-m", "dockerdoctor"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, input=stdin, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    return docker_ce_host(tmp_path / "healthy")


@pytest.fixture
def broken_json(tmp_path: Path) -> Path:
    return docker_ce_host(tmp_path / "broken", daemon_json='{\n  "insecure-registries": ["10.0.0.5:5000"],\n}\n')


def test_version_is_fast_path():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("dockerdoctor ")


def test_rich_stays_out_of_start_up():
    """typer < 0.16 imports rich whenever it is installed (~140 ms); the CLI loads typer without it."""
    import importlib.util

    if importlib.util.find_spec("rich") is None:
        pytest.skip("rich is not installed here, so nothing can pull it in")
    code = "import sys, dockerdoctor.cli, typer.core; print('rich' in sys.modules, typer.core.rich)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["False", "None"], r.stderr


def test_healthy_snapshot_exits_zero_and_says_so(healthy: Path):
    r = run("check", "--root", str(healthy))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No issues found" in r.stdout
    assert "[✓] Daemon configuration" in r.stdout


def test_broken_json_is_a_finding_not_a_traceback(broken_json: Path):
    r = run("check", "--root", str(broken_json))
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "DD106" in r.stdout and "[✗] Daemon configuration" in r.stdout
    assert "/etc/docker/daemon.json:3" in r.stdout


def test_json_report_schema(broken_json: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    r = run("check", "--root", str(broken_json), "--format", "json", "--output", str(out))
    assert r.returncode == 1 and r.stdout == ""
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1
    assert data["exit_code"] == 1
    f = [f for f in data["findings"] if f["id"] == "DD106"][0]
    assert set(f) >= {"id", "severity", "title", "message", "evidence", "fix"}
    assert f["fix"]["operations"][0]["kind"] == "write-file"
    statuses = {r["id"]: r["status"] for r in data["rules"]}
    assert statuses["DD106"] == "failed"
    assert statuses["DD502"] == "skipped"
    skipped = [r for r in data["rules"] if r["status"] == "skipped"]
    assert all(r["reason"] for r in skipped)
    import jsonschema

    schema = json.loads((Path(__file__).parent.parent / "docs" / "report-schema.json").read_text())
    jsonschema.validate(data, schema)


def test_junit_has_one_testcase_per_rule(broken_json: Path):
    r = run("check", "--root", str(broken_json), "--format", "junit")
    root = ET.fromstring(r.stdout)
    cases = root.findall("testcase")
    rules = json.loads(run("rules", "--format", "json").stdout)["rules"]
    assert len(cases) == len(rules)
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name").split()[0] for c in failed] == ["DD106"]


def test_ignore_demotes_to_warning_and_fail_on(broken_json: Path):
    r = run("check", "--root", str(broken_json), "--ignore", "DD106")
    assert r.returncode == 0
    assert "ignored" in r.stdout and "DD106" in r.stdout
    r2 = run("check", "--root", str(broken_json), "--ignore", "DD106", "--fail-on", "warning")
    assert r2.returncode == 1
    r3 = run("check", "--root", str(broken_json), "--fail-on", "never")
    assert r3.returncode == 0


def test_select_prefix_and_all(broken_json: Path):
    data = json.loads(run("check", "--root", str(broken_json), "--select", "DD5", "--format", "json").stdout)
    ran = {r["id"] for r in data["rules"] if r["status"] != "not-selected"}
    assert ran == {"DD501", "DD502"}
    assert data["exit_code"] == 0
    data = json.loads(run("check", "--root", str(broken_json), "--select", "all", "--format", "json").stdout)
    assert not [r for r in data["rules"] if r["status"] == "not-selected"]


def test_usage_and_input_errors_exit_2(tmp_path: Path, healthy: Path):
    assert run("check", "--root", str(tmp_path / "nope")).returncode == 2
    assert run("check", "--root", str(healthy), "--select", "DD999").returncode == 2
    assert run("check", "--root", str(healthy), "--registry", "nohostport:").returncode == 2
    assert run("check", "--bogus-flag").returncode == 2
    for host in ("bogus", "/var/run/docker.sock", "tcp://:2375"):  # a -H the docker CLI would refuse too
        r = run("check", "-H", host)
        assert r.returncode == 2 and "--docker-host" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([*DD, "check"], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "bogus"})
    assert r.returncode == 2 and r.stderr.startswith("dockerdoctor: error: DOCKER_HOST 'bogus'"), r.stderr
    garbage = tmp_path / "garbage.tar.xz"
    garbage.write_bytes(b"\x00\xff" * 500)
    r = run("check", "--root", str(garbage))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run("check", "--root", str(empty))
    assert r.returncode == 2 and "does not look like" in r.stderr


@pytest.mark.parametrize("mode", ["w:xz", "w:gz"])
def test_sosreport_tarball(tmp_path: Path, mode: str):
    src = docker_ce_host(tmp_path / "sosreport-host-2026", daemon_json='{"insecure-registry": ["10.0.0.5:5000"]}')
    tar = tmp_path / ("s.tar.xz" if mode == "w:xz" else "s.tar.gz")
    with tarfile.open(tar, mode) as t:
        t.add(src, arcname="sosreport-host-2026")
    data = json.loads(run("check", "--root", str(tar), "--format", "json").stdout)
    assert "DD106" in {f["id"] for f in data["findings"]}


def test_snapshot_symlink_cannot_escape(tmp_path: Path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"insecure-registries": "not-a-list"}')
    snap = docker_ce_host(tmp_path / "s", daemon_json=None)
    (snap / "etc/docker").mkdir(parents=True)
    (snap / "etc/docker/daemon.json").symlink_to(outside)
    data = json.loads(run("check", "--root", str(snap), "--format", "json").stdout)
    assert "DD106" not in {f["id"] for f in data["findings"]}


def test_binary_garbage_files_do_not_crash(tmp_path: Path):
    snap = make_snapshot(tmp_path / "g", {
        "etc/docker/daemon.json": "\x00\x01\xfe{{{",
        "usr/lib/systemd/system/docker.service": "\x00[Service\nExecStart=\x00\xff",
        "etc/sysconfig/docker": "OPTIONS='\x00\n",
        "sos_commands/process/ps_auxwww": "\x00\xff\n" * 10,
        "sos_commands/docker/docker_info": "Server Version: \x00\n Insecure Registries:\n  [::1\n",
    })
    r = run("check", "--root", str(snap), "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)
    assert data["summary"]["rules_crashed"] == 0


def test_rules_and_explain():
    r = run("rules")
    assert r.returncode == 0 and "DD104" in r.stdout
    e = run("explain", "DD104")
    assert e.returncode == 0
    assert "specified both as a flag and in the configuration file" in e.stdout
    assert "How to fix" in e.stdout and "Example" in e.stdout
    assert run("explain", "flag-and-file-conflict").stdout == e.stdout


def test_every_rule_is_documented():
    """Each rule's `explain` has a fix and an example. The first one runs as a process; the rest go
    through the same typer app in this process (a process each took 20 s for the catalog)."""
    from typer.testing import CliRunner

    from dockerdoctor.cli import app

    rules = json.loads(run("rules", "--format", "json").stdout)["rules"]
    assert len(rules) > 40
    first = json.loads(run("explain", rules[0]["id"], "--format", "json").stdout)["doc"]
    runner = CliRunner()
    for rule in rules:
        r = runner.invoke(app, ["explain", rule["id"], "--format", "json"])
        assert r.exit_code == 0, (rule["id"], r.output)
        doc = json.loads(r.stdout)["doc"]
        assert "How to fix" in doc and "Example" in doc, rule["id"]
        if rule is rules[0]:
            assert doc == first  # in-process and as a process: the same answer


def test_fix_plan_shows_diff_and_changes_nothing(broken_json: Path):
    before = (broken_json / "etc/docker/daemon.json").read_text()
    r = run("fix", "--root", str(broken_json))
    assert r.returncode == 0
    assert "--- a/etc/docker/daemon.json" in r.stdout and "+++ b/etc/docker/daemon.json" in r.stdout
    assert "dry run" in r.stdout
    assert (broken_json / "etc/docker/daemon.json").read_text() == before


def test_help_teaches():
    r = run("check", "--help")
    assert r.returncode == 0
    assert "Exit codes" in r.stdout and "--registry" in r.stdout and "Examples" in r.stdout


def test_shell_completion_offers_rule_ids():
    import os

    env = {"PATH": "/usr/bin:/bin", "_DOCKERDOCTOR_COMPLETE": "complete_bash",
           "COMP_WORDS": "dockerdoctor explain DD10", "COMP_CWORD": "2"}
    exe = str(Path(sys.executable).parent / "dockerdoctor")  # the installed script, as a shell calls it
    r = subprocess.run([exe], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert "DD104" in r.stdout.split() and "DD201" not in r.stdout.split()


@pytest.mark.parametrize("name", ["centos7-docker-ce-ignores-sysconfig",
                                  "debian12-docker.io-hosts-flag-and-daemon-json",
                                  "docker-ce-python-registry-setup-database-lock-crash"])
def test_json_reports_of_fixtures_follow_the_schema(name: str):
    import jsonschema

    root = Path(__file__).parent.parent / "fixtures" / "hosts" / name
    data = json.loads(run("check", "--root", str(root), "--registry", "10.0.0.5:5000", "--format", "json").stdout)
    schema = json.loads((Path(__file__).parent.parent / "docs" / "report-schema.json").read_text())
    jsonschema.validate(data, schema)
    assert data["findings"], "these fixtures have findings"


def test_third_party_rule_packs_are_still_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """discover() skips importlib.metadata unless some distribution declares a pack besides the core one."""
    from dockerdoctor.engine import _other_rule_packs_declared

    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    core = tmp_path / "dockerdoctor-0.1.0.dist-info"
    core.mkdir()
    (core / "entry_points.txt").write_text("[console_scripts]\ndockerdoctor = x:y\n\n[dockerdoctor.rules]\n"
                                           "core = dockerdoctor.rules\n")
    assert not _other_rule_packs_declared()
    pack = tmp_path / "acme_rules-1.0.dist-info"
    pack.mkdir()
    (pack / "entry_points.txt").write_text("[dockerdoctor.rules]\nacme = acme_rules\n")
    assert _other_rule_packs_declared()


def test_a_remote_daemon_is_not_probed_from_here_and_the_report_says_so():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: the daemon "at" this address does not answer
    r = run("check", "-H", f"tcp://127.0.0.1:{port}", "--registry", f"127.0.0.1:{port}", "--select", "DD2,DD5")
    assert r.returncode == 1, r.stderr
    assert f"daemon: tcp://127.0.0.1:{port} (--docker-host)" in r.stdout
    assert f"registries not probed: the daemon is at tcp://127.0.0.1:{port} (--docker-host)" in r.stdout
    assert "systemctl" not in r.stdout
