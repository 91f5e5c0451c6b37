"""DD401-DD407 on the captured snapshots, and the docker run line the fixes rebuild."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.containers import container_from_inspect
from dockerdoctor.facts.registry_containers import describe_registry
from dockerdoctor.fixes.recipes import docker_run_argv
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
DD4 = ("DD401", "DD402", "DD403", "DD404", "DD405", "DD406", "DD407")


def check(name: str, **seed) -> dict:
    facts = Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False))
    facts._values.update(seed)
    out = {}
    for r in run_rules(facts, set(DD4)):
        if r.rule_id in DD4:
            assert r.status != RuleStatus.CRASHED, r.reason
            out[r.rule_id] = r.findings
    return out


@pytest.mark.parametrize("scenario,fire", [
    ("docker-ce-python-registry-setup-database-lock-crash", {"DD401", "DD402"}),
    ("docker-ce-registry-exited-missing-tls-cert", {"DD402"}),
    ("docker-ce-registry2-delete-unsupported", {"DD406"}),
    ("docker-ce-registry2-port-5000-taken", {"DD402"}),
    ("docker-ce-registry2-port-not-published", {"DD404"}),
    ("docker-ce-registry2-storage-permission-denied", {"DD405"}),
    ("docker-ce-registry2-two-replicas-no-http-secret", {"DD407"}),
    ("docker-ce-registry2-volume-at-tmp-registry", {"DD403"}),
    ("centos7-registry-host-healthy", set()),
    ("centos7-registry-host-selinux-and-firewalld-off", set()),
])
def test_fixture_fires_exactly(scenario: str, fire: set[str]) -> None:
    res = check(scenario)
    assert {rid for rid, fs in res.items() if fs} == fire


def test_dd401_docker_run_keeps_everything() -> None:
    (f,) = check("docker-ce-python-registry-setup-database-lock-crash")["DD401"]
    run = f.params["docker_run"]
    assert "-e GUNICORN_OPTS=[--preload]" in run and "--restart always" in run and "--name registry" in run
    ops = [op.shell() for op in f.fix.operations]
    assert ops[0] == "docker stop registry" and ops[1].startswith("docker rename registry")
    assert "setenforce" not in " ".join(ops)


def test_dd402_quotes_the_last_error() -> None:
    (f,) = check("docker-ce-registry-exited-missing-tls-cert")["DD402"]
    assert "/certs/domain.crt" in f.message


def test_dd403_anonymous_volume_only_is_a_warning() -> None:
    c = container_from_inspect({
        "Id": "b" * 64, "Name": "/reg", "State": {"Status": "running"},
        "Config": {"Image": "registry:2.8", "Cmd": ["/etc/docker/registry/config.yml"], "Env": []},
        "HostConfig": {"NetworkMode": "default", "PortBindings": {"5000/tcp": [{"HostPort": "5000"}]}},
        "Mounts": [{"Type": "volume", "Name": "c" * 64, "Source": "/var/lib/docker/volumes/x/_data",
                    "Destination": "/var/lib/registry", "RW": True}]}, "x")
    rc = describe_registry(c, "distribution", ["image"])
    res = check("centos7-registry-host-healthy", registry_containers=[rc])
    (f,) = res["DD403"]
    assert f.severity.label == "warning" and "anonymous volume" in f.message
    assert res["DD404"] == []


def test_docker_run_argv_roundtrip_with_relabel() -> None:
    c = container_from_inspect({
        "Id": "d" * 64, "Name": "/registry", "State": {"Status": "running"},
        "Config": {"Image": "registry:2", "Cmd": ["/etc/docker/registry/config.yml"],
                   "Entrypoint": ["/entrypoint.sh"], "Env": ["PATH=/bin", "REGISTRY_HTTP_SECRET=s e"],
                   "Labels": {"team": "infra"}},
        "HostConfig": {"NetworkMode": "default", "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 5},
                       "PortBindings": {"5000/tcp": [{"HostIp": "10.0.0.5", "HostPort": "5000"}]}},
        "Mounts": [{"Type": "bind", "Source": "/srv/registry", "Destination": "/var/lib/registry", "RW": True,
                    "Mode": ""},
                   {"Type": "bind", "Source": "/srv/certs", "Destination": "/certs", "RW": False, "Mode": "ro"}]},
        "x")
    c.image_cmd, c.image_entrypoint, c.image_env, c.image_labels = (
        ["/etc/docker/registry/config.yml"], ["/entrypoint.sh"], ["PATH=/bin"], {})
    argv = docker_run_argv(c, relabel={"/var/lib/registry": "Z"})
    line = shlex.join(argv)
    assert "--restart on-failure:5" in line and "-p 10.0.0.5:5000:5000" in line
    assert "-v /srv/registry:/var/lib/registry:Z" in line and "-v /srv/certs:/certs:ro" in line
    assert "'REGISTRY_HTTP_SECRET=s e'" in line and "PATH=" not in line and "--label team=infra" in line
    assert argv[-1] == "registry:2"  # image defaults are not repeated


def _rc(logs: list[str], **over):
    data = {
        "Id": "e" * 64, "Name": "/reg", "State": {"Status": "running"},
        "Config": {"Image": "registry:2", "Cmd": ["/etc/docker/registry/config.yml"], "Env": []},
        "HostConfig": {"NetworkMode": "default", "PortBindings": {"5000/tcp": [{"HostPort": "5000"}]}},
        "Mounts": [{"Type": "volume", "Name": "regdata", "Source": "/var/lib/docker/volumes/regdata/_data",
                    "Destination": "/var/lib/registry", "RW": True}],
    }
    data.update(over)
    c = container_from_inspect(data, "inspect")
    c.logs, c.log_source = logs, "docker logs reg"
    return describe_registry(c, "distribution", ["image"])


def test_dd406_gc_while_live() -> None:
    rc = _rc(['level=info msg="blob eligible for deletion: sha256:abc"'])
    (f,) = check("centos7-registry-host-healthy", registry_containers=[rc])["DD406"]
    assert f.params["problem"] == "gc-while-live" and f.fix.operations[0].shell() == "docker stop reg"


def test_dd404_network_none_and_dd405_read_only_volume() -> None:
    rc = _rc(['level=error msg="filesystem: mkdir /var/lib/registry/docker: read-only file system"'],
             HostConfig={"NetworkMode": "none"},
             Mounts=[{"Type": "bind", "Source": "/srv/r", "Destination": "/var/lib/registry", "RW": False,
                      "Mode": "ro"}])
    res = check("centos7-registry-host-healthy", registry_containers=[rc])
    (f404,) = res["DD404"]
    assert "--network none" in f404.message
    run = [op for op in f404.fix.operations if "run" in op.argv][0].argv
    assert "none" not in run and run[run.index("-p") + 1] == "5000:5000"
    (f405,) = res["DD405"]
    run = [op for op in f405.fix.operations if "run" in op.argv][0].argv
    assert "/srv/r:/var/lib/registry" in run and "/srv/r:/var/lib/registry:ro" not in run


def test_rules_that_read_logs_skip_when_no_log_is_known() -> None:
    rc = _rc([])
    rc.container.log_source = None
    facts = Facts(SnapshotSource(HOSTS / "centos7-registry-host-healthy"), CheckOptions(network=False))
    facts._values["registry_containers"] = [rc]
    status = {r.rule_id: r.status for r in run_rules(facts, {"DD401", "DD405", "DD406"})}
    assert status["DD401"] == status["DD405"] == status["DD406"] == RuleStatus.SKIPPED
