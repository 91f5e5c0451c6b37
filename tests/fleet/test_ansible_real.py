"""The Ansible collection dockerdoctor.registry against a real fleet (tests/fleet/fleetlab.py).

ansible-core (PyPI) drives three managed hosts over SSH (Debian's sshd, one per host, on its lab
address); the controller runs in the lab's hub namespace, so no packet leaves the lab. Each host has
its own /etc/docker, unit files, /etc/default, /opt, hostname and dockerd:

* ``healthy``   trusts the plain-HTTP registry in daemon.json;
* ``untrusted`` has an empty daemon.json: DD101, pushes fail with "HTTP response to HTTPS client";
* ``envfile``   has ``DOCKER_OPTS="--insecure-registry ..."`` in /etc/default/docker, which its
  docker.service never loads (no EnvironmentFile=): DD102 and DD101.

The collection is built with ``ansible-galaxy collection build`` and installed; its role installs
dockerdoctor into each host's /opt/dockerdoctor from a wheel of this checkout (and a wheelhouse of the
dependencies, made by scripts/install-test-deps.sh), and its playbooks run: check (facts per host),
fix --check --diff (diffs, nothing changes), a fix whose dockerd start fails once (rolled back), fix
(the broken hosts repaired with backup_file, the healthy one unchanged), then check again, clean, and
a push from every host. The tests run in file order and share one fleet.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lab
import pytest
from fleetkit import ON_CI, REPO, dd
from fleetlab import LABSVC, Fleet, ManagedHost, python_for_hosts

pytestmark = pytest.mark.real("sshd", "ssh", "ssh-keygen")

BIN = Path(sys.executable).parent
WHEELHOUSE = REPO / ".venv" / "wheelhouse"
COLLECTION = REPO / "integrations" / "ansible"


@dataclass
class Lab:
    fleet: Fleet
    env: dict[str, str]
    inventory: Path
    root: Path
    wheel: Path

    def host(self, name: str) -> ManagedHost:
        return self.fleet.hosts[name]

    def playbook(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.fleet.controller([str(BIN / "ansible-playbook"), "-i", str(self.inventory), name, *args],
                                     self.env, timeout=timeout)

    def results(self, d: str) -> dict[str, dict]:
        return {p.stem: json.loads(p.read_text()) for p in sorted((self.root / d).glob("*.json"))}


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    return f"rc={r.returncode}\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-3000:]}"


def _recap(out: str) -> dict[str, dict[str, int]]:
    rows = {}
    for m in re.finditer(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$", out, re.M):
        rows[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return rows


def _files(h: ManagedHost) -> dict[str, bytes]:
    """Every file of the host's /etc/docker and /etc/default/docker, to prove what did or did not change."""
    out = {str(p.relative_to(h.dir)): p.read_bytes() for p in sorted(h.etc_docker.rglob("*")) if p.is_file()}
    env = h.etc_default / "docker"
    if env.exists():
        out["etc-default/docker"] = env.read_bytes()
    return out


@pytest.fixture(scope="module")
def fleet_lab() -> Iterator[Lab]:
    for tool in ("ansible-playbook", "ansible-galaxy", "ansible-doc"):
        if not (BIN / tool).exists():
            pytest.fail(f"{tool} is not in {BIN}: install the test extra (bash scripts/install-test-deps.sh)")
    if not any(WHEELHOUSE.glob("setuptools-*.whl")):
        msg = f"no wheelhouse in {WHEELHOUSE} (bash scripts/install-test-deps.sh makes it)"
        if ON_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    root = lab.make_workdir("fleet")
    fleet = Fleet(root, f"ddv{os.getpid() % 100000}", python=python_for_hosts())
    try:
        env = fleet.ansible_env(root / "collections")
        # the collection, built and installed as a user would (inside the hub: no network there)
        r = fleet.controller([str(BIN / "ansible-galaxy"), "collection", "build", str(COLLECTION),
                              "--output-path", str(root / "dist")], env)
        assert r.returncode == 0, _ok(r)
        tarball = next((root / "dist").glob("dockerdoctor-registry-*.tar.gz"))
        r = fleet.controller([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball),
                              "-p", str(root / "collections")], env)
        assert r.returncode == 0, _ok(r)
        # a wheel of this checkout, built without a network from the wheelhouse's setuptools
        r = fleet.controller([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                              "--find-links", str(WHEELHOUSE), "-w", str(root / "wheels"), str(REPO)], env,
                             timeout=180)
        assert r.returncode == 0, _ok(r)
        wheel = next((root / "wheels").glob("dockerdoctor-*.whl"))
        reg = fleet.start_registry()
        fleet.add_host("healthy", daemon_json={"insecure-registries": [reg.hostport]})
        fleet.add_host("untrusted", daemon_json={})
        fleet.add_host("envfile", daemon_json=None,
                       env_file_text=f'# options for dockerd\nDOCKER_OPTS="--insecure-registry {reg.hostport}"\n')
        for h in fleet.hosts.values():
            assert h.dockerd is not None
            h.dockerd.docker("tag", "lab/busybox:1", f"{reg.hostport}/fleet/{h.name}:1", check=True)
        inv = fleet.inventory(root / "inventory.yml")
        yield Lab(fleet, env, inv, root, wheel)
    finally:
        fleet.close()
        lab.rmtree(root)


