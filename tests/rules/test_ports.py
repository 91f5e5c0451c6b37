"""DD303 on the captured snapshot: the holder is named by process and PID."""

from __future__ import annotations

from pathlib import Path

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.ports import ListenSocket
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"


def dd303(name: str, **seed) -> list:
    facts = Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False))
    facts._values.update(seed)
    (r,) = [r for r in run_rules(facts, {"DD303"}) if r.rule_id == "DD303"]
    return r.findings


def test_port_taken_by_python_http_server() -> None:
    (f,) = dd303("docker-ce-registry2-port-5000-taken")
    assert (f.params["holder"], f.params["holder_pid"], f.params["port"]) == ("python3", 2074, 5000)
    assert "address already in use" in " ".join(e.text for e in f.evidence)


def test_docker_proxy_holding_a_running_registry_port_is_fine() -> None:
    healthy = "centos7-registry-host-healthy"
    socks = [ListenSocket("0.0.0.0", 5000, 900, "docker-proxy", "", "ss")]
    assert dd303(healthy, listening_sockets=socks) == []
    socks = [ListenSocket("0.0.0.0", 5000, 901, "nginx", "", "ss")]
    (f,) = dd303(healthy, listening_sockets=socks)
    assert "nginx (pid 901)" in f.title
