"""`dockerdoctor fix --apply` on a real dockerd 20.10 and a real registry in network namespaces.

Each test reproduces a failure, shows that the push fails, runs `fix --apply --yes` (inside the
simulated host's mount and network namespaces, with labsvc.py as the service manager), and then
shows that the push works."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.real("nsenter", "unshare")


def _ok(r) -> str:  # type: ignore[no-untyped-def]
    return f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


@pytest.mark.parametrize("config_file", [False, True], ids=["daemon.json", "--config-file"])
def test_plain_http_registry_gets_insecure_entry_and_sighup(fixlab, lab_host, config_file: bool) -> None:
    reg = fixlab.plain.hostport
    h = lab_host(daemon_json={"debug": False, "labels": ["site=lab"]}, config_file=config_file)
    assert h.start().returncode == 0
    pid = h.pid()
    push = h.push(reg)
    assert push.returncode != 0 and "server gave HTTP response to HTTPS client" in push.stderr
    r = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert r.returncode == 0, _ok(r)
    assert "CIS Docker Benchmark 2.4" in r.stdout
    assert f"kill -HUP {pid}" in r.stdout
    assert h.pid() == pid  # reloaded, not restarted
    data = json.loads(h.config.read_text())
    assert list(data) == ["debug", "labels", "insecure-registries"] and data["insecure-registries"] == [reg]
    assert h.push(reg).returncode == 0
    # idempotent: a second run finds nothing to do
    again = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert again.returncode == 0, _ok(again)
    assert "Nothing to" in again.stdout and "Backed up" not in again.stdout


def test_dockerd_in_its_own_mount_namespace_is_fixed_through_proc_root(fixlab, lab_host) -> None:
    """dockerdoctor runs in the machine's mount namespace; dockerd reads a private /etc/docker:
    the edit must land in the file dockerd reads (/proc/PID/root/etc/docker/daemon.json)."""
    reg = fixlab.plain.hostport
    h = lab_host(daemon_json={"debug": False})
    assert h.start().returncode == 0
    host_json = "/etc/docker/daemon.json"
    before = open(host_json, "rb").read() if __import__("os").path.exists(host_json) else None
    r = h.dockerdoctor("fix", "--apply", "--yes", "--only", "DD101", registry=reg, mount_ns=False)
    assert r.returncode == 0, _ok(r)
    assert f"(as /proc/{h.pid()}/root/etc/docker/daemon.json)" in r.stdout
    assert json.loads(h.config.read_text())["insecure-registries"] == [reg]
    after = open(host_json, "rb").read() if __import__("os").path.exists(host_json) else None
    assert before == after  # the machine's own /etc/docker is untouched
    assert h.push(reg).returncode == 0


def test_flag_and_file_conflict_dockerd_cannot_start_then_fixed(fixlab, lab_host) -> None:
    reg = fixlab.plain.hostport
    h = lab_host(daemon_json={"insecure-registries": [reg]}, extra_args=(f"--insecure-registry={reg}",))
    start = h.start()
    assert start.returncode != 0 and "specified both as a flag and in the configuration file" in start.stderr
    r = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert r.returncode == 0, _ok(r)
    assert "[DD104]" in r.stdout
    dropin = h.unit_dir / "docker.service.d" / "10-no-conflict.conf"
    assert dropin.is_file() and "--insecure-registry" not in dropin.read_text()
    assert h.pid() is not None
    assert h.push(reg).returncode == 0


BROKEN = {
    "trailing-comma": '{\n  "insecure-registries": ["REG"],\n}\n',
    "string-not-list": '{\n  "insecure-registries": "REG"\n}\n',
    "singular-key": '{\n  "insecure-registry": ["REG"]\n}\n',
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_daemon_json_is_repaired(fixlab, lab_host, case: str) -> None:
    reg = fixlab.plain.hostport
    h = lab_host(daemon_json=BROKEN[case].replace("REG", reg))
    started = h.start().returncode == 0
    pid0 = h.pid()
    assert started == (case == "singular-key")  # dockerd refuses the first two, silently ignores the third
    if started:
        push = h.push(reg)
        assert push.returncode != 0 and "HTTP response to HTTPS client" in push.stderr
    r = h.dockerdoctor("fix", "--apply", "--yes", registry=reg)
    assert r.returncode == 0, _ok(r)
    assert "[DD106]" in r.stdout
    assert json.loads(h.config.read_text()) == {"insecure-registries": [reg]}
    if started:  # the ignored key's rename is reloadable: SIGHUP, same PID
        assert "kill -HUP" in r.stdout and "restart dockerd" not in r.stdout
        assert h.pid() == pid0
    assert h.pid() is not None
    assert h.push(reg).returncode == 0


def test_tls_registry_with_unknown_ca_gets_certs_d_without_restart(fixlab, lab_host) -> None:
    reg = fixlab.tls.hostport
    h = lab_host(daemon_json={"debug": False})
    assert h.start().returncode == 0
    pid = h.pid()
    push = h.push(reg)
    assert push.returncode != 0 and "x509: certificate signed by unknown authority" in push.stderr
    plan = h.dockerdoctor("fix", registry=reg)
    assert "--ca FILE" in plan.stdout, _ok(plan)
    r = h.dockerdoctor("fix", "--apply", "--yes", "--ca", str(fixlab.ca_path), registry=reg)
    assert r.returncode == 0, _ok(r)
    ca = h.etc_docker / "certs.d" / reg / "ca.crt"
    assert ca.read_bytes() == fixlab.ca_pem
    assert "kill -HUP" not in r.stdout and "restart dockerd" not in r.stdout
    assert h.pid() == pid
    assert json.loads(h.config.read_text()) == {"debug": False}  # no insecure entry
    assert h.push(reg).returncode == 0


FAULT_SCRIPT = """
import json, sys
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.fixes.apply import ApplyOptions, Choice, apply_prepared, prepare
from dockerdoctor.fixes.backup import BackupStore
from dockerdoctor.fixes.service import CommandManager
from dockerdoctor.model import Finding, Fix, JsonSetKey, Severity
from dockerdoctor.sources.live import LiveSource
host, state, restart = sys.argv[1:4]
def facts():
    return Facts(LiveSource(), CheckOptions(docker_host=host, network=False))