def test_collection_docs_show_in_ansible_doc(fleet_lab: Lab) -> None:
    for kind, name, words in (("module", "dockerdoctor.registry.check", ("fail_on", "ansible_facts", "textfile_dir")),
                              ("module", "dockerdoctor.registry.fix", ("backup_file", "restart_command", "diff")),
                              ("role", "dockerdoctor.registry.install", ("dockerdoctor_venv", "collect --script"))):
        r = fleet_lab.fleet.controller([str(BIN / "ansible-doc"), "-t", kind, name], fleet_lab.env)
        assert r.returncode == 0 and "[WARNING]" not in r.stderr, _ok(r)
        for w in words:
            assert w in r.stdout, (name, w)


def test_role_installs_dockerdoctor_into_each_hosts_venv(fleet_lab: Lab) -> None:
    wh = str(WHEELHOUSE)
    # the link goes into the host's private /opt: the machine's /usr/local/bin is shared by every lab host
    args = ["-e", json.dumps({"dockerdoctor_package": str(fleet_lab.wheel), "dockerdoctor_python": python_for_hosts(),
                              "dockerdoctor_link": "/opt/bin/dockerdoctor",
                              "dockerdoctor_pip_extra_args": f"--no-index --find-links {wh} --no-compile"})]
    r = fleet_lab.playbook("dockerdoctor.registry.install", *args)
    assert r.returncode == 0, _ok(r)
    recap = _recap(r.stdout)
    assert set(recap) == {"healthy", "untrusted", "envfile"} and all(v["failed"] == 0 for v in recap.values())
    for h in fleet_lab.fleet.hosts.values():
        exe = h.opt / "dockerdoctor" / "bin" / "dockerdoctor"  # the host's own /opt
        assert exe.exists(), h.name
        assert os.readlink(h.opt / "bin" / "dockerdoctor") == "/opt/dockerdoctor/bin/dockerdoctor"
        v = h.run(["/opt/bin/dockerdoctor", "--version"])
        assert v.returncode == 0 and v.stdout.startswith("dockerdoctor "), v.stderr
    again = fleet_lab.playbook("dockerdoctor.registry.install", *args)
    assert again.returncode == 0, _ok(again)
    assert all(v["changed"] == 0 for v in _recap(again.stdout).values()), again.stdout[-3000:]


def test_check_returns_each_hosts_report_as_facts(fleet_lab: Lab) -> None:
    reports = fleet_lab.root / "reports"
    reports.mkdir()
    r = fleet_lab.playbook("dockerdoctor.registry.check", "-e", "dockerdoctor_fail_on=never",
                           "-e", f"dockerdoctor_report_dir={reports}")
    assert r.returncode == 0, _ok(r)
    results = fleet_lab.results("reports")
    assert set(results) == {"healthy", "untrusted", "envfile"}
    reg = fleet_lab.fleet.registry.hostport  # type: ignore[union-attr]
    ids = {}
    for name, res in results.items():
        facts = res["ansible_facts"]["dockerdoctor"]
        assert res["changed"] is False and res["failed"] is False
        assert facts["host"]["name"] == name  # each ran on its own host (UTS namespace)
        assert facts["registries"] == [reg] and facts["target"]["kind"] == "live"
        ids[name] = {f["id"] for f in facts["findings"] if f["severity"] == "error"}
    assert ids == {"healthy": set(), "untrusted": {"DD101", "DD203"}, "envfile": {"DD101", "DD102", "DD203"}}
    dd102 = [f for f in results["envfile"]["ansible_facts"]["dockerdoctor"]["findings"] if f["id"] == "DD102"][0]
    assert dd102["evidence"][0]["source"] == "/etc/default/docker"
    assert "/etc/systemd/system/docker.service" in dd102["evidence"][1]["source"]

    # the same files make a fleet report on the controller
    fleet = json.loads(dd("report", str(reports), "--format", "json", "--fail-on", "never").stdout)
    assert fleet["summary"]["hosts"] == 3 and fleet["summary"]["hosts_with_errors"] == 2
    assert {c["id"]: c["hosts"] for c in fleet["root_causes"]}["DD101"] == 2
    assert [h["name"] for h in fleet["hosts"] if h["via"] == "ansible"] == ["envfile", "healthy", "untrusted"]


