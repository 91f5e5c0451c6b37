"""Container facts: docker inspect parsing, registry recognition, version evidence, snapshot logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.facts.containers import (
    LOG_TAIL_LINES,
    ContainerInfo,
    container_from_inspect,
    image_repo,
    image_tag,
    parse_inspect_text,
    registry_kind,
    split_log,
)
from dockerdoctor.facts.registry_containers import _version, describe_registry
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"


def snap(name: str) -> Facts:
    return Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False))


def inspect(**over) -> dict:
    base = {
        "Id": "a" * 64, "Name": "/reg", "RestartCount": 0,
        "State": {"Status": "running", "Running": True, "ExitCode": 0, "Error": ""},
        "Config": {"Image": "registry:2", "Cmd": ["/etc/docker/registry/config.yml"],
                   "Entrypoint": ["/entrypoint.sh"], "Env": ["PATH=/bin"], "ExposedPorts": {"5000/tcp": {}}},
        "HostConfig": {"NetworkMode": "default", "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
                       "PortBindings": {"5000/tcp": [{"HostIp": "", "HostPort": "5000"}]}, "Binds": []},
        "NetworkSettings": {"Ports": {}},
        "Mounts": [],
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return base


@pytest.mark.parametrize("image,repo,tag", [
    ("registry:2", "registry", "2"),
    ("registry", "registry", None),
    ("docker.io/library/registry:2.8.2", "registry", "2.8.2"),
    ("10.0.0.5:5000/team/registry:0.9.1", "team/registry", "0.9.1"),
    ("localhost/distribution/registry@sha256:" + "0" * 64, "distribution/registry", None),
    ("goharbor/registry-photon:v2.9.0", "goharbor/registry-photon", "v2.9.0"),
])
def test_image_repo_and_tag(image: str, repo: str, tag: str | None) -> None:
    assert image_repo(image) == repo and image_tag(image) == tag


def test_real_inspect_with_z_mount_and_published_port() -> None:
    text = (HOSTS / "centos7-registry-host-healthy/sos_commands/docker/containers/docker_inspect_registry").read_text()
    (c,) = parse_inspect_text(text, "x")
    assert c.name == "registry" and c.image == "registry:2" and c.restart_policy == "always"
    (m,) = c.mounts
    assert (m.type, m.source, m.destination, m.selinux_label) == ("bind", "/srv/registry", "/var/lib/registry", "Z")
    assert {(p.container_port, p.host_port) for p in c.ports} == {(5000, 5000)}  # 0.0.0.0 and ::


def test_port_bindings_of_a_stopped_container_come_from_hostconfig() -> None:
    c = container_from_inspect(inspect(State={"Status": "exited", "Running": False, "ExitCode": 1}), "x")
    assert c.status == "exited" and [(p.host_ip, p.host_port) for p in c.ports] == [("", 5000)]


def test_restarting_state_wins() -> None:
    c = container_from_inspect(inspect(State={"Status": "running", "Restarting": True}), "x")
    assert c.status == "restarting"


@pytest.mark.parametrize("over,logs,version", [
    ({}, [], "v2"),  # tag 2
    ({"Config": {"Image": "registry:0.9.1", "Cmd": [], "Entrypoint": [], "Env": []}}, [], "v0"),
    ({"Config": {"Image": "registry", "Cmd": ["docker-registry"], "Entrypoint": [], "Env": []}}, [], "v0"),
    ({"Config": {"Image": "registry", "Cmd": [], "Entrypoint": [], "Env": ["SETTINGS_FLAVOR=local"]}}, [], "v0"),
    ({"Config": {"Image": "registry", "Cmd": [], "Entrypoint": [], "Env": ["REGISTRY_HTTP_SECRET=x"]}}, [], "v2"),
    ({"Config": {"Image": "registry", "Cmd": [], "Entrypoint": [], "Env": []}},
     ['time="x" level=info msg="listening on [::]:5000" go.version=go1.19.8'], "v2"),
    ({"Config": {"Image": "registry", "Cmd": [], "Entrypoint": [], "Env": []}}, [], "unknown"),
])
def test_version_from_evidence(over: dict, logs: list[str], version: str) -> None:
    c = container_from_inspect(inspect(**over), "x")
    c.logs = logs
    kind, why = registry_kind(c)
    assert kind is not None and why
    assert _version(c, kind)[0] == version


def test_recognised_by_log_lines_only() -> None:
    c = container_from_inspect(inspect(Config={"Image": "lab/busybox:1", "Cmd": ["sh", "/crash.sh"],
                                               "Entrypoint": [], "Env": ["STORAGE_PATH=/registry"]}), "x")
    assert registry_kind(c)[0] is None
    c.logs = ["OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'"]
    kind, _ = registry_kind(c)
    assert kind == "python"
    rc = describe_registry(c, kind, [])
    assert (rc.version, rc.data_dir) == ("v0", "/registry")


def test_data_dir_and_port_from_env_and_mounted_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yml"
    cfg.write_text("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /data\nhttp:\n  addr: :5443\n")
    c = container_from_inspect(inspect(Mounts=[{"Type": "bind", "Source": str(tmp_path),
                                                "Destination": "/etc/docker/registry", "RW": True}]), "x")
    rc = describe_registry(c, "distribution", [], lambda p: Path(p).read_text() if Path(p).exists() else None)
    assert rc.data_dir == "/data" and rc.port == 5443 and rc.config_path == str(cfg)
    c2 = container_from_inspect(inspect(Config={"Image": "registry:2", "Cmd": [], "Entrypoint": [],
                                                "Env": ["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/srv",
                                                        "REGISTRY_HTTP_ADDR=0.0.0.0:6000"]}), "x")
    rc2 = describe_registry(c2, "distribution", [])
    assert (rc2.data_dir, rc2.port) == ("/srv", 6000)


def test_split_log_is_bounded() -> None:
    text = "\n".join(f"line {i}" for i in range(10_000)) + "\n" + "x" * 50_000
    lines = split_log(text, tail_bytes_cut=True)
    assert len(lines) == LOG_TAIL_LINES and len(lines[-1]) <= 2000


def test_snapshot_containers_logs_and_endpoints() -> None:
    facts = snap("docker-ce-registry2-two-replicas-no-http-secret")
    regs = facts.get("registry_containers")
    assert sorted(r.name for r in regs) == ["registry-1", "registry-2"]
    assert all(r.container.logs and r.container.log_source.endswith(r.name) for r in regs)
    eps = facts.get("registry_endpoints_from_containers")
    assert all(isinstance(hp, HostPort) for hp, _ in eps)


def test_snapshot_without_inspect_output_is_unknown_not_empty() -> None:
    facts = snap("debian12-docker-registry-firewalld-port-closed")
    assert facts.optional("containers") is None


def test_published_loopback_and_v6_duplicates() -> None:
    data = inspect(NetworkSettings={"Ports": {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5000"},
                                                           {"HostIp": "::", "HostPort": "5000"}]}})
    c: ContainerInfo = container_from_inspect(json.loads(json.dumps(data)), "x")
    assert len(c.ports) == 2
    from dockerdoctor.fixes.recipes import docker_run_argv

    argv = docker_run_argv(c)
    assert argv.count("-p") == 1 and argv[argv.index("-p") + 1] == "5000:5000"
