"""dockerd command line, insecure-registry semantics (shared/lab.md §1), docker info text, NO_PROXY."""

from __future__ import annotations

import pytest

from dockerdoctor.facts import HostPort
from dockerdoctor.facts.daemon import (
    check_insecure_entry,
    parse_daemon_json,
    parse_docker_info_text,
    trusted_as_insecure,
)
from dockerdoctor.facts.dockerd_cli import parse_dockerd_argv
from dockerdoctor.net import no_proxy_match


def test_pflag_forms():
    p = parse_dockerd_argv(["/usr/bin/dockerd", "-H", "fd://", "--insecure-registry=a:5000", "--insecure-registry",
                            "b:5000", "-D", "--iptables=false", "-Hunix:///x.sock", "--bogus", "--containerd",
                            "/run/c.sock"])
    assert [f.value for f in p.values("insecure-registry")] == ["a:5000", "b:5000"]
    assert [f.value for f in p.values("host")] == ["fd://", "unix:///x.sock"]
    assert p.values("debug")[0].value == "true"
    assert p.values("iptables")[0].value == "false"
    assert [u.name for u in p.unknown] == ["bogus"]
    assert p.values("containerd")[0].value == "/run/c.sock"


def test_docker_daemon_modes():
    assert parse_dockerd_argv(["/usr/bin/docker", "daemon", "-H", "fd://"]).mode == "docker daemon"
    assert parse_dockerd_argv(["/usr/bin/docker", "-d", "--selinux-enabled"]).mode == "docker -d"
    assert parse_dockerd_argv(["/usr/bin/dockerd-current"]).mode == "dockerd"


def test_glued_braced_variable_is_an_unknown_flag():
    p = parse_dockerd_argv(["dockerd", "--insecure-registry 10.0.0.5:5000"])
    assert p.unknown and p.unknown[0].name == "insecure-registry 10.0.0.5:5000"


@pytest.mark.parametrize("value,fatal,normalized", [
    ("10.0.0.5:5000", False, "10.0.0.5:5000"),
    ("[10.0.0.5:5000,10.0.0.6:5000]", True, None),
    ("10.0.0.5:5000,10.0.0.6:5000", True, None),
    ("10.0.0.5:5000 10.0.0.6:5000", True, None),
    ("'10.0.0.5:5000'", True, None),
    ("http://10.0.0.5:5000", False, "10.0.0.5:5000"),
    ("10.0.0.0/24", False, "10.0.0.0/24"),
    ("10.0.0.5", False, "10.0.0.5"),
    ("registry.example.com:5000", False, "registry.example.com:5000"),
    ("10.0.0.5:5000/v2", True, None),
    ("ftp://x:1", True, None),
])
def test_insecure_entry_matches_dockerd(value, fatal, normalized):
    chk = check_insecure_entry(value)
    assert chk.fatal is fatal
    assert chk.normalized == normalized


def test_trust_covers_cidr_exact_and_loopback_but_not_host_without_port():
    t = HostPort("10.0.0.5", 5000)
    assert trusted_as_insecure(t, ["10.0.0.0/24"]) == "10.0.0.0/24"
    assert trusted_as_insecure(t, ["http://10.0.0.5:5000"]) == "http://10.0.0.5:5000"
    assert trusted_as_insecure(t, ["10.0.0.5"]) is None
    assert trusted_as_insecure(HostPort("127.0.0.1", 5000), []) is not None
    assert trusted_as_insecure(HostPort("localhost", 5000), []) is not None


def test_daemon_json_errors_and_lines():
    dj = parse_daemon_json('{\n  "insecure-registries": ["a:5000"],\n}\n', "/etc/docker/daemon.json")
    assert dj.error and dj.error_line == 3
    ok = parse_daemon_json('{\n  "debug": true,\n  "insecure-registries": ["a:5000"]\n}\n', "p")
    assert ok.data == {"debug": True, "insecure-registries": ["a:5000"]}
    assert ok.line_of("insecure-registries") == 3
    assert parse_daemon_json("", "p").error
    assert parse_daemon_json("[1]", "p").error
    dup = parse_daemon_json('{"a": 1, "a": 2}', "p")
    assert dup.duplicate_keys == ["a"]


DOCKER_INFO_2010 = """\
Client:
 Context:    default
 Debug Mode: false

Server:
 Containers: 0
 Server Version: 20.10.24+dfsg1
 Docker Root Dir: /var/lib/docker
 Debug Mode: false
 HTTP Proxy: http://proxy.example.com:3128
 No Proxy: localhost,.example.com
 Registry: https://index.docker.io/v1/
 Labels:
 Experimental: false
 Insecure Registries:
  10.203.0.1:5100
  10.0.0.0/24
  127.0.0.0/8
 Live Restore Enabled: false
"""


def test_docker_info_text():
    info = parse_docker_info_text(DOCKER_INFO_2010, "docker info")
    assert info.server_version == "20.10.24+dfsg1"
    assert info.insecure_cidrs == ["10.0.0.0/24", "127.0.0.0/8"]
    assert info.insecure_names == ["10.203.0.1:5100"]
    assert info.http_proxy == "http://proxy.example.com:3128"
    assert info.no_proxy == "localhost,.example.com"
    assert info.live_restore is False


@pytest.mark.parametrize("no_proxy,host,port,matched", [
    ("example.com", "reg.example.com", 5000, True),
    ("example.com", "example.com", 5000, True),
    (".example.com", "reg.example.com", 5000, True),
    ("example.com", "badexample.com", 5000, False),
    ("10.0.0.0/8", "10.1.2.3", 5000, True),
    ("10.0.0.5", "10.0.0.5", 5000, True),
    ("10.0.0.5:443", "10.0.0.5", 5000, False),
    ("10.0.0.5:5000", "10.0.0.5", 5000, True),
    ("*", "anything", 1, True),
    ("", "127.0.0.1", 5000, True),
    ("other.com", "10.0.0.5", 5000, False),
])
def test_no_proxy_like_go(no_proxy, host, port, matched):
    assert (no_proxy_match(no_proxy, host, port) is not None) is matched


def test_rhel_registries_conf_counts_when_run_file_was_not_collected(tmp_path):
    """sos does not collect /run: RHEL docker 1.13's insecure registries then come from
    /etc/containers/registries.conf, which registries.service turns into /run/containers/registries.conf."""
    import shutil
    from pathlib import Path

    from dockerdoctor.facts import CheckOptions, Facts
    from dockerdoctor.sources.snapshot import SnapshotSource

    src = Path(__file__).resolve().parents[2] / "fixtures/hosts/rhel7-docker-registries-conf-healthy"
    root = tmp_path / "rhel"
    shutil.copytree(src, root, symlinks=True)
    with_run = Facts(SnapshotSource(root), CheckOptions(network=False)).get("effective_config")
    assert [v.via for v in with_run.insecure_planned if v.value == "10.0.0.5:5000"] == ["flag"]
    shutil.rmtree(root / "run")
    without = Facts(SnapshotSource(root), CheckOptions(network=False)).get("effective_config")
    got = [(v.via, v.source) for v in without.insecure_planned if v.value == "10.0.0.5:5000"]
    assert got == [("registries.conf", "/etc/containers/registries.conf")]