def test_fix_in_check_mode_shows_diffs_and_changes_nothing(fleet_lab: Lab) -> None:
    before = {n: _files(h) for n, h in fleet_lab.fleet.hosts.items()}
    r = fleet_lab.playbook("dockerdoctor.registry.fix", "--check", "--diff",
                           "-e", f"dockerdoctor_results_dir={fleet_lab.root / 'plan'}")
    assert r.returncode == 0, _ok(r)
    assert {n: v["changed"] for n, v in _recap(r.stdout).items()} == {"healthy": 0, "untrusted": 1, "envfile": 1}
    res = fleet_lab.results("plan")
    reg = fleet_lab.fleet.registry.hostport  # type: ignore[union-attr]
    assert res["healthy"]["changed"] is False and res["healthy"]["status"] == "planned"
    assert res["untrusted"]["changed"] is True
    assert [d["after_header"] for d in res["untrusted"]["diff"]] == ["/etc/docker/daemon.json"]
    assert json.loads(res["untrusted"]["diff"][0]["after"]) == {"insecure-registries": [reg]}
    env_diffs = {d["after_header"]: d for d in res["envfile"]["diff"]}
    assert set(env_diffs) == {"/etc/docker/daemon.json", "/etc/default/docker"}
    assert env_diffs["/etc/docker/daemon.json"]["before_header"] == "/etc/docker/daemon.json (absent)"
    assert 'DOCKER_OPTS=""' in env_diffs["/etc/default/docker"]["after"]
    # --diff printed them, the Ansible way
    assert "--- before: /etc/docker/daemon.json" in r.stdout and f'+    "{reg}"' in r.stdout
    assert '-DOCKER_OPTS="--insecure-registry' in r.stdout
    # nothing changed: files byte-identical, no backup taken
    assert {n: _files(h) for n, h in fleet_lab.fleet.hosts.items()} == before
    assert not [m for h in fleet_lab.fleet.hosts.values()
                for m in (h.opt / "dockerdoctor-state" / "backups").glob("*/manifest.json")]


def test_a_fix_whose_dockerd_start_fails_is_rolled_back(fleet_lab: Lab) -> None:
    h = fleet_lab.host("untrusted")
    original = _files(h)
    stop = h.run([h.python, str(LABSVC), "stop", str(h.spec)])  # a stopped dockerd: the fix must start it
    assert stop.returncode == 0, stop.stderr
    flag = h.dir / "start-fails-once"
    flaky = (f"if [ ! -e {flag} ]; then touch {flag}; echo 'dockerd.service: start request repeated too quickly' "
             f">&2; exit 1; fi; exec {h.restart_command}")
    r = fleet_lab.playbook("dockerdoctor.registry.fix", "--limit", "untrusted", "--diff",
                           "-e", json.dumps({"dockerdoctor_restart_command": f"sh -c {shlex.quote(flaky)}",
                                             "dockerdoctor_results_dir": str(fleet_lab.root / "rollback")}))
    assert r.returncode != 0, _ok(r)
    res = fleet_lab.results("rollback")["untrusted"]
    assert res["failed"] is True and res["changed"] is False and res["rolled_back"] is True, res
    assert res["status"] == "rolled-back" and res["msg"].startswith("applied, then rolled back: ")
    assert "start request repeated too quickly" in res["msg"]
    assert h.path(res["backup_file"]).read_bytes() == original["etc-docker/daemon.json"]
    assert _files(h) == original  # byte-identical
    assert _recap(r.stdout)["untrusted"]["failed"] == 1
    up = h.run(h.restart_command.split())  # dockerd was not running before: the rollback left it so
    assert up.returncode == 0, up.stderr


