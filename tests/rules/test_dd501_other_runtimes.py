"""DD501 on nodes without docker: a Kubernetes node on containerd or CRI-O, a k3s node, a podman host. There
DD501 is not applicable (skipped, with the runtime that pulls named), never an error; a docker host whose
dockerd is down still gets it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parent.parent.parent / "fixtures" / "hosts"


def dd501(name: str):
    source = SnapshotSource(HOSTS / name)
    try:
        (r,) = [r for r in run_rules(Facts(source, CheckOptions(network=False))) if r.rule_id == "DD501"]
    finally:
        source.close()
    return r


@pytest.mark.parametrize("name,puller", [
    ("kubeadm-containerd16-http-registry-no-hosts-toml", "containerd CRI (kubelet)"),
    ("containerd2-legacy-mirrors", None),  # no process list: nothing says what pulls, docker is absent all the same
    ("k3s-registries-yaml-http-healthy", "k3s"),
    ("crio-insecure-registries-without-port", "CRI-O"),
    ("debian12-podman-registries-conf-healthy", "podman"),
    ("fedora-podman-user-registries-conf-replaces-system", "podman"),
])
def test_skipped_where_another_runtime_pulls(name: str, puller: str | None) -> None:
    r = dd501(name)
    assert r.status == RuleStatus.SKIPPED and not r.findings, (r.status, r.findings)
    assert puller is None or puller in r.reason, r.reason


def test_a_daemon_json_left_on_a_containerd_node_is_not_docker() -> None:
    # kubeadm node moved from docker to containerd: /etc/docker/daemon.json stayed, nothing else of docker did
    r = dd501("kubeadm-containerd16-http-registry-healthy")
    assert r.status == RuleStatus.SKIPPED and "/etc/docker/daemon.json" in r.reason
    assert "containerd CRI (kubelet)" in r.reason


@pytest.mark.parametrize("name", ["docker-ce-dockerd-down-graphdriver", "docker-ce-daemon-json-trailing-comma"])
def test_a_docker_host_whose_dockerd_is_down_still_fails(name: str) -> None:
    r = dd501(name)
    assert r.status == RuleStatus.FAILED and r.findings


def test_a_users_rootless_dockerd_is_not_the_system_daemon() -> None:
    # only gina's rootless dockerd runs (ps USER gina, no -H): it serves her $XDG_RUNTIME_DIR/docker.sock,
    # so /var/run/docker.sock's daemon is absent and /etc/docker is not judged as hers
    name = "rootless-dockerd-containerd-store-insecure-registries-only"
    r = dd501(name)
    assert r.status == RuleStatus.SKIPPED and "rootless dockerd pid 2140 of user gina" in r.reason, r.reason
    source = SnapshotSource(HOSTS / name)
    try:
        facts = Facts(source, CheckOptions(network=False))
        assert facts.optional("dockerd_process") is None
        passed = {r.rule_id for r in run_rules(facts) if r.status == RuleStatus.PASSED}
    finally:
        source.close()
    assert not passed & {"DD105", "DD107", "DD110", "DD501"}, passed
