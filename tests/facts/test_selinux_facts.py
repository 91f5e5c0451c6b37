"""SELinux facts: sestatus, /etc/selinux/config, ls -Z, semanage fcontext, AVC records."""

from __future__ import annotations

from pathlib import Path

from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.selinux import (
    parse_avc,
    parse_fcontext,
    parse_ls_z,
    parse_selinux_config,
    parse_sestatus,
)
from dockerdoctor.sources.live import LiveSource
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"

SESTATUS = """SELinux status:                 enabled
SELinuxfs mount:                /sys/fs/selinux
SELinux root directory:         /etc/selinux
Loaded policy name:             targeted
Current mode:                   enforcing
Mode from config file:          enforcing
"""


def test_sestatus_and_config() -> None:
    st = parse_sestatus(SESTATUS)
    assert st["current mode"] == "enforcing" and st["loaded policy name"] == "targeted"
    mode, line, policy = parse_selinux_config("# comment\nSELINUX=permissive\nSELINUXTYPE=targeted\n")
    assert (mode, line, policy) == ("permissive", 2, "targeted")


def test_ls_z_forms() -> None:
    d = parse_ls_z("unconfined_u:object_r:default_t:s0 /srv/registry\n", "ls -dZ")
    assert d["/srv/registry"].type == "default_t"
    long = """/srv/registry:
total 0
drwxr-xr-x. 3 root root system_u:object_r:container_file_t:s0:c1,c2 20 Mar  4 08:25 .
drwxr-xr-x. 4 root root system_u:object_r:var_t:s0                  36 Mar  4 08:20 ..
drwxr-xr-x. 3 root root system_u:object_r:container_file_t:s0:c1,c2 22 Mar  4 08:25 docker
"""
    labels = parse_ls_z(long, "ls -laZ")
    assert labels["/srv/registry"].type == "container_file_t"
    assert labels["/srv/registry/docker"].context.endswith("c1,c2")


def test_fcontext_rules() -> None:
    rules = parse_fcontext("/srv/registry(/.*)?    all files    system_u:object_r:container_file_t:s0\n", "x")
    assert rules[0].type == "container_file_t" and rules[0].matches("/srv/registry/docker/x")


def test_avc_records_of_the_fixture() -> None:
    text = (HOSTS / "centos7-registry-selinux-bind-mount-unlabeled/var/log/audit/audit.log").read_text()
    avcs = parse_avc(text)
    assert len(avcs) == 3
    a = avcs[0]
    assert a.perms == ("write",) and a.comm == "registry" and a.stype == "container_t" and a.ttype == "default_t"
    assert a.tclass == "dir" and a.permissive is False and a.timestamp and a.pid == 2817


def test_selinux_status_snapshot_and_live_here() -> None:
    st = Facts(SnapshotSource(HOSTS / "centos7-registry-selinux-bind-mount-unlabeled"), CheckOptions()).get(
        "selinux_status")
    assert st.enforcing and st.docker_selinux is True
    off = Facts(SnapshotSource(HOSTS / "centos7-registry-host-selinux-and-firewalld-off"), CheckOptions()).get(
        "selinux_status")
    assert off.mode == "disabled" and off.config_mode == "disabled"
    # this machine: SELinux is compiled in but never enabled (lab.md §8)
    live = Facts(LiveSource(), CheckOptions(docker_host="unix:///nonexistent/ddrh.sock")).optional("selinux_status")
    if not Path("/sys/fs/selinux").exists() and live is not None:
        assert live.mode == "disabled"