def test_fix_repairs_the_broken_hosts_and_leaves_the_healthy_one(fleet_lab: Lab) -> None:
    before = {n: _files(h) for n, h in fleet_lab.fleet.hosts.items()}
    pids = {n: Fleet.dockerd_pid(h) for n, h in fleet_lab.fleet.hosts.items()}
    r = fleet_lab.playbook("dockerdoctor.registry.fix", "--diff",
                           "-e", f"dockerdoctor_results_dir={fleet_lab.root / 'applied'}")
    assert r.returncode == 0, _ok(r)
    assert {n: v["changed"] for n, v in _recap(r.stdout).items()} == {"healthy": 0, "untrusted": 1, "envfile": 1}
    res = fleet_lab.results("applied")
    reg = fleet_lab.fleet.registry.hostport  # type: ignore[union-attr]
    assert res["healthy"]["changed"] is False and res["healthy"]["status"] == "nothing"
    assert "backup_file" not in res["healthy"]
    for name in ("untrusted", "envfile"):
        out = res[name]
        assert out["changed"] is True and out["status"] == "applied" and out["rolled_back"] is False, out
        assert out["backup_dir"].startswith("/opt/dockerdoctor-state/backups/")
        assert any(line.startswith("Verified: ") and reg in line for line in out["log"]), out["log"]
        assert out["service"]["action"] == "reload"
    h_un, h_env = fleet_lab.host("untrusted"), fleet_lab.host("envfile")
    # backup_file is a copy of the original; the opt path is the host's private /opt
    assert h_un.path(res["untrusted"]["backup_file"]).read_bytes() == before["untrusted"]["etc-docker/daemon.json"]
    backups = {b["path"]: b["backup"] for b in res["envfile"]["backups"]}
    assert backups["/etc/docker/daemon.json"] is None  # it did not exist
    assert h_env.path(backups["/etc/default/docker"]).read_bytes() == before["envfile"]["etc-default/docker"]
    assert res["envfile"]["backup_file"] == backups["/etc/default/docker"]
    # the files now say what the diffs said, and the healthy host is untouched
    assert json.loads((h_un.etc_docker / "daemon.json").read_text()) == {"insecure-registries": [reg]}
    assert json.loads((h_env.etc_docker / "daemon.json").read_text()) == {"insecure-registries": [reg]}
    assert 'DOCKER_OPTS=""' in (h_env.etc_default / "docker").read_text()
    assert "# options for dockerd" in (h_env.etc_default / "docker").read_text()  # comments kept
    assert _files(fleet_lab.host("healthy")) == before["healthy"]
    # reloaded with SIGHUP, not restarted: every dockerd keeps its PID
    assert {n: Fleet.dockerd_pid(h) for n, h in fleet_lab.fleet.hosts.items()} == pids


def test_check_again_is_clean_everywhere_and_every_host_pushes(fleet_lab: Lab) -> None:
    verify = fleet_lab.root / "verify.yml"
    verify.write_text(f"""
- name: Verify the repaired fleet
  hosts: all
  gather_facts: false
  tasks:
    - name: Check, failing on any error
      dockerdoctor.registry.check:
        registry: "{{{{ dockerdoctor_registries }}}}"
        docker_host: "{{{{ dockerdoctor_docker_host }}}}"
    - name: The facts are this host's report
      ansible.builtin.assert:
        that:
          - ansible_facts.dockerdoctor.host.name == inventory_hostname
          - ansible_facts.dockerdoctor.summary.errors == 0
    - name: Push from this host
      ansible.builtin.command:
        argv: [{json.dumps(lab.docker_cli())}, "-H", "{{{{ dockerdoctor_docker_host }}}}", "push",
               "{{{{ dockerdoctor_registries[0] }}}}/fleet/{{{{ inventory_hostname }}}}:1"]
      environment:
        DOCKER_CONFIG: /opt/docker-config
      register: pushed
      changed_when: true
    - name: Show the push
      ansible.builtin.debug:
        msg: "{{{{ pushed.stdout_lines[-1] }}}}"
""")
    r = fleet_lab.playbook(str(verify))
    assert r.returncode == 0, _ok(r)
    recap = _recap(r.stdout)
    assert set(recap) == {"healthy", "untrusted", "envfile"}
    assert all(v["failed"] == 0 and v["unreachable"] == 0 for v in recap.values()), recap
    assert r.stdout.count("digest: sha256:") == 3, r.stdout[-4000:]
    reg = fleet_lab.fleet.registry
    assert reg is not None
    st, _, body = lab.http_get(fleet_lab.fleet.hub, reg.addr, reg.port, "/v2/_catalog")
    assert st == 200 and sorted(json.loads(body)["repositories"]) == ["fleet/envfile", "fleet/healthy",
                                                                       "fleet/untrusted"]


def test_the_hosts_wrote_only_into_their_own_directories(fleet_lab: Lab) -> None:
    # what the hosts wrote under /opt (the venv, fix's backups) is in each host's private /opt
    for h in fleet_lab.fleet.hosts.values():
        assert (h.opt / "dockerdoctor" / "bin" / "dockerdoctor").exists()
        runs = list((h.opt / "dockerdoctor-state" / "backups").glob("*/manifest.json"))
        assert len(runs) == {"healthy": 0, "untrusted": 2, "envfile": 1}[h.name], (h.name, runs)
    assert not Path("/opt/dockerdoctor-state").exists() and not Path("/opt/bin/dockerdoctor").exists()