f = facts()
pid = f.get("dockerd_process").pid
# an edit the project's checks accept but dockerd refuses at start
fix = Fix("bad", (JsonSetKey("/etc/docker/daemon.json", "exec-opts", ["native.cgroupdriver=bogus"]),))
p = prepare([Choice(Finding("DD999", Severity.ERROR, "t", "m", fix=fix), fix)], f)
mgr = CommandManager(restart, lambda: facts().get("dockerd_process").pid)
res = apply_prepared(p, f, ApplyOptions(BackupStore(state), manager=mgr, facts_factory=facts, ready_timeout=30))
print(json.dumps({"status": res.status, "problems": res.problems, "log": res.log, "action": p.action,
                  "warnings": p.warnings}))
"""


@pytest.mark.parametrize("mount_ns", [True, False], ids=["same-mount-ns", "via-proc-pid-root"])
def test_edit_that_stops_dockerd_is_rolled_back_byte_identical(fixlab, lab_host, mount_ns: bool) -> None:
    """via-proc-pid-root: the file is reached through /proc/PID/root of a dockerd that then dies;
    the rollback still has to find it (a pinned directory fd)."""
    reg = fixlab.plain.hostport
    original = '{\n    "insecure-registries" :["REG"],\n  "debug":false }\n'.replace("REG", reg)
    h = lab_host(daemon_json=original)
    assert h.start().returncode == 0
    old_pid = h.pid()
    import subprocess
    import sys

    r = subprocess.run(
        h.in_host([sys.executable, "-c", FAULT_SCRIPT, h.d.host, str(h.state), h.restart_command], mount_ns=mount_ns),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(h.lab.root),
    )
    assert r.returncode == 0, _ok(r)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["action"] == "restart"
    assert any("live-restore is off" in w for w in out["warnings"]), out["warnings"]
    assert out["status"] == "rolled-back", out
    assert any(("/proc/" in line) != mount_ns for line in out["log"] if line.startswith("wrote ")), out["log"]
    assert "did not come back" in out["problems"][0] or "restart-command failed" in out["problems"][0]
    assert h.config.read_text() == original  # byte-identical
    assert h.pid() is not None and h.pid() != old_pid  # restarted with the old file
    assert h.push(reg).returncode == 0
