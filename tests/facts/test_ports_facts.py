"""Port facts: /proc/net/tcp rows, ss output, registry process recognition."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dockerdoctor.facts.ports import (
    classify_registry_argv,
    parse_proc_net_tcp,
    parse_ss,
    sockets_in_netns,
)

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"

PROC_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100CB0A:13EC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 424242 1 0
   1: 0100CB0A:13EC 0200CB0A:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 424243 1 0
"""
PROC_TCP6 = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue\n"
    "   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 777 1\n"
)


def test_proc_net_tcp_listen_rows_only() -> None:
    assert parse_proc_net_tcp(PROC_TCP) == {424242: ("10.203.0.1", 5100)}  # the lab.md §7 example
    assert parse_proc_net_tcp(PROC_TCP6) == {777: ("::", 5000)}


def test_ss_fixture() -> None:
    text = (HOSTS / "docker-ce-registry2-port-5000-taken/sos_commands/networking/ss_-peaonmi").read_text()
    socks = {s.port: s for s in parse_ss(text, "ss")}
    assert socks[5000].process == "python3" and socks[5000].pid == 2074 and socks[5000].covers("")


def test_own_listening_socket_is_found_with_its_owner() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        mine = [x for x in sockets_in_netns("self") if x.port == port]
        assert [(x.ip, x.pid) for x in mine] == [("127.0.0.1", os.getpid())]
    finally:
        s.close()


def test_registry_argv() -> None:
    assert classify_registry_argv(["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]) == (
        "distribution", "/etc/docker/registry/config.yml")
    assert classify_registry_argv(["registry", "serve", "/etc/docker-distribution/registry/config.yml"])[0] == \
        "distribution"
    assert classify_registry_argv(["/opt/venv/bin/dockerdoctor", "serve-registry", "--port", "5000"])[0] == \
        "serve-registry"
    assert classify_registry_argv(["/usr/bin/python", "/usr/local/bin/gunicorn", "docker_registry.wsgi:application"
                                   ])[0] == "python"
    assert classify_registry_argv(["nginx", "-g", "daemon off;"]) is None
